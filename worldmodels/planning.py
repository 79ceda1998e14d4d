"""Planners over any one-step model: random shooting, CEM, MPPI (TD-MPC2's) and gradient shooting.

Every planner plans for ONE root latent and returns a `PlanOutput`; `vmap` it over roots. The
model is a `StepFn` `(latent, action [A], key) -> (latent, reward [])` for one trajectory, which
planners `vmap` over their samples. Counts and bounds are static Python values, checked before
anything traces; every loop is a `lax.scan`, so a jitted planner compiles once per shape.
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
import numpy as np
import optax

from worldmodels.rollout import rollout_return
from worldmodels.shapes import call_prior, call_step
from worldmodels.types import Array, Latent, PlanOutput, PriorFn, PRNGKey, StepFn, ValueFn


def _check_args(
    *, horizon, action_size, num_samples, discount, action_low, action_high, prior_fn=None,
    prev=None, num_pi_trajs=0, num_elites=1, iterations=1, min_std=0.0, max_std=math.inf,
    temperature=1.0, learning_rate=1.0, init_std=0.0,
) -> int:  # fmt: skip
    """Raises `ValueError` naming the first bad argument; returns the prior-sequence count in use.

    Counts must be Python ints and bounds concrete; traced floats (an annealed temperature, say)
    pass unchecked.
    """
    counts = [("horizon", horizon, 1), ("action_size", action_size, 1)]
    counts += [("num_samples", num_samples, 1), ("num_pi_trajs", num_pi_trajs, 0)]
    counts += [("num_elites", num_elites, 1), ("iterations", iterations, 1)]
    for name, value, least in counts:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} must be a Python int >= {least}, got {value!r}")
    num_pi = num_pi_trajs if prior_fn is not None else 0
    if num_elites > num_samples + num_pi:
        raise ValueError(
            f"num_elites ({num_elites}) must be <= num_samples + num_pi_trajs in use "
            f"({num_samples} + {num_pi})"
        )
    floats = [
        ("discount", (discount,), lambda: 0 <= discount <= 1, "in [0, 1]"),
        ("temperature", (temperature,), lambda: temperature > 0, "> 0"),
        ("learning_rate", (learning_rate,), lambda: learning_rate > 0, "> 0"),
        ("init_std", (init_std,), lambda: init_std >= 0, ">= 0"),
        ("min_std", (min_std, max_std), lambda: 0 <= min_std <= max_std, "in [0, max_std]"),
    ]
    for name, values, ok, want in floats:
        if not any(isinstance(v, jax.core.Tracer) for v in values) and not ok():
            raise ValueError(f"{name} must be {want}, got {values[0]!r}")
    for name, bound in [("action_low", action_low), ("action_high", action_high)]:
        if isinstance(bound, jax.core.Tracer) or np.shape(bound) not in ((), (action_size,)):
            raise ValueError(f"{name} must be a concrete scalar or [action_size] array")
    if np.any(np.asarray(action_low) >= np.asarray(action_high)):
        raise ValueError(f"action_low ({action_low}) must be < action_high ({action_high})")
    if prev is not None and prev.mean.shape != (horizon, action_size):
        raise ValueError(f"prev.mean has shape {prev.mean.shape}, not {(horizon, action_size)}")
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


def _warm_start(prev: PlanOutput | None, horizon: int, action_size: int) -> Array:
    """`[H, A]`: `prev.mean` shifted one step earlier with a zero last step, or zeros."""
    if prev is None:
        return jnp.zeros((horizon, action_size), jnp.float32)
    return jnp.concatenate([prev.mean[1:], jnp.zeros_like(prev.mean[:1])])


def _clip(x: Array, low, high) -> Array:
    """Clips `x [..., A]` to scalar or `[A]` bounds (broadcast explicitly for strict ranks)."""
    return jnp.clip(x, jnp.broadcast_to(low, x.shape), jnp.broadcast_to(high, x.shape))


def _evaluate(key, root, step_fn, value_fn, actions: Array, discount) -> Array:
    """`[N]` returns (+ discounted terminal value) of `actions [N, H, A]`, one key per sequence.

    The same `key` gives every sequence the same model noise again (common random numbers).
    """
    returns = partial(rollout_return, step_fn, root, discount=discount, value_fn=value_fn)
    keys = jax.random.split(key, actions.shape[0])
    # float32 whatever the model's dtype, so `PlanOutput` always matches `initial_plan`.
    return jax.vmap(lambda k, a: returns(a, k))(keys, actions).astype(jnp.float32)


def _best(actions: Array, values: Array, std: Array) -> PlanOutput:
    """The best of `actions [N, H, A]` by `values [N]`, also as `mean` (the next warm start)."""
    i = jnp.argmax(values)
    return PlanOutput(
        action=actions[i, 0], actions=actions[i], mean=actions[i], std=std, value=values[i]
    )


def _with_prior(key, root, step_fn, prior_fn, num_pi: int, actions: Array) -> Array:
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


def random_shooting(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    *,
    horizon: int,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    num_samples: int = 512,
    num_pi_trajs: int = 24,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
) -> PlanOutput:
    """Scores uniform random sequences, prior rollouts and the warm start; returns the best.

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      horizon: `H`. action_size: `A`.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]`; `num_pi_trajs` rollouts are candidates.
      prev: optional previous `PlanOutput`; its shifted `mean` is a candidate (else zeros are).
      num_samples: uniform sequences; `1 + num_samples (+ num_pi_trajs)` candidates in all.
      discount: per step. action_low, action_high: scalar or `[A]` bounds.

    Returns:
      `PlanOutput`: the best candidate as `actions` and as `mean` (the next warm start), its first
      `action` and estimated return `value`; `std [H, A]` is that of the uniform distribution.

    Raises:
      ValueError: a bad count or bound (before tracing); while tracing, a `step_fn`, `value_fn`
        or `prior_fn` output of the wrong shape (module docstring). TypeError: of the wrong dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = random_shooting(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.actions.shape
      (5, 1)
    """
    num_pi = _check_args(
        horizon=horizon, action_size=action_size, num_samples=num_samples, discount=discount,
        action_low=action_low, action_high=action_high, prior_fn=prior_fn, prev=prev,
        num_pi_trajs=num_pi_trajs,
    )  # fmt: skip
    sample_key, pi_key, eval_key = jax.random.split(key, 3)
    shape = (num_samples, horizon, action_size)
    low, high = jnp.broadcast_to(action_low, shape), jnp.broadcast_to(action_high, shape)
    uniform = jax.random.uniform(sample_key, shape, minval=low, maxval=high)
    warm = _clip(_warm_start(prev, horizon, action_size), action_low, action_high)
    actions = jnp.concatenate([warm[None], uniform])
    actions = _with_prior(pi_key, root, step_fn, prior_fn, num_pi, actions)
    values = _evaluate(eval_key, root, step_fn, value_fn, actions, discount)
    std = (high[0] - low[0]).astype(warm.dtype) / math.sqrt(12.0)  # not weakly typed
    return _best(actions, values, std=std)


def _gaussian_search(
    key, root, step_fn, value_fn, prior_fn, prev, *, weigh, choose, horizon, action_size,
    num_samples, num_elites, num_pi, iterations, min_std, max_std, discount, low, high,
) -> PlanOutput:  # fmt: skip
    """The CEM/MPPI loop; the two differ only in `weigh` and `choose`.

    `weigh(elite_values [K]) -> weights [K]` (summing to one) refits the Gaussian;
    `choose(key, elite_values [K]) -> index []` picks the returned elite after the last round.
    """
    shape = (num_samples, horizon, action_size)
    pi_key, loop_key, choose_key = jax.random.split(key, 3)
    no_actions = jnp.zeros((0, horizon, action_size))
    pi_actions = _with_prior(pi_key, root, step_fn, prior_fn, num_pi, no_actions)

    def iterate(carry, key):
        mean, std, _, _ = carry
        sample_key, eval_key = jax.random.split(key)
        samples = _clip(mean[None] + std[None] * jax.random.normal(sample_key, shape), low, high)
        actions = jnp.concatenate([pi_actions, samples])
        values = _evaluate(eval_key, root, step_fn, value_fn, actions, discount)
        elite_values, elite_index = jax.lax.top_k(values, num_elites)
        elites = actions[elite_index]
        weights = weigh(elite_values)
        mean = jnp.einsum("k,kha->ha", weights, elites)
        var = jnp.einsum("k,kha->ha", weights, jnp.square(elites - mean[None]))
        return (mean, jnp.clip(jnp.sqrt(var), min_std, max_std), elites, elite_values), None

    mean = _warm_start(prev, horizon, action_size)
    init = (mean, jnp.full_like(mean, max_std), jnp.zeros((num_elites, *mean.shape)))
    init += (jnp.zeros(num_elites),)
    loop_keys = jax.random.split(loop_key, iterations)
    (mean, std, elites, elite_values), _ = jax.lax.scan(iterate, init, loop_keys)
    i = choose(choose_key, elite_values)
    return PlanOutput(
        action=elites[i, 0], actions=elites[i], mean=mean, std=std, value=elite_values[i]
    )


def cem(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    *,
    horizon: int,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    num_samples: int = 512,
    num_elites: int = 64,
    num_pi_trajs: int = 0,
    iterations: int = 6,
    min_std: float = 0.05,
    max_std: float = 2.0,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
) -> PlanOutput:
    """Cross-entropy method: a Gaussian over sequences, refit to its elites with equal weights.

    The mean starts at the shifted `prev.mean` (or zeros), the std at `max_std`. Each of
    `iterations` rounds samples `num_samples` sequences from `N(mean, std)` clipped to the bounds
    (plus `num_pi_trajs` rollouts of `prior_fn`, if given), keeps the `num_elites` best by return
    and refits `mean` and `std` (clipped to `[min_std, max_std]`) to them.

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      horizon: `H`. action_size: `A`.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]` (unused while `num_pi_trajs == 0`).
      prev: optional previous `PlanOutput` to warm-start from.
      num_samples, num_elites, num_pi_trajs, iterations, min_std, max_std: as above.
      discount: per step. action_low, action_high: scalar or `[A]` bounds.

    Returns:
      `PlanOutput`: the last round's best elite (`actions`, its first `action`, its `value`) and
      the refit `mean` and `std`, `[H, A]`.

    Raises:
      ValueError: a bad count or bound (before tracing); while tracing, a `step_fn`, `value_fn`
        or `prior_fn` output of the wrong shape (module docstring). TypeError: of the wrong dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = cem(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.mean.shape
      (5, 1)
    """
    num_pi = _check_args(
        horizon=horizon, action_size=action_size, num_samples=num_samples, discount=discount,
        action_low=action_low, action_high=action_high, prior_fn=prior_fn, prev=prev,
        num_pi_trajs=num_pi_trajs, num_elites=num_elites, iterations=iterations,
        min_std=min_std, max_std=max_std,
    )  # fmt: skip
    return _gaussian_search(
        key, root, step_fn, value_fn, prior_fn, prev,
        weigh=lambda v: jnp.full_like(v, 1.0 / v.shape[0]), choose=lambda key, v: jnp.argmax(v),
        horizon=horizon, action_size=action_size, num_samples=num_samples, num_elites=num_elites,
        num_pi=num_pi, iterations=iterations, min_std=min_std, max_std=max_std, discount=discount,
        low=action_low, high=action_high,
    )  # fmt: skip


def mppi(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    *,
    horizon: int,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    num_samples: int = 512,
    num_elites: int = 64,
    num_pi_trajs: int = 24,
    iterations: int = 6,
    temperature: float = 2.0,
    min_std: float = 0.05,
    max_std: float = 2.0,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
) -> PlanOutput:
    """TD-MPC2's planner: MPPI-weighted elites, prior rollouts mixed in, a sampled elite returned.

    If `prior_fn` is given, `num_pi_trajs` sequences come from rolling it through `step_fn`. The
    mean starts at the shifted `prev.mean` (or zeros), the std at `max_std`. Each of `iterations`
    rounds samples `num_samples` sequences from `N(mean, std)` clipped to the bounds, adds the
    prior sequences, scores each by its discounted return plus `discount**H * value_fn(final)`,
    keeps the `num_elites` best, weights them by `softmax((v - max v) / temperature)` and refits
    `mean` and `std` (clipped to `[min_std, max_std]`) to the weighted elites. Finally one elite
    is drawn with those weights.

    Temperature: TD-MPC2 *multiplies* by its `temperature` (0.5); we divide, as MPPI does, so our
    default `temperature=2.0` is TD-MPC2's 0.5. Smaller is greedier.

    Args:
      key: consumed. root: the start latent of one trajectory.
      step_fn: `(latent, action [A], key) -> (latent, reward [])`.
      horizon: `H`. action_size: `A`.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]`, a policy prior.
      prev: optional previous `PlanOutput` to warm-start from.
      num_samples, num_elites, num_pi_trajs, iterations, temperature, min_std, max_std: as above.
      discount: per step. action_low, action_high: scalar or `[A]` bounds.

    Returns:
      `PlanOutput`: the drawn elite (`actions`, its first `action` without exploration noise, its
      estimated `value`) and the last round's `mean` and `std`, `[H, A]`.

    Raises:
      ValueError: a bad count or bound (before tracing); while tracing, a `step_fn`, `value_fn`
        or `prior_fn` output of the wrong shape (module docstring). TypeError: of the wrong dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = mppi(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.action.shape, out.value.shape
      ((1,), ())
    """
    num_pi = _check_args(
        horizon=horizon, action_size=action_size, num_samples=num_samples, discount=discount,
        action_low=action_low, action_high=action_high, prior_fn=prior_fn, prev=prev,
        num_pi_trajs=num_pi_trajs, num_elites=num_elites, iterations=iterations,
        min_std=min_std, max_std=max_std, temperature=temperature,
    )  # fmt: skip
    return _gaussian_search(
        key, root, step_fn, value_fn, prior_fn, prev,
        weigh=lambda v: jax.nn.softmax((v - jnp.max(v)) / temperature),
        choose=lambda key, v: jax.random.categorical(key, (v - jnp.max(v)) / temperature),
        horizon=horizon, action_size=action_size, num_samples=num_samples, num_elites=num_elites,
        num_pi=num_pi, iterations=iterations, min_std=min_std, max_std=max_std, discount=discount,
        low=action_low, high=action_high,
    )  # fmt: skip


def gradient_shooting(
    key: PRNGKey,
    root: Latent,
    step_fn: StepFn,
    *,
    horizon: int,
    action_size: int,
    value_fn: ValueFn | None = None,
    prior_fn: PriorFn | None = None,
    prev: PlanOutput | None = None,
    num_samples: int = 8,
    num_pi_trajs: int = 1,
    iterations: int = 50,
    learning_rate: float = 0.05,
    init_std: float = 0.3,
    optimizer: optax.GradientTransformation | None = None,
    discount: float = 0.99,
    action_low: float | Array = -1.0,
    action_high: float | Array = 1.0,
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
      horizon: `H`. action_size: `A`.
      value_fn: optional `(latent, key) -> []`, the value after the last step.
      prior_fn: optional `(latent, key) -> action [A]`, seeds `num_pi_trajs` candidates.
      prev: optional previous `PlanOutput` to warm-start from.
      num_samples, num_pi_trajs, iterations, init_std: as above.
      learning_rate: of the default `optax.adam`. optimizer: any optax transformation instead.
      discount: per step. action_low, action_high: scalar or `[A]` bounds.

    Returns:
      `PlanOutput`: the best optimised candidate as `actions` and as `mean` (the next warm
      start), its first `action` and its `value`; `std [H, A]` is the candidates' spread.

    Raises:
      ValueError: a bad count or bound (before tracing); while tracing, a `step_fn`, `value_fn`
        or `prior_fn` output of the wrong shape (module docstring). TypeError: of the wrong dtype.

    Example:
      >>> step_fn = lambda x, a, k: (jnp.stack([x[0] + 0.1 * x[1], x[1] + 0.1 * a[0]]), -x[0] ** 2)
      >>> out = gradient_shooting(jax.random.key(0), jnp.ones(2), step_fn, horizon=5, action_size=1)
      >>> out.action.shape
      (1,)
    """
    num_pi = _check_args(
        horizon=horizon, action_size=action_size, num_samples=num_samples, discount=discount,
        action_low=action_low, action_high=action_high, prior_fn=prior_fn, prev=prev,
        num_pi_trajs=num_pi_trajs, iterations=iterations, learning_rate=learning_rate,
        init_std=init_std,
    )  # fmt: skip
    init_key, pi_key, eval_key = jax.random.split(key, 3)
    warm = _warm_start(prev, horizon, action_size)
    noise = init_std * jax.random.normal(init_key, (num_samples, horizon, action_size))
    candidates = _with_prior(
        pi_key, root, step_fn, prior_fn, num_pi, warm[None] + noise.at[0].set(0)
    )
    candidates = _clip(candidates, action_low, action_high)
    evaluate = partial(_evaluate, eval_key, root, step_fn, value_fn, discount=discount)
    grad_fn = jax.grad(lambda actions: -jnp.sum(evaluate(actions)))
    optimizer = optax.adam(learning_rate) if optimizer is None else optimizer

    def step(carry, _):
        actions, opt_state = carry
        updates, opt_state = optimizer.update(grad_fn(actions), opt_state, actions)
        actions = _clip(optax.apply_updates(actions, updates), action_low, action_high)
        return (actions, opt_state), None

    init = (candidates, optimizer.init(candidates))
    (candidates, _), _ = jax.lax.scan(step, init, None, length=iterations)
    return _best(candidates, evaluate(candidates), std=jnp.std(candidates, axis=0))
