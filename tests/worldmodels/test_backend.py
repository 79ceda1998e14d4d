"""The backend switch: each XLA:CPU rewrite equals its plain-JAX path, in values and gradients."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodels import backend, dists
from worldmodels.nets import block_gru, conv_decoder, conv_encoder, norm_mlp

TIGHT = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(autouse=True)
def _restore_switch():
    previous = backend._forced
    yield
    backend.set_cpu_rewrites(previous)


def _both(fn, *args):
    """`fn(*args)` traced with the rewrites on, then off (fresh closures, so fresh traces), after
    checking that the two traces differ (the switch reached the code)."""
    outs, jaxprs = [], []
    for flag in (True, False):
        with backend.use_cpu_rewrites(flag):
            jaxprs.append(str(jax.make_jaxpr(lambda *a: fn(*a))(*args)))
            outs.append(jax.jit(lambda *a: fn(*a))(*args))
    assert jaxprs[0] != jaxprs[1], "the switch changed nothing"
    return outs


def _assert_trees_close(got, want, **tol):
    leaves_got, leaves_want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(leaves_got) == len(leaves_want) > 0
    for g, w in zip(leaves_got, leaves_want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **tol)


def _value_and_grads(net, params, x):
    """The net's output and the gradients of a non-trivial scalar w.r.t. params and input."""
    loss = lambda p, x: jnp.sum(jnp.sin(net.apply(p, x)))
    return net.apply(params, x), jax.grad(loss, argnums=(0, 1))(params, x)


# --- the switch itself -----------------------------------------------------------------------


def test_default_is_on_for_cpu_only(monkeypatch):
    backend.set_cpu_rewrites(None)
    assert backend.cpu_rewrites() == (jax.default_backend() == "cpu")
    for name, expected in (("cpu", True), ("gpu", False), ("tpu", False)):
        monkeypatch.setattr(backend.jax, "default_backend", lambda name=name: name)
        assert backend.default_cpu_rewrites() is expected
        assert backend.cpu_rewrites() is expected


def test_set_and_context_manager_nest_and_restore(monkeypatch):
    monkeypatch.setattr(backend.jax, "default_backend", lambda: "gpu")
    backend.set_cpu_rewrites(None)
    assert backend.cpu_rewrites() is False
    backend.set_cpu_rewrites(True)
    assert backend.cpu_rewrites() is True
    with backend.use_cpu_rewrites(False):
        assert backend.cpu_rewrites() is False
        with backend.use_cpu_rewrites(None):  # the default by backend
            assert backend.cpu_rewrites() is False
        with pytest.raises(RuntimeError), backend.use_cpu_rewrites(True):
            assert backend.cpu_rewrites() is True
            raise RuntimeError  # restored on the way out of an error too
        assert backend.cpu_rewrites() is False
    assert backend.cpu_rewrites() is True


@pytest.mark.parametrize("bad", ["0", 1, 0.0])
def test_non_bool_flags_raise(bad):
    with pytest.raises(TypeError, match="True, False or None"):
        backend.set_cpu_rewrites(bad)
    with pytest.raises(TypeError, match="True, False or None"), backend.use_cpu_rewrites(bad):
        pass


