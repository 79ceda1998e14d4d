"""Planners over any one-step model: random shooting, CEM, MPPI (TD-MPC2's) and gradient shooting.

Every planner plans for ONE root latent and returns a `PlanOutput`; `vmap` it over roots. The
model is a `StepFn` `(latent, action [A], key) -> (latent, reward [])` for one trajectory, which
planners `vmap` over their samples. How a planner searches is its frozen config
(`worldmodels.planner_configs`: `RandomShootingConfig`, `CEMConfig`, `MPPIConfig`,
`GradientShootingConfig`), passed whole as `cfg`; what it searches (action size, discount,
bounds) are call keywords. Config fields given as keywords build the config, or replace those of
`cfg`, so `mppi(key, root, step_fn, horizon=5, action_size=1)` needs no setup. Counts and bounds
are static Python values, checked before anything traces; every loop is a `lax.scan`, so a
jitted planner compiles once per shape.
What `step_fn`, `value_fn` and `prior_fn` return is checked as they are traced
(`worldmodels.shapes`), at no run-time cost: a reward or value other than a floating-point `[]`
(bools and ints are refused), a prior action other than `[A]`, or a new latent shaped unlike the
old one raises `ValueError` (`TypeError` for a dtype) naming the function and both shapes, where
it would otherwise broadcast into a wrong plan or fail inside jax naming nothing.

Warm starts: pass the previous output as `prev=`; its `mean` shifted one step earlier (last step
zero) seeds the next plan. Agents carrying the plan from the first step start from `initial_plan`
and clear it at episode starts with `reset_plan`, so the carry's structure never changes.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import optax

from worldmodels.planner_configs import (
    CEMConfig,
    GradientShootingConfig,
    MPPIConfig,
    RandomShootingConfig,
    resolve_config,
)
from worldmodels.plans import (
    best,
    check_call,
    clip_actions,
    evaluate,
    initial_plan,
    reset_plan,
    warm_start,
    with_prior,
)
from worldmodels.types import Array, Latent, PlanOutput, PriorFn, PRNGKey, StepFn, ValueFn

__all__ = [
    "CEMConfig",
    "GradientShootingConfig",
    "MPPIConfig",
    "RandomShootingConfig",
    "cem",
    "gradient_shooting",
    "initial_plan",
    "mppi",
    "random_shooting",
    "reset_plan",
]


def random_shooting(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    cfg: RandomShootingConfig | None = None,
    *,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
    **fields,
) -> PlanOutput:
    """Scores uniform random sequences, prior rollouts and the warm start; returns the best.

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      cfg: the search, a `RandomShootingConfig`; None builds one from `fields`.
      action_size: `A`. discount: per step. action_low, action_high: scalar or `[A]` bounds.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]`; `cfg.num_pi_trajs` rollouts are candidates.
      prev: optional previous `PlanOutput`; its shifted `mean` is a candidate (else zeros are).
      **fields: `RandomShootingConfig` fields; they build the config, or replace `cfg`'s.

    Returns:
      `PlanOutput`: the best candidate as `actions` and as `mean` (the next warm start), its first
      `action` and estimated return `value`; `std [H, A]` is that of the uniform distribution.

    Raises:
      TypeError: a keyword that is neither a call keyword nor a config field.
      ValueError: a bad field or call argument (before tracing); while tracing, a `step_fn`,
        `value_fn` or `prior_fn` output of the wrong shape (module docstring), TypeError of dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = random_shooting(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.actions.shape
      (5, 1)
    """
    cfg = resolve_config(RandomShootingConfig, cfg, fields, "random_shooting")
    num_pi = check_call(
        cfg, action_size=action_size, discount=discount, action_low=action_low,
        action_high=action_high, prior_fn=prior_fn, prev=prev,
    )  # fmt: skip
    sample_key, pi_key, eval_key = jax.random.split(key, 3)
    shape = (cfg.num_samples, cfg.horizon, action_size)
    low, high = jnp.broadcast_to(action_low, shape), jnp.broadcast_to(action_high, shape)
    uniform = jax.random.uniform(sample_key, shape, minval=low, maxval=high)
    warm = clip_actions(warm_start(prev, cfg.horizon, action_size), action_low, action_high)
    actions = jnp.concatenate([warm[None], uniform])
    actions = with_prior(pi_key, root, step_fn, prior_fn, num_pi, actions)
    values = evaluate(eval_key, root, step_fn, value_fn, actions, discount)
    std = (high[0] - low[0]).astype(warm.dtype) / math.sqrt(12.0)  # not weakly typed
    return best(actions, values, std=std)


def _gaussian_search(
    key, root, step_fn, value_fn, prior_fn, prev, cfg, *, weigh, choose, action_size, num_pi,
    discount, low, high,
) -> PlanOutput:  # fmt: skip
    """The CEM/MPPI loop (`cfg`: a `CEMConfig` or `MPPIConfig`); the two differ only in `weigh`
    and `choose`.

    `weigh(elite_values [K]) -> weights [K]` (summing to one) refits the Gaussian;
    `choose(key, elite_values [K]) -> index []` picks the returned elite after the last round.
    """
    horizon, num_elites, min_std, max_std = cfg.horizon, cfg.num_elites, cfg.min_std, cfg.max_std
    shape = (cfg.num_samples, horizon, action_size)
    pi_key, loop_key, choose_key = jax.random.split(key, 3)
    no_actions = jnp.zeros((0, horizon, action_size))
    pi_actions = with_prior(pi_key, root, step_fn, prior_fn, num_pi, no_actions)

    def iterate(carry, key):
        mean, std, _, _ = carry
        sample_key, eval_key = jax.random.split(key)
        samples = mean[None] + std[None] * jax.random.normal(sample_key, shape)
        samples = clip_actions(samples, low, high)
        actions = jnp.concatenate([pi_actions, samples])
        values = evaluate(eval_key, root, step_fn, value_fn, actions, discount)
        elite_values, elite_index = jax.lax.top_k(values, num_elites)
        elites = actions[elite_index]
        weights = weigh(elite_values)
        mean = jnp.einsum("k,kha->ha", weights, elites)
        var = jnp.einsum("k,kha->ha", weights, jnp.square(elites - mean[None]))
        return (mean, jnp.clip(jnp.sqrt(var), min_std, max_std), elites, elite_values), None

    mean = warm_start(prev, horizon, action_size)
    init = (mean, jnp.full_like(mean, max_std), jnp.zeros((num_elites, *mean.shape)))
    init += (jnp.zeros(num_elites),)
    loop_keys = jax.random.split(loop_key, cfg.iterations)
    (mean, std, elites, elite_values), _ = jax.lax.scan(iterate, init, loop_keys)
    i = choose(choose_key, elite_values)
    return PlanOutput(
        action=elites[i, 0], actions=elites[i], mean=mean, std=std, value=elite_values[i]
    )


def cem(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    cfg: CEMConfig | None = None,
    *,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
    **fields,
) -> PlanOutput:
    """Cross-entropy method: a Gaussian over sequences, refit to its elites with equal weights.

    The mean starts at the shifted `prev.mean` (or zeros), the std at `max_std`. Each of
    `iterations` rounds samples `num_samples` sequences from `N(mean, std)` clipped to the bounds
    (plus `num_pi_trajs` rollouts of `prior_fn`, if given), keeps the `num_elites` best by return
    and refits `mean` and `std` (clipped to `[min_std, max_std]`) to them.

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      cfg: the search, a `CEMConfig`; None builds one from `fields`.
      action_size: `A`. discount: per step. action_low, action_high: scalar or `[A]` bounds.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]` (unused while `cfg.num_pi_trajs == 0`).
      prev: optional previous `PlanOutput` to warm-start from.
      **fields: `CEMConfig` fields; they build the config, or replace `cfg`'s.

    Returns:
      `PlanOutput`: the last round's best elite (`actions`, its first `action`, its `value`) and
      the refit `mean` and `std`, `[H, A]`.

    Raises:
      TypeError: a keyword that is neither a call keyword nor a config field.
      ValueError: a bad field or call argument (before tracing); while tracing, a `step_fn`,
        `value_fn` or `prior_fn` output of the wrong shape (module docstring), TypeError of dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = cem(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.mean.shape
      (5, 1)
    """
    cfg = resolve_config(CEMConfig, cfg, fields, "cem")
    num_pi = check_call(
        cfg, action_size=action_size, discount=discount, action_low=action_low,
        action_high=action_high, prior_fn=prior_fn, prev=prev,
    )  # fmt: skip
    return _gaussian_search(
        key, root, step_fn, value_fn, prior_fn, prev, cfg,
        weigh=lambda v: jnp.full_like(v, 1.0 / v.shape[0]), choose=lambda key, v: jnp.argmax(v),
        action_size=action_size, num_pi=num_pi, discount=discount, low=action_low,
        high=action_high,
    )  # fmt: skip


def mppi(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    cfg: MPPIConfig | None = None,
    *,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
    **fields,
) -> PlanOutput:
    """TD-MPC2's planner: MPPI-weighted elites, prior rollouts mixed in, a sampled elite returned.

    If `prior_fn` is given, `num_pi_trajs` sequences come from rolling it through `step_fn`. The
    mean starts at the shifted `prev.mean` (or zeros), the std at `max_std`. Each of `iterations`
    rounds samples `num_samples` sequences from `N(mean, std)` clipped to the bounds, adds the
    prior sequences, scores each by its discounted return plus `discount**H * value_fn(final)`,
    keeps the `num_elites` best, weights them by `softmax((v - max v) / temperature)` and refits
    `mean` and `std` (clipped to `[min_std, max_std]`) to the weighted elites. Finally one elite
    is drawn with those weights. (`MPPIConfig` relates `temperature` to TD-MPC2's.)

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      cfg: the search, an `MPPIConfig`; None builds one from `fields`.
      action_size: `A`. discount: per step. action_low, action_high: scalar or `[A]` bounds.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]`, a policy prior.
      prev: optional previous `PlanOutput` to warm-start from.
      **fields: `MPPIConfig` fields; they build the config, or replace `cfg`'s.

    Returns:
      `PlanOutput`: the drawn elite (`actions`, its first `action` without exploration noise, its
      estimated `value`) and the last round's `mean` and `std`, `[H, A]`.

    Raises:
      TypeError: a keyword that is neither a call keyword nor a config field.
      ValueError: a bad field or call argument (before tracing); while tracing, a `step_fn`,
        `value_fn` or `prior_fn` output of the wrong shape (module docstring), TypeError of dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = mppi(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.action.shape, out.value.shape
      ((1,), ())
      >>> cfg = MPPIConfig(horizon=5, num_samples=64, num_elites=8)  # the same, configured once
      >>> mppi(jax.random.key(0), jnp.ones(2), step_fn, cfg, action_size=1).actions.shape
      (5, 1)
    """
    cfg = resolve_config(MPPIConfig, cfg, fields, "mppi")
    num_pi = check_call(
        cfg, action_size=action_size, discount=discount, action_low=action_low,
        action_high=action_high, prior_fn=prior_fn, prev=prev,
    )  # fmt: skip
    temperature = cfg.temperature
    return _gaussian_search(
        key, root, step_fn, value_fn, prior_fn, prev, cfg,
        weigh=lambda v: jax.nn.softmax((v - jnp.max(v)) / temperature),
        choose=lambda key, v: jax.random.categorical(key, (v - jnp.max(v)) / temperature),
        action_size=action_size, num_pi=num_pi, discount=discount, low=action_low,
        high=action_high,
    )  # fmt: skip


def gradient_shooting(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    cfg: GradientShootingConfig | None = None,
    *,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
    **fields,
) -> PlanOutput:
    """Gradient ascent on the return of several candidate sequences, through the model.

    Candidates: the shifted `prev.mean` (or zeros), `num_samples - 1` copies of it plus
    `N(0, init_std)` noise, and `num_pi_trajs` rollouts of `prior_fn` if given. Each takes
    `iterations` `optimizer` steps on its return via `jax.grad` of the rollout, clipped to the
    bounds after every step. Each candidate keeps one model key throughout (common random
    numbers), so a stochastic `step_fn` still gives consistent gradients. `step_fn` and
    `value_fn` must be differentiable in the action.

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      cfg: the search, a `GradientShootingConfig`; None builds one from `fields`.
      action_size: `A`. discount: per step. action_low, action_high: scalar or `[A]` bounds.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]`, seeds `cfg.num_pi_trajs` candidates.
      prev: optional previous `PlanOutput` to warm-start from.
      **fields: `GradientShootingConfig` fields; they build the config, or replace `cfg`'s.

    Returns:
      `PlanOutput`: the best optimised candidate as `actions` and as `mean` (the next warm
      start), its first `action` and its `value`; `std [H, A]` is the candidates' spread.

    Raises:
      TypeError: a keyword that is neither a call keyword nor a config field.
      ValueError: a bad field or call argument (before tracing); while tracing, a `step_fn`,
        `value_fn` or `prior_fn` output of the wrong shape (module docstring), TypeError of dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = gradient_shooting(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.action.shape
      (1,)
    """
    cfg = resolve_config(GradientShootingConfig, cfg, fields, "gradient_shooting")
    num_pi = check_call(
        cfg, action_size=action_size, discount=discount, action_low=action_low,
        action_high=action_high, prior_fn=prior_fn, prev=prev,
    )  # fmt: skip
    init_key, pi_key, eval_key = jax.random.split(key, 3)
    warm = warm_start(prev, cfg.horizon, action_size)
    shape = (cfg.num_samples, cfg.horizon, action_size)
    noise = cfg.init_std * jax.random.normal(init_key, shape)
    candidates = with_prior(
        pi_key, root, step_fn, prior_fn, num_pi, warm[None] + noise.at[0].set(0)
    )
    candidates = clip_actions(candidates, action_low, action_high)
    score = partial(evaluate, eval_key, root, step_fn, value_fn, discount=discount)
    grad_fn = jax.grad(lambda actions: -jnp.sum(score(actions)))
    optimizer = optax.adam(cfg.learning_rate) if cfg.optimizer is None else cfg.optimizer

    def step(carry, _):
        actions, opt_state = carry
        updates, opt_state = optimizer.update(grad_fn(actions), opt_state, actions)
        actions = clip_actions(optax.apply_updates(actions, updates), action_low, action_high)
        return (actions, opt_state), None

    init = (candidates, optimizer.init(candidates))
    (candidates, _), _ = jax.lax.scan(step, init, None, length=cfg.iterations)
    return best(candidates, score(candidates), std=jnp.std(candidates, axis=0))
