"""`rollout`, `rollout_return` and `discounted_return` against Python-loop references."""

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodels.rollout import discounted_return, rollout, rollout_return

HORIZON = 4


def noisy_step(latent, action, key):
    """A stochastic step on a pytree latent: `{'x': [2], 't': []}`."""
    noise = 0.1 * jax.random.normal(key, (2,))
    x = jnp.stack([latent["x"][0] + latent["x"][1], latent["x"][1] + action[0]]) + noise
    return {"x": x, "t": latent["t"] + 1}, -jnp.sum(jnp.square(x)) - jnp.sum(jnp.square(action))


def start():
    return {"x": jnp.array([1.0, -0.5]), "t": jnp.int32(0)}


def test_rollout_matches_python_loop(key):
    actions = jax.random.normal(key, (HORIZON, 1))
    latents, rewards = rollout(noisy_step, start(), actions, key)
    latent, ref_latents, ref_rewards = start(), [], []
    for action, step_key in zip(actions, jax.random.split(key, HORIZON), strict=True):
        latent, reward = noisy_step(latent, action, step_key)
        ref_latents.append(latent["x"])
        ref_rewards.append(reward)
    np.testing.assert_allclose(latents["x"], np.stack(ref_latents), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(latents["t"], np.arange(1, HORIZON + 1))
    np.testing.assert_allclose(rewards, np.stack(ref_rewards), rtol=1e-6, atol=1e-6)


def test_rollout_shapes_and_dtypes_under_jit(key):
    actions = jnp.zeros((HORIZON, 1))
    latents, rewards = jax.jit(rollout, static_argnums=0)(noisy_step, start(), actions, key)
    assert latents["x"].shape == (HORIZON, 2) and latents["x"].dtype == jnp.float32
    assert latents["t"].shape == (HORIZON,) and latents["t"].dtype == jnp.int32
    assert rewards.shape == (HORIZON,) and rewards.dtype == jnp.float32


def test_rollout_jit_equals_no_jit(key):
    actions = jax.random.normal(key, (HORIZON, 1))
    eager = rollout(noisy_step, start(), actions, key, discount=0.9)
    jitted = jax.jit(lambda a, k: rollout(noisy_step, start(), a, k, discount=0.9))(actions, key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, jitted)


def test_rollout_key_is_used(key):
    actions = jnp.zeros((HORIZON, 1))
    _, rewards = rollout(noisy_step, start(), actions, key)
    _, same = rollout(noisy_step, start(), actions, key)
    _, other = rollout(noisy_step, start(), actions, jax.random.split(key)[0])
    np.testing.assert_array_equal(rewards, same)
    assert not np.allclose(rewards, other)


def test_rollout_discount_scales_rewards(key):
    actions = jax.random.normal(key, (HORIZON, 1))
    _, raw = rollout(noisy_step, start(), actions, key)
    _, scaled = rollout(noisy_step, start(), actions, key, discount=0.5)
    np.testing.assert_allclose(scaled, raw * 0.5 ** np.arange(HORIZON), rtol=1e-6)


def test_discounted_return_by_hand():
    rewards = jnp.array([1.0, 2.0, 3.0])
    # 1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4
    np.testing.assert_allclose(discounted_return(rewards, 0.5, 4.0), 3.25)
    np.testing.assert_allclose(discounted_return(rewards, 1.0), 6.0)
    assert discounted_return(rewards, 0.9).shape == ()


def test_rollout_return_matches_rollout(key):
    actions = jax.random.normal(key, (HORIZON, 1))
    value_fn = lambda latent, key: latent["x"][0] + jax.random.uniform(key)
    rollout_key, value_key = jax.random.split(key)
    latents, rewards = rollout(noisy_step, start(), actions, rollout_key)
    final = jax.tree.map(lambda x: x[-1], latents)
    expected = discounted_return(rewards, 0.9, value_fn(final, value_key))
    got = rollout_return(noisy_step, start(), actions, key, discount=0.9, value_fn=value_fn)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_rollout_return_gradients_finite(key):
    actions = jax.random.normal(key, (HORIZON, 1))
    grads = jax.grad(lambda a: rollout_return(noisy_step, start(), a, key, discount=0.9))(actions)
    assert grads.shape == actions.shape and np.all(np.isfinite(grads))
    assert np.any(grads != 0)


def changed_step(change_latent=lambda z: z, change_reward=lambda r: r):
    """`noisy_step` with its new latent and reward passed through the given functions."""

    def step_fn(latent, action, key):
        latent, reward = noisy_step(latent, action, key)
        return change_latent(latent), change_reward(reward)

    return step_fn


BAD_STEPS = {  # case: (step_fn, error, message)
    "reward[1]": (
        changed_step(change_reward=lambda r: r[None]),
        ValueError,
        r"step_fn must return reward of shape \[\] \(one scalar per latent\), got shape \(1,\) "
        r"float32",
    ),
    "bool-reward": (
        changed_step(change_reward=lambda r: r > 0),
        TypeError,
        r"step_fn must return a floating-point reward of shape \[\], got shape \(\) bool",
    ),
    "latent-structure": (
        changed_step(lambda z: {"x": z["x"]}),
        ValueError,
        r"step_fn must return a latent with the pytree structure of the one it was given",
    ),
    "latent-shape": (
        changed_step(lambda z: dict(z, x=z["x"][:1])),
        ValueError,
        r"leaf latent\['x'\] went in as \(2,\) float32, came out as \(1,\) float32",
    ),
    "latent-dtype": (
        changed_step(lambda z: dict(z, t=z["t"].astype(jnp.float32))),
        TypeError,
        r"leaf latent\['t'\] went in as \(\) int32, came out as \(\) float32",
    ),
}


@pytest.mark.parametrize("case", BAD_STEPS)
@pytest.mark.parametrize("fn", [rollout, rollout_return])
def test_bad_step_outputs_raise_naming_step_fn(fn, case, key):
    step_fn, error, message = BAD_STEPS[case]
    with pytest.raises(error, match=message):
        jax.eval_shape(lambda k: fn(step_fn, start(), jnp.zeros((HORIZON, 1)), k), key)


@pytest.mark.parametrize(
    "value_fn, error, message",
    [
        (lambda z, k: z["x"], ValueError, r"value_fn must return value of shape \[\] .*\(2,\)"),
        (lambda z, k: z["t"], TypeError, r"value_fn must return a floating-point .*\(\) int32"),
    ],
    ids=["value[2]", "int-value"],
)
def test_bad_value_raises_naming_value_fn(value_fn, error, message, key):
    with pytest.raises(error, match=message):
        rollout_return(noisy_step, start(), jnp.zeros((HORIZON, 1)), key, value_fn=value_fn)


def test_checks_add_nothing_to_the_traced_program(key, monkeypatch):
    # The same jaxpr with the checked calls swapped for plain ones: the checks are trace-time only.
    module = importlib.import_module("worldmodels.rollout")
    value_fn = lambda latent, key: latent["x"][0]
    program = lambda a, k: rollout_return(noisy_step, start(), a, k, value_fn=value_fn)
    actions = jnp.zeros((HORIZON, 1))
    checked = str(jax.make_jaxpr(program)(actions, key))
    monkeypatch.setattr(module, "call_step", lambda f, *args: f(*args))
    monkeypatch.setattr(module, "call_value", lambda f, *args: f(*args))
    assert str(jax.make_jaxpr(program)(actions, key)) == checked


def test_docstring_examples_run():
    globs = {"jax": jax, "jnp": jnp, "rollout": rollout}
    # `worldmodels.rollout` the attribute is the function; the module comes from importlib.
    result = doctest.testmod(importlib.import_module("worldmodels.rollout"), extraglobs=globs)
    assert result.failed == 0 and result.attempted > 0