def test_env_var_forces_the_setting_at_import(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    try:
        for value, expected in (("1", True), ("0", False), (" 1 ", True), ("", False)):
            monkeypatch.setenv(backend.ENV_VAR, value)
            importlib.reload(backend)  # re-executes the module in place: its users see the reload
            assert backend.cpu_rewrites() is expected, value
        monkeypatch.setenv(backend.ENV_VAR, "yes")
        with pytest.raises(ValueError, match="WM_CPU_REWRITES must be 0 or 1"):
            importlib.reload(backend)
    finally:
        monkeypatch.delenv(backend.ENV_VAR)
        importlib.reload(backend)
    assert backend._forced is None


def test_setting_is_read_at_trace_time():
    f = lambda x: x * backend.cpu_rewrites()
    with backend.use_cpu_rewrites(True):
        jitted = jax.jit(f)
        assert jitted(1.0) == 1.0
    with backend.use_cpu_rewrites(False):
        assert jitted(1.0) == 1.0  # traced under True: keeps it
        assert jax.jit(lambda x: f(x))(1.0) == 0.0  # a fresh closure traces anew
        assert f(1.0) == 0.0  # eager calls read it every time


# --- each rewrite equals its plain path --------------------------------------------------------


def test_conv_gradients_equal_plain_autodiff():
    enc, dec = conv_encoder((8, 8, 2), 2, kernel=3), conv_decoder(6, (8, 8, 2), 2, kernel=3)
    k = jax.random.split(jax.random.key(0), 3)
    pe, pd = enc.init(k[0]), dec.init(k[1])
    img = jax.random.uniform(k[2], (3, 8, 8, 2)) - 0.5

    def loss(pe, pd, img):
        return jnp.sum((dec.apply(pd, enc.apply(pe, img)[..., :6]) - img) ** 2)

    fast, plain = _both(jax.value_and_grad(loss, argnums=(0, 1, 2)), pe, pd, img)
    np.testing.assert_allclose(fast[0], plain[0], **TIGHT)
    _assert_trees_close(fast[1], plain[1], rtol=1e-5, atol=1e-5)


def test_conv_init_is_bit_identical():
    enc = conv_encoder((16, 16, 2), 2)
    fast, plain = _both(enc.init, jax.random.key(1))
    for got, want in zip(jax.tree.leaves(fast), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(got, want)
    # The kernels are fan-in scaled truncated normals: std ~ 1 / sqrt(k * k * in).
    kernel = np.asarray(fast["convs"]["1"]["kernel"])
    assert kernel.shape == (5, 5, 4, 6)
    assert 0.8 < kernel.std() * np.sqrt(5 * 5 * 4) < 1.2


def test_norm_mlp_rms_norm_equals_nnx_rms_norm():
    net = norm_mlp(3, (8, 8), 2, norm="rms")
    params = net.init(jax.random.key(0))
    # Non-trivial norm scales, so a wrong scale or epsilon shows.
    params = jax.tree.map(lambda a: a + 0.1 * jnp.arange(a.size).reshape(a.shape) / a.size, params)
    x = 3.0 * jax.random.normal(jax.random.key(1), (4, 5, 3))
    fast, plain = _both(lambda p, x: _value_and_grads(net, p, x), params, x)
    _assert_trees_close(fast, plain, **TIGHT)


@pytest.mark.parametrize("layers", [0, 1])
def test_block_gru_layout_equals_dreamerv3_layout(layers):
    gru = block_gru(8, (3, 2), 4, 2, layers=layers)
    params = gru.init(jax.random.key(0))
    params = jax.tree.map(
        lambda a: a + 0.05 * jax.random.normal(jax.random.key(2), a.shape), params
    )
    x = jax.random.normal(jax.random.key(1), (2, 3, 8 + 3 + 2))
    fast, plain = _both(lambda p, x: _value_and_grads(gru, p, x), params, x)
    assert fast[0].shape == (2, 3, 8)
    _assert_trees_close(fast, plain, **TIGHT)


@pytest.mark.parametrize("classes, unimix", [(4, 0.01), (4, 0.0), (2, 0.01), (8, 0.0)])
def test_unrolled_categorical_sampler_equals_softmax_and_cumsum(classes, unimix):
    k = jax.random.split(jax.random.key(0), 3)
    logits = 2.0 * jax.random.normal(k[0], (6, 5, classes))
    u = jax.random.uniform(k[1], (6, 5, 1))
    w = jax.random.normal(k[2], logits.shape)

    def sample_and_grad(logits, u):
        fn = lambda z: dists.categorical_sample_st_from_uniform(z, u, unimix)
        return fn(logits), jax.grad(lambda z: jnp.sum(w * fn(z)))(logits)

    fast, plain = _both(sample_and_grad, logits, u)
    np.testing.assert_array_equal(fast[0], plain[0])
    assert np.all(np.asarray(fast[0]).sum(-1) == 1)
    np.testing.assert_allclose(fast[1], plain[1], **TIGHT)


@pytest.mark.parametrize("target_shape", [(4, 6), (4, 1)])
def test_soft_ce_equals_two_hot_log_softmax(target_shape):
    bins = dict(num_bins=11, vmin=-3.0, vmax=3.0)
    k = jax.random.split(jax.random.key(0))
    logits = jax.random.normal(k[0], (4, 6, 11))
    target = 8.0 * jax.random.normal(k[1], target_shape)  # some beyond the bins: clipped

    def value_and_grads(logits, target):
        loss = lambda z, t: dists.soft_ce(z, t, **bins)
        return loss(logits, target), jax.grad(lambda z, t: loss(z, t).sum(), (0, 1))(logits, target)

    fast, plain = _both(value_and_grads, logits, target)
    assert fast[0].shape == (4, 6)
    _assert_trees_close(fast, plain, **TIGHT)
