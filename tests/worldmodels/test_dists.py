import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodels import dists

BINS = dict(num_bins=101, vmin=-10.0, vmax=10.0)


def test_symlog_symexp_round_trip():
    x = jnp.array([-1e4, -3.0, -0.1, 0.0, 0.5, 7.0, 1e5])
    np.testing.assert_allclose(dists.symexp(dists.symlog(x)), x, rtol=1e-4)


def test_two_hot_is_a_distribution_with_the_right_mean():
    x = jnp.array([-50.0, -1.3, 0.0, 0.37, 2.0, 123.0])
    th = dists.two_hot(x, **BINS)
    np.testing.assert_allclose(th.sum(-1), 1.0, rtol=1e-6)
    assert np.all(th >= 0) and np.all((th > 0).sum(-1) <= 2)
    bins = jnp.linspace(-10, 10, 101)
    np.testing.assert_allclose(th @ bins, dists.symlog(x), rtol=1e-5, atol=1e-5)


def test_two_hot_round_trip_through_logits():
    x = jnp.array([-20.0, -0.5, 0.0, 3.0, 400.0])
    logits = jnp.log(dists.two_hot(x, **BINS) + 1e-30)
    np.testing.assert_allclose(dists.two_hot_inv(logits, **BINS), x, rtol=1e-3, atol=1e-4)


def test_two_hot_clips_outside_range():
    th = dists.two_hot(jnp.array([1e9]), num_bins=11, vmin=-1.0, vmax=1.0)
    assert th[0, -1] == pytest.approx(1.0)


def test_soft_ce_is_minimised_by_the_two_hot_target():
    target = jnp.array(3.0)
    good = jnp.log(dists.two_hot(target, **BINS) + 1e-8)
    bad = jnp.zeros(101)
    assert dists.soft_ce(good, target, **BINS) < dists.soft_ce(bad, target, **BINS)
    g = jax.grad(lambda lg: dists.soft_ce(lg, target, **BINS))(bad)
    assert np.all(np.isfinite(g))


def test_bad_bins_raise():
    with pytest.raises(ValueError, match="num_bins"):
        dists.two_hot(jnp.zeros(2), 1, -1.0, 1.0)
    with pytest.raises(ValueError, match="vmin"):
        dists.two_hot(jnp.zeros(2), 5, 1.0, -1.0)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = jnp.array([0.3, -0.2]), jnp.array([-0.5, 0.1])
    a, logp, mode = dists.tanh_gaussian_sample(mean, log_std, jax.random.key(0))
    assert np.all(np.abs(a) < 1)
    np.testing.assert_allclose(mode, jnp.tanh(mean), rtol=1e-6)
    u = jnp.arctanh(a)
    std = jnp.exp(log_std)
    ref = jnp.sum(-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi))
    ref -= jnp.sum(jnp.log(1 - a**2))
    np.testing.assert_allclose(logp, ref, rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_entropy_estimate_tracks_std():
    keys = jax.random.split(jax.random.key(0), 2000)
    sample = jax.vmap(dists.tanh_gaussian_sample, in_axes=(None, None, 0))
    _, narrow, _ = sample(jnp.zeros(1), jnp.full(1, -2.0), keys)
    _, wide, _ = sample(jnp.zeros(1), jnp.full(1, -0.5), keys)
    assert -wide.mean() > -narrow.mean()  # larger std, larger entropy


def test_squash_log_std_range():
    y = dists.squash_log_std(jnp.array([-1e3, 0.0, 1e3]), -10.0, 2.0)
    np.testing.assert_allclose(y, [-10.0, -4.0, 2.0], atol=1e-5)


@pytest.mark.parametrize("classes", [1, 2, 4, 8, 9])
def test_sampler_draws_the_inverse_cdf_class_on_both_paths(classes):
    # Up to 8 classes the sampler unrolls its softmax and CDF over the class axis; above (and
    # for 1) it uses reductions. Both must pick the class whose CDF interval holds the uniform.
    logits = jax.random.normal(jax.random.key(0), (512, classes)) * 2.0
    u = jax.random.uniform(jax.random.key(1), (512, 1))
    x = np.asarray(logits, np.float64)
    probs = 0.99 * np.exp(x) / np.exp(x).sum(-1, keepdims=True) + 0.01 / classes
    expected = (np.cumsum(probs, -1)[:, :-1] <= np.asarray(u)).sum(-1)
    sample = dists.categorical_sample_st_from_uniform(logits, u, 0.01)
    np.testing.assert_array_equal(sample, jax.nn.one_hot(expected, classes))
    w = jax.random.normal(jax.random.key(2), (512, classes))
    grad = jax.grad(lambda z: jnp.sum(w * dists.categorical_sample_st_from_uniform(z, u, 0.01)))
    grad_probs = jax.grad(lambda z: jnp.sum(w * dists.unimix_probs(z, 0.01)))
    np.testing.assert_allclose(grad(logits), grad_probs(logits), rtol=1e-5, atol=1e-7)
