"""Return maths on toy inputs: lambda-returns, discount weights, percentile normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodels.returns import discount_weights, lambda_returns, return_scale, update_retnorm


def _toy(key, h=6, b=3):
    k = jax.random.split(key, 3)
    reward, cont = jax.random.normal(k[0], (h, b)), jax.random.uniform(k[1], (h, b))
    return reward, cont, jax.random.normal(k[2], (h + 1, b))


def test_lambda_returns_match_a_python_loop(key):
    reward, cont, value = _toy(key)
    discount, lam = 0.97, 0.8
    expected, ret = np.zeros(reward.shape), np.asarray(value[-1])
    for t in reversed(range(reward.shape[0])):
        ret = reward[t] + discount * cont[t] * ((1 - lam) * value[t + 1] + lam * ret)
        expected[t] = ret
    got = jax.jit(lambda_returns, static_argnums=(3, 4))(reward, cont, value, discount, lam)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_lambda_zero_is_the_one_step_td_target(key):
    reward, cont, value = _toy(key)
    td = lambda_returns(reward, cont, value, 0.9, 0.0)
    np.testing.assert_allclose(td, reward + 0.9 * cont * value[1:], rtol=1e-5, atol=1e-6)


def test_lambda_one_is_the_discounted_monte_carlo_sum(key):
    reward, cont, value = _toy(key)
    cont = jnp.ones_like(cont)  # no predicted ends: a plain discounted sum
    h, discount = reward.shape[0], 0.9
    got = lambda_returns(reward, cont, value, discount, 1.0)
    for t in range(h):
        powers = discount ** np.arange(h - t)
        expected = (powers[:, None] * reward[t:]).sum(0) + discount ** (h - t) * value[-1]
        np.testing.assert_allclose(got[t], expected, rtol=1e-5, atol=1e-5)


def test_three_steps_by_hand():
    # discount 0.5, lam 0.5; the episode ends after the second step (cont[1] = 0).
    reward = jnp.array([[1.0], [2.0], [4.0]])
    cont = jnp.array([[1.0], [0.0], [1.0]])
    value = jnp.array([[0.0], [2.0], [4.0], [8.0]])
    # R_2 = 4 + 0.5 * 1 * (0.5 * 8 + 0.5 * 8) = 8
    # R_1 = 2 + 0.5 * 0 * (...)                = 2
    # R_0 = 1 + 0.5 * 1 * (0.5 * 2 + 0.5 * 2) = 2
    got = lambda_returns(reward, cont, value, 0.5, 0.5)
    np.testing.assert_allclose(got[:, 0], [2.0, 2.0, 8.0])
    weights = discount_weights(jnp.ones(1), cont, 0.5)
    np.testing.assert_allclose(weights[:, 0], [1.0, 0.5, 0.0, 0.0])  # nothing after the end


def test_discount_weights_start_from_the_start_flag():
    cont = jnp.full((4, 2), 0.5)
    weights = discount_weights(jnp.array([1.0, 0.0]), cont, 0.8)
    assert weights.shape == (5, 2)
    np.testing.assert_allclose(weights[:, 0], 0.4 ** np.arange(5), rtol=1e-6)
    np.testing.assert_array_equal(weights[:, 1], 0.0)  # a terminal start weighs nothing


@pytest.mark.parametrize("low,high", [(5.0, 95.0), (0.0, 100.0), (25.0, 75.0)])
def test_return_normalisation_matches_numpy_percentiles(key, low, high):
    returns = 10.0 * jax.random.normal(key, (15, 64))
    lo, hi = np.percentile(np.asarray(returns), [low, high])
    got = update_retnorm(jnp.zeros(2), returns, 1.0, low, high)
    np.testing.assert_allclose(got, [lo, hi], rtol=1e-5)


def test_return_normalisation_is_an_ema_and_never_scales_up(key):
    returns = 10.0 * jax.random.normal(key, (15, 64))
    lo, hi = np.percentile(np.asarray(returns), [5, 95])
    stats = update_retnorm(jnp.array([1.0, 2.0]), returns, 0.01)
    np.testing.assert_allclose(stats, [1.0 + 0.01 * (lo - 1.0), 2.0 + 0.01 * (hi - 2.0)], 1e-5)
    assert float(return_scale(jnp.array([lo, hi]))) == pytest.approx(hi - lo, rel=1e-6)
    assert float(return_scale(jnp.array([0.1, 0.3]))) == 1.0  # small returns are not scaled up
    assert float(return_scale(jnp.array([0.1, 0.3]), limit=0.1)) == pytest.approx(0.2)


def test_no_gradient_flows_into_the_percentiles(key):
    returns = jax.random.normal(key, (8,))
    grad = jax.grad(lambda r: update_retnorm(jnp.zeros(2), r, 1.0).sum())(returns)
    np.testing.assert_array_equal(grad, 0.0)
