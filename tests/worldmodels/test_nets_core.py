import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodels.nets import ensemble, mlp, simnorm


def test_mlp_shapes_and_jit_equals_nojit(key):
    net = mlp(5, (16, 16), 3)
    params = net.init(key)
    x = jax.random.normal(jax.random.key(1), (2, 7, 5))
    y = net.apply(params, x)
    assert y.shape == (2, 7, 3) and y.dtype == jnp.float32
    np.testing.assert_allclose(jax.jit(net.apply)(params, x), y, rtol=1e-5, atol=1e-6)


def test_mlp_params_are_plain_string_keyed_dicts(key):
    params = mlp(3, (8,), 2).init(key)
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        assert all(isinstance(p.key, str) for p in path)


def test_same_key_same_params_new_key_new_params(key):
    net = mlp(3, (8,), 2)
    a, b = net.init(key), net.init(key)
    c = net.init(jax.random.split(key)[0])
    assert all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b)))
    assert not np.allclose(a["layers"]["0"]["kernel"], c["layers"]["0"]["kernel"])


def test_zero_last_gives_zero_output(key):
    net = mlp(3, (8,), 4, zero_last=True)
    assert np.all(net.apply(net.init(key), jnp.ones((2, 3))) == 0)


def test_simnorm_groups_sum_to_one():
    x = jax.random.normal(jax.random.key(0), (4, 32))
    y = simnorm(x, 8).reshape(4, 4, 8)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    assert np.all(y >= 0)
    with pytest.raises(ValueError, match="divisible"):
        simnorm(jnp.ones((2, 10)), 8)


def test_simnorm_output_layer(key):
    net = mlp(3, (8,), 16, out_act="simnorm", simnorm_dim=4)
    y = net.apply(net.init(key), jnp.ones((5, 3))).reshape(5, 4, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_ensemble_members_differ_and_match_members(key):
    member = mlp(3, (8,), 2)
    ens = ensemble(member, 4)
    params = ens.init(key)
    x = jax.random.normal(jax.random.key(2), (6, 3))
    y = ens.apply(params, x)
    assert y.shape == (4, 6, 2)
    one = jax.tree.map(lambda p: p[1], params)
    np.testing.assert_allclose(y[1], member.apply(one, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(y[0], y[1])


def test_gradients_finite(key):
    net = mlp(3, (8, 8), 2, out_act="simnorm", simnorm_dim=2)
    params = net.init(key)
    grads = jax.grad(lambda p: jnp.sum(net.apply(p, jnp.ones((4, 3))) ** 2))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("bad", [dict(in_size=0), dict(out_size=0), dict(hidden=(8, 0))])
def test_bad_sizes_raise(bad):
    kw = dict(in_size=3, hidden=(8,), out_size=2) | bad
    with pytest.raises(ValueError, match="must be >= 1"):
        mlp(kw["in_size"], kw["hidden"], kw["out_size"])
