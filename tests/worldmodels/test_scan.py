import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodels import dists
from worldmodels.scan import hoisted_scan


def _plain(step, params, carry, xs):
    return jax.lax.scan(lambda c, x: step(params, c, x), carry, xs)


def _step(params, carry, x):
    """A GRU-like step with a reset flag, a per-step key (straight-through sample) and a dict."""
    h, z = carry
    h = jnp.where(
        x["first"][:, None], 0.0, h + 0.1 * jnp.tanh(z.reshape(*z.shape[:-2], -1) @ params["s"])
    )
    a = jnp.tanh(h @ params["w"] + x["u"] @ params["v"] + params["b"][None])
    z = dists.categorical_sample_st(a.reshape(*a.shape[:-1], 2, 3) @ params["c"], x["key"], 0.01)
    h = 0.5 * h + 0.5 * a * jnp.sum(z.reshape(*z.shape[:-2], -1) @ params["s"], -1, keepdims=True)
    return (h, z), {"h": h, "out": jnp.sum(h**2, -1)}


@pytest.fixture(scope="module")
def problem():
    k = jax.random.split(jax.random.key(0), 8)
    params = {
        "w": jax.random.normal(k[0], (6, 6)) * 0.4,
        "v": jax.random.normal(k[1], (4, 6)) * 0.4,
        "b": jax.random.normal(k[2], (6,)) * 0.1,
        "c": jax.random.normal(k[3], (3, 3)),
        "s": jax.random.normal(k[4], (6, 1)),
    }
    T, B = 7, 5
    xs = {
        "u": jax.random.normal(k[5], (T, B, 4)),
        "first": jax.random.bernoulli(k[6], 0.2, (T, B)),
        "key": jax.random.split(k[7], T),
    }
    carry = (jnp.ones((B, 6)) * 0.3, jnp.zeros((B, 2, 3)))
    return params, carry, xs


def _loss(scan):
    def loss(params, carry, u, xs):
        (h, z), ys = scan(_step, params, carry, dict(xs, u=u))
        return (
            jnp.sum(ys["out"] * jnp.arange(1, 8)[:, None])
            + jnp.sum(jnp.sin(ys["h"]))
            + jnp.sum(h * z.reshape(*z.shape[:-2], -1))
        )

    return loss


def test_values_equal_the_plain_scan(problem):
    params, carry, xs = problem
    out, ref = hoisted_scan(_step, params, carry, xs), _plain(_step, params, carry, xs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), out, ref)


@pytest.mark.parametrize("jit", [False, True])
def test_gradients_of_params_carry_and_inputs_equal_the_plain_scan(problem, jit):
    params, carry, xs = problem
    grads = [
        jax.grad(_loss(scan), argnums=(0, 1, 2))(params, carry, xs["u"], xs)
        for scan in ((jax.jit(hoisted_scan, static_argnums=0) if jit else hoisted_scan), _plain)
    ]
    flat = [jax.tree.leaves(g) for g in grads]
    assert len(flat[0]) == len(flat[1]) == 5 + 2 + 1
    assert all(float(jnp.abs(g).max()) > 0 for g in flat[1])  # every gradient is exercised
    for got, want in zip(*flat, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # summed in another order


def test_no_gradient_flows_into_integer_bool_or_key_inputs(problem):
    params, carry, xs = problem
    grads = jax.grad(lambda xs: _loss(hoisted_scan)(params, carry, xs["u"], xs), allow_int=True)(xs)
    assert grads["first"].dtype == jax.dtypes.float0
    assert grads["key"].dtype == jax.dtypes.float0
