import jax
import jax.numpy as jnp
import numpy as np
import pytest

import worldmodels.nets.conv as conv_module
from worldmodels.nets import check_image_shape, conv_decoder, conv_embed_size, conv_encoder
from worldmodels.nets.conv import _conv_same, _depth_to_space


@pytest.fixture(scope="module")
def conv_nets():
    """A 16x16x3 encoder/decoder pair (2 stride-2 stages to 4x4) with its params, jitted."""
    enc, dec = conv_encoder((16, 16, 3), 4), conv_decoder(6, (16, 16, 3), 4)
    k = jax.random.split(jax.random.key(0))
    return enc, dec, enc.init(k[0]), dec.init(k[1]), jax.jit(enc.apply), jax.jit(dec.apply)


def test_conv_encoder_shapes_with_leading_axes(conv_nets):
    enc, _, params, _, apply, _ = conv_nets
    assert params["convs"]["0"]["kernel"].shape == (5, 5, 3, 8)  # depth * mults[0] channels
    assert params["convs"]["1"]["kernel"].shape == (5, 5, 8, 12)
    x = jax.random.uniform(jax.random.key(1), (3, 2, 16, 16, 3)) - 0.5
    y = apply(params, x)
    assert y.shape == (3, 2, 192) == (3, 2, conv_embed_size((16, 16, 3), 4)) and y.dtype == x.dtype
    np.testing.assert_allclose(apply(params, x[1, 0]), y[1, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(enc.apply(params, x), y, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y[0, 0], y[0, 1])


def test_conv_decoder_shapes_with_leading_axes(conv_nets):
    _, dec, _, params, _, apply = conv_nets
    x = jax.random.normal(jax.random.key(2), (3, 2, 6))
    y = apply(params, x)
    assert y.shape == (3, 2, 16, 16, 3) and y.dtype == x.dtype
    np.testing.assert_allclose(apply(params, x[2, 1]), y[2, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dec.apply(params, x), y, rtol=1e-5, atol=1e-5)
    assert np.std(np.asarray(y)) > 0.05  # not collapsed: each stage sees the input


def test_conv_params_are_plain_string_keyed_dicts_with_finite_gradients(conv_nets):
    enc, dec, pe, pd, _, _ = conv_nets
    for params in (pe, pd):
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
            assert all(isinstance(p.key, str) for p in path)
    img = jax.random.uniform(jax.random.key(3), (2, 16, 16, 3)) - 0.5
    loss = lambda pe, pd: jnp.sum((dec.apply(pd, enc.apply(pe, img)[..., :6]) - img) ** 2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(pe, pd)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_depth_to_space_places_each_channel_group_in_its_2x2_block():
    x = jnp.arange(2 * 3 * 3 * 8.0).reshape(2, 3, 3, 8)  # 4 groups of 2 channels
    y = np.asarray(_depth_to_space(x))
    assert y.shape == (2, 6, 6, 2)
    for p in range(2):
        for q in range(2):
            group = 2 * p + q
            np.testing.assert_array_equal(y[:, p::2, q::2], x[..., 2 * group : 2 * group + 2])


def _lax_conv(x, kernel, stride):
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize(
    "size, cin, cout, kernel, stride",
    [
        ((8, 8), 3, 4, (5, 5), 2),  # the encoder's stages
        ((4, 4), 4, 8, (3, 3), 1),  # the decoder's
        ((7, 9), 2, 3, (5, 5), 2),  # odd and unequal sizes: asymmetric SAME padding
        ((8, 6), 2, 3, (4, 4), 2),  # even kernel
        ((8, 8), 2, 3, (1, 1), 2),  # kernel smaller than the stride
        ((9, 10), 2, 3, (3, 2), 3),  # stride 3, non-square kernel
    ],
)
def test_conv_same_equals_lax_conv_forward_and_gradients(size, cin, cout, kernel, stride):
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (2, *size, cin))
    w = jax.random.normal(k[1], (*kernel, cin, cout))
    y_ref, vjp_ref = jax.vjp(lambda x, w: _lax_conv(x, w, stride), x, w)
    y, vjp = jax.vjp(lambda x, w: _conv_same(x, w, stride), x, w)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    dy = jax.random.normal(k[2], y.shape)
    for got, want in zip(vjp(dy), vjp_ref(dy), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_conv_gradients_in_a_scan_are_canonical_convolutions():
    # XLA:CPU canonicalises convolutions only outside loops; inside a while loop anything but
    # NHWC/HWIO/NHWC (`b01f_01io->b01f`) runs unoptimised, 10-60x slower.
    x = jnp.ones((2, 8, 8, 3))
    w = jnp.ones((5, 5, 3, 4))
    loss = lambda x, w: jnp.sum(_conv_same(x, w, 2) ** 2)

    def body(carry, _):
        gx, gw = jax.grad(loss, (0, 1))(*carry)
        return (carry[0] - gx, carry[1] - gw), None

    scan = jax.jit(lambda c: jax.lax.scan(body, c, None, length=2)[0])
    hlo = scan.lower((x, w)).compile().as_text()
    labels = [
        line.split("dim_labels=")[1].split(",")[0]
        for line in hlo.splitlines()
        if "dim_labels=" in line
    ]
    assert len(labels) == 3 and set(labels) == {"b01f_01io->b01f"}, labels


def test_conv_nets_equal_nnx_conv(conv_nets, monkeypatch):
    enc, dec, pe, pd, _, _ = conv_nets
    img = jax.random.uniform(jax.random.key(3), (2, 16, 16, 3)) - 0.5
    loss = lambda pe, pd: jnp.sum((dec.apply(pd, enc.apply(pe, img)[..., :6]) - img) ** 2)
    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(pe, pd)
    monkeypatch.setattr(conv_module, "_conv", lambda conv, x: conv(x))  # `nnx.Conv` itself
    value_ref, grads_ref = jax.value_and_grad(loss, argnums=(0, 1))(pe, pd)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_embed_size_matches_dreamerv3_at_64x64():
    # 64 -> 32 -> 16 -> 8 -> 4 with depth * (2, 3, 4, 4) channels, as DreamerV3's 4 stages.
    assert check_image_shape((64, 64, 3), 4) == 4
    assert conv_embed_size((64, 64, 3), 4) == 4 * 4 * 16  # size1m: depth 4
    assert conv_embed_size((64, 64, 3), 16) == 4 * 4 * 64  # size12m: depth 16
    assert conv_embed_size((128, 128, 1), 4) == 4 * 4 * 16  # a 5th stage repeats the last mult


@pytest.mark.parametrize(
    "shape, message",
    [
        ((60, 60, 3), r"size 60 is not minres \* 2\*\*k .*8, 16, 32, 64, 128"),
        ((64, 32, 3), "height 64 != width 32"),
        ((64, 64), r"\(H, W, C\)"),
        ((4, 4, 3), "size 4 is not minres"),
        ((16, 16, 0), "channels"),
        ((16.0, 16, 3), r"\(H, W, C\) ints"),
    ],
)
def test_bad_image_shapes_raise(shape, message):
    with pytest.raises(ValueError, match=message):
        check_image_shape(shape, 4)
    with pytest.raises(ValueError, match=message):
        conv_encoder(shape, 4)
    with pytest.raises(ValueError, match=message):
        conv_decoder(8, shape, 4)


@pytest.mark.parametrize(
    "kw, message",
    [(dict(depth=0), "depth"), (dict(mults=()), "mults"), (dict(kernel=0), "kernel")],
)
def test_bad_conv_arguments_raise(kw, message):
    args = dict(depth=4) | kw
    with pytest.raises(ValueError, match=message):
        conv_encoder((16, 16, 3), args.pop("depth"), **args)
