"""What every planner in `worldmodels.planning` shares: the plan it carries, how it scores.

The plan carried between steps: `initial_plan` (all zeros, the pytree every planner returns),
`reset_plan` (clears it at episode starts) and `warm_start` (the previous mean shifted one step).
Candidates: `with_prior` (rollouts of a policy prior), `evaluate` (returns through the model,
common random numbers) and `best`. `check_call` checks the call arguments a config cannot.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from worldmodels.rollout import rollout_return
from worldmodels.shapes import call_prior, call_step
from worldmodels.types import Array, PlanOutput


def check_call(cfg, *, action_size, discount, action_low, action_high, prior_fn, prev) -> int:
    """Raises `ValueError` naming the first bad call argument; returns the prior-sequence count
    in use. `cfg` (a planner config) checked its own fields; these checks need the call.

    `action_size` must be a Python int and the bounds concrete; a traced discount passes unchecked.
    """
    count = isinstance(action_size, int | np.integer) and not isinstance(action_size, bool)
    if not count or action_size < 1:
        raise ValueError(f"action_size must be a Python int >= 1, got {action_size!r}")
    num_pi = cfg.num_pi_trajs if prior_fn is not None else 0
    num_elites = getattr(cfg, "num_elites", 1)
    if num_elites > cfg.num_samples + num_pi:
        raise ValueError(
            f"{type(cfg).__name__}.num_elites ({num_elites}) must be <= num_samples + "
            f"num_pi_trajs in use ({cfg.num_samples} + {num_pi}: none without a prior_fn)"
        )
    if not isinstance(discount, jax.core.Tracer) and not 0 <= discount <= 1:
        raise ValueError(f"discount must be in [0, 1], got {discount!r}")
    for name, bound in [("action_low", action_low), ("action_high", action_high)]:
        if isinstance(bound, jax.core.Tracer) or np.shape(bound) not in ((), (action_size,)):
            raise ValueError(f"{name} must be a concrete scalar or [action_size] array")
    if np.any(np.asarray(action_low) >= np.asarray(action_high)):
        raise ValueError(f"action_low ({action_low}) must be < action_high ({action_high})")
    if prev is not None and prev.mean.shape != (cfg.horizon, action_size):
        raise ValueError(f"prev.mean has shape {prev.mean.shape}, not {(cfg.horizon, action_size)}")
    return num_pi


def initial_plan(horizon: int, action_size: int, *, std: float = 2.0) -> PlanOutput:
    """An all-zero plan to carry as the warm start from the very first step.

    Args:
      horizon: `H`. action_size: `A`.
      std: the fill value of `std` (planners restart their std each call; it is informative only).

    Returns:
      `PlanOutput` with zero `action [A]`, `actions [H, A]`, `mean [H, A]`, `value []`, and
      `std [H, A]` filled with `std`: the pytree structure and dtypes every planner returns.
    """
    zeros = jnp.zeros((horizon, action_size), jnp.float32)
    std = jnp.full_like(zeros, std)
    return PlanOutput(action=zeros[0], actions=zeros, mean=zeros, std=std, value=jnp.float32(0))


def reset_plan(plan: PlanOutput, is_first: Array) -> PlanOutput:
    """Zeros the warm start (`action`, `actions`, `mean`, `value`) where `is_first`; keeps `std`.

    Args:
      plan: a `PlanOutput`, unbatched or with leading batch axes `[N, ...]`.
      is_first: `[]` or `[N]` booleans, the plan's leading axes.

    Returns:
      The plan, reset where `is_first`.
    """
    is_first = jnp.asarray(is_first)

    def reset(x):
        mask = jnp.reshape(is_first, is_first.shape + (1,) * (x.ndim - is_first.ndim))
        return jnp.where(mask, jnp.zeros_like(x), x)

    fields = ("action", "actions", "mean", "value")
    return plan.replace(**{field: reset(getattr(plan, field)) for field in fields})


def warm_start(prev: PlanOutput | None, horizon: int, action_size: int) -> Array:
    """`[H, A]`: `prev.mean` shifted one step earlier with a zero last step, or zeros."""
    if prev is None:
        return jnp.zeros((horizon, action_size), jnp.float32)
    return jnp.concatenate([prev.mean[1:], jnp.zeros_like(prev.mean[:1])])


def clip_actions(x: Array, low, high) -> Array:
    """Clips `x [..., A]` to scalar or `[A]` bounds (broadcast explicitly for strict ranks)."""
    return jnp.clip(x, jnp.broadcast_to(low, x.shape), jnp.broadcast_to(high, x.shape))


def evaluate(key, root, step_fn, value_fn, actions: Array, discount) -> Array:
    """`[N]` returns (+ discounted terminal value) of `actions [N, H, A]`, one key per sequence.

    The same `key` gives every sequence the same model noise again (common random numbers).
    """
    returns = partial(rollout_return, step_fn, root, discount=discount, value_fn=value_fn)
    keys = jax.random.split(key, actions.shape[0])
    # float32 whatever the model's dtype, so `PlanOutput` always matches `initial_plan`.
    return jax.vmap(lambda k, a: returns(a, k))(keys, actions).astype(jnp.float32)


def best(actions: Array, values: Array, std: Array) -> PlanOutput:
    """The best of `actions [N, H, A]` by `values [N]`, also as `mean` (the next warm start)."""
    i = jnp.argmax(values)
    return PlanOutput(
        action=actions[i, 0], actions=actions[i], mean=actions[i], std=std, value=values[i]
    )


def with_prior(key, root, step_fn, prior_fn, num_pi: int, actions: Array) -> Array:
    """Prepends `num_pi` sequences of `prior_fn` rolled through `step_fn` to `actions [N, H, A]`."""
    if num_pi == 0:  # static: no prior_fn or no prior sequences asked for
        return actions

    def one(key):
        def body(latent, key):
            prior_key, step_key = jax.random.split(key)
            action = call_prior(prior_fn, latent, prior_key, actions.shape[2])
            return call_step(step_fn, latent, action, step_key)[0], action

        return jax.lax.scan(body, root, jax.random.split(key, actions.shape[1]))[1]

    prior = jax.vmap(one)(jax.random.split(key, num_pi))
    return jnp.concatenate([prior.astype(actions.dtype), actions])
