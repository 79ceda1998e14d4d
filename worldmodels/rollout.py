"""Rollouts: apply a one-step model along an action sequence in one `lax.scan` over time.

Everything here works on a single (unbatched) latent; `vmap` for batches of roots or samples.
What `step_fn` and `value_fn` return is checked while tracing (`worldmodels.shapes`): a reward or
value that is not a floating-point `[]`, or a new latent shaped unlike the old one, is an error
naming the function, not a wrong result or a broadcasting error deep inside the scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from worldmodels.shapes import call_step, call_value
from worldmodels.types import Array, Latent, PRNGKey, StepFn, ValueFn


def _scan_steps(
    step_fn: StepFn, latent: Latent, actions: Array, key: PRNGKey
) -> tuple[Latent, Latent, Array]:
    """Returns `(final latent, latents [H, ...], rewards [H])`; one fresh key per step.

    `step_fn`'s outputs are checked when the body is traced (once per trace, no run-time cost).
    """

    def body(latent, inputs):
        action, step_key = inputs
        latent, reward = call_step(step_fn, latent, action, step_key)
        return latent, (latent, reward)

    keys = jax.random.split(key, actions.shape[0])
    final, (latents, rewards) = jax.lax.scan(body, latent, (actions, keys))
    return final, latents, rewards


def rollout(
    step_fn: StepFn,
    latent: Latent,
    actions: Array,
    key: PRNGKey,
    *,
    discount: float = 1.0,
) -> tuple[Latent, Array]:
    """Applies `step_fn` along an action sequence in one `lax.scan`.

    Args:
      step_fn: `(latent, action [A], key) -> (latent, reward [])` for one trajectory.
      latent: the start latent, a pytree for one trajectory.
      actions: `[H, A]` the actions, time-major.
      key: consumed; split into one key per step.
      discount: reward `t` is scaled by `discount**t`, so `rewards.sum()` is the discounted
        return. Leave at `1.0` for the raw rewards (then `discounted_return` discounts them).

    Returns:
      `(latents, rewards)`: `latents` with every leaf stacked `[H, ...]`, the states *after* each
      step (the start latent is not included); `rewards [H]`.

    Raises:
      ValueError: at trace time, if `step_fn`'s reward is not `[]` or its new latent differs in
        structure or shapes from the one it was given.
      TypeError: at trace time, if the reward is not floating point (bools and ints are
        refused) or a latent leaf changes dtype.

    Example:
      >>> step = lambda z, a, k: (z + a[0], -(z**2))
      >>> latents, rewards = rollout(step, jnp.float32(1.0), jnp.ones((3, 1)), jax.random.key(0))
      >>> latents.shape, rewards.shape
      ((3,), (3,))
    """
    _, latents, rewards = _scan_steps(step_fn, latent, actions, key)
    return latents, rewards * discount ** jnp.arange(rewards.shape[0], dtype=rewards.dtype)


def discounted_return(
    rewards: Array, discount: float, terminal_value: Array | float = 0.0
) -> Array:
    """`sum_t discount**t * rewards[t] + discount**H * terminal_value`.

    Args:
      rewards: `[H]` undiscounted rewards.
      discount: the per-step discount factor.
      terminal_value: `[]` the value of the state after the last step.

    Returns:
      `[]` the discounted return.
    """
    horizon = rewards.shape[0]
    weights = discount ** jnp.arange(horizon, dtype=rewards.dtype)
    return jnp.sum(weights * rewards) + discount**horizon * terminal_value


def rollout_return(
    step_fn: StepFn,
    latent: Latent,
    actions: Array,
    key: PRNGKey,
    *,
    discount: float = 1.0,
    value_fn: ValueFn | None = None,
) -> Array:
    """The discounted return of one action sequence, bootstrapped with `value_fn` if given.

    Unlike `rollout`, the intermediate latents are not kept, so under `vmap` over many samples
    only the final latent is held in memory.

    Args:
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      latent: the start latent for one trajectory.
      actions: `[H, A]`.
      key: consumed.
      discount: the per-step discount factor.
      value_fn: optional `(latent, key) -> value []` of the final latent.

    Returns:
      `[]` `sum_t discount**t r_t + discount**H * value_fn(final latent)`.

    Raises:
      ValueError, TypeError: at trace time, as `rollout` for `step_fn`, and likewise if
        `value_fn` does not return a floating-point `[]`.
    """
    rollout_key, value_key = jax.random.split(key)
    final, _, rewards = _scan_steps(step_fn, latent, actions, rollout_key)
    terminal = 0.0 if value_fn is None else call_value(value_fn, final, value_key)
    return discounted_return(rewards, discount, terminal)
