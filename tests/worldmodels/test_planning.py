"""Planners on a point mass with quadratic cost, whose optimal plan is known in closed form (LQR).

Compiling a planner costs seconds on a CPU and running it milliseconds, so each planner is
compiled once (module fixture) and reused by the tests, which vary only its array arguments; and
tests compile without XLA's backend optimisations, which halves compile time.
"""

import contextlib
import dataclasses
import doctest
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from worldmodels import planner_configs, planning
from worldmodels.planning import (
    CEMConfig,
    GradientShootingConfig,
    MPPIConfig,
    RandomShootingConfig,
    cem,
    gradient_shooting,
    initial_plan,
    mppi,
    random_shooting,
    reset_plan,
)
from worldmodels.types import PlanOutput

# Point mass, state [pos, vel], semi-implicit Euler: vel' = vel + DT a, pos' = pos + DT vel'.
# Reward on the next state: -SCALE (pos'^2 + 0.1 vel'^2 + 0.01 a^2); SCALE makes return gaps
# large next to MPPI's default temperature. From ROOT the whole optimal plan lies inside [-1, 1].
DT, HORIZON, DISCOUNT, SCALE = 0.1, 5, 0.99, 100.0
A_MAT = np.array([[1.0, DT], [0.0, 1.0]])
B_MAT = np.array([[DT * DT], [DT]])
Q_MAT, R_COST = SCALE * np.diag([1.0, 0.1]), SCALE * 0.01
ROOT = np.array([0.1, 0.0], np.float32)
NO_TERMINAL = np.zeros((2, 2))
TERMINAL = SCALE * np.diag([5.0, 0.5])  # -value_fn as a quadratic form, for the value test
TOL = 0.08  # on the first action; the planners' minimum std is 0.05

jit = partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def point_mass(state, action, key):
    vel = state[1] + DT * action[0]
    pos = state[0] + DT * vel
    reward = -SCALE * (pos**2 + 0.1 * vel**2 + 0.01 * action[0] ** 2)
    return jnp.stack([pos, vel]), reward


def lqr_gains(terminal=NO_TERMINAL):
    """Discounted finite-horizon LQR by the backward Riccati recursion: gains `[H, 1, 2]`."""
    cost_to_go, gains = terminal, []
    for _ in range(HORIZON):
        m = Q_MAT + DISCOUNT * cost_to_go
        gain = np.linalg.solve(B_MAT.T @ m @ B_MAT + R_COST, B_MAT.T @ m @ A_MAT)
        cost_to_go = A_MAT.T @ m @ A_MAT - A_MAT.T @ m @ B_MAT @ gain
        gains.append(gain)
    return np.stack(gains[::-1])


def lqr_plan(terminal=NO_TERMINAL):
    """The optimal plan `[H, 1]` from `ROOT` (open loop equals closed loop: deterministic)."""
    state, plan = ROOT.astype(np.float64), []
    for gain in lqr_gains(terminal):
        plan.append(-gain @ state)
        state = A_MAT @ state + B_MAT @ plan[-1]
    return np.stack(plan)


def true_return(actions):
    """`[...]` the discounted return from `ROOT` of action sequences `[..., H, 1]`, in numpy."""
    actions = np.asarray(actions, np.float64)
    state = np.broadcast_to(ROOT.astype(np.float64), (*actions.shape[:-2], 2))
    total = 0.0
    for t in range(HORIZON):
        state = state @ A_MAT.T + actions[..., t, :] @ B_MAT.T
        cost = state**2 @ np.diag(Q_MAT) + R_COST * actions[..., t, 0] ** 2
        total = total - DISCOUNT**t * cost
    return total


# One configuration per planner. Random shooting gets MPPI's budget: 6 rounds x 512 samples.
CONFIGS = {
    "mppi": (mppi, {}),
    "cem": (cem, {}),
    "gradient_shooting": (gradient_shooting, {}),
    "random_shooting": (random_shooting, dict(num_samples=6 * 512 - 1)),
}


def planner_call(name):
    """`(key, root [2], prev, value_weight []) -> PlanOutput` for one root, not yet jitted.

    The terminal value is `-value_weight * x' TERMINAL x`: weight 0 plans without a value.
    """
    planner, config = CONFIGS[name]

    def plan(key, root, prev, value_weight):
        value_fn = lambda x, key: -value_weight * (x @ jnp.asarray(TERMINAL, jnp.float32) @ x)
        return planner(
            key, root, point_mass, horizon=HORIZON, action_size=1, value_fn=value_fn, prev=prev,
            **config,
        )  # fmt: skip

    return plan


@pytest.fixture(scope="module")
def planners():
    """Per planner name, `planner_call(name)` jitted once for the whole module."""
    return {name: jit(planner_call(name)) for name in CONFIGS}


def plan_over_keys(plan, keys, value_weight=0.0):
    """Stacks single-root plans from `ROOT`, one per key (re-calling one compiled function)."""
    outs = [plan(k, jnp.asarray(ROOT), initial_plan(HORIZON, 1), value_weight) for k in keys]
    return jax.tree.map(lambda *x: np.stack(x), *outs)


def test_lqr_reference():
    plan = lqr_plan()
    assert np.abs(plan).max() < 0.7  # well inside the bounds, so unconstrained LQR is optimal
    np.testing.assert_allclose(plan[0], [-0.5924], atol=1e-3)
    perturbed = plan + 0.01 * np.random.default_rng(0).normal(size=(20, HORIZON, 1))
    assert np.all(true_return(perturbed) < true_return(plan))


@pytest.mark.parametrize("name", ["mppi", "cem", "gradient_shooting"])
def test_first_action_matches_lqr(name, planners, key):
    out = plan_over_keys(planners[name], jax.random.split(key, 4))
    np.testing.assert_allclose(out.action[:, 0], lqr_plan()[0, 0], atol=TOL)
    np.testing.assert_array_equal(out.action, out.actions[:, 0])
    # The value estimate is the return of the chosen sequence (the model is deterministic).
    np.testing.assert_allclose(out.value, true_return(out.actions), rtol=1e-4)
    if name != "gradient_shooting":  # the sampling std stays within [min_std, max_std]
        assert np.all(out.std >= 0.05 - 1e-6) and np.all(out.std <= 2.0)


def test_random_shooting_beats_zero_action(planners, key):
    out = plan_over_keys(planners["random_shooting"], jax.random.split(key, 4))
    assert np.all(true_return(out.actions) > true_return(np.zeros((HORIZON, 1))))
    np.testing.assert_allclose(out.action[:, 0], lqr_plan()[0, 0], atol=0.5)


def test_mppi_beats_random_shooting_at_equal_budget(planners, key):
    keys = jax.random.split(key, 4)  # both make 3072 model rollouts per plan
    mppi_return = true_return(plan_over_keys(planners["mppi"], keys).actions).mean()
    shooting_return = true_return(plan_over_keys(planners["random_shooting"], keys).actions).mean()
    optimum = true_return(lqr_plan())
    assert shooting_return < mppi_return <= optimum + 1e-5
    assert optimum - mppi_return < 0.2 * (optimum - shooting_return)


@pytest.mark.parametrize("name", ["mppi", "cem", "gradient_shooting"])
def test_value_fn_shifts_the_plan_to_the_lqr_optimum(name, planners, key):
    with_value, without = lqr_plan(TERMINAL)[0, 0], lqr_plan()[0, 0]
    assert abs(with_value - without) > 3 * TOL
    out = plan_over_keys(planners[name], jax.random.split(key, 4), value_weight=1.0)
    np.testing.assert_allclose(out.action[:, 0], with_value, atol=TOL)


def timed_point_mass(latent, action, key):
    state, reward = point_mass(latent["x"], action, key)
    return {"x": state, "t": latent["t"] + 1}, reward


def test_prior_trajectories_are_used(key):
    # Time rides in a pytree latent so the prior can be LQR's time-varying feedback. One round
    # of greedy MPPI: good prior sequences win it, bad ones cannot.
    @jit
    def plan(key, gains):
        prior_fn = lambda latent, key: -(gains[latent["t"]] @ latent["x"])
        root = {"x": jnp.asarray(ROOT), "t": jnp.int32(0)}
        return mppi(
            key, root, timed_point_mass, horizon=HORIZON, action_size=1, prior_fn=prior_fn,
            num_samples=64, num_elites=16, num_pi_trajs=4, iterations=1, temperature=0.05,
        )  # fmt: skip

    optimal = plan(key, jnp.asarray(lqr_gains(), jnp.float32))
    np.testing.assert_allclose(optimal.actions, lqr_plan(), atol=1e-4)
    zero = plan(key, jnp.zeros((HORIZON, 1, 2)))
    assert true_return(zero.actions) < true_return(lqr_plan()) - 0.05


@pytest.mark.parametrize("name", CONFIGS)
def test_no_recompile_on_second_call(name, planners, key):
    plan = planners[name]
    key1, key2 = jax.random.split(key)
    first = plan(key1, jnp.asarray(ROOT), initial_plan(HORIZON, 1), 0.0)
    jax.block_until_ready(first)
    root2 = jnp.array([0.3, -0.2])
    with count_compiles() as events:
        # New key, root, value weight, and the planner's own output as the warm start.
        second = plan(key2, root2, first, 1.0)
        jax.block_until_ready(second)
    assert events == []
    assert isinstance(second, PlanOutput)
    expected = initial_plan(HORIZON, 1)
    chex.assert_trees_all_equal_shapes_and_dtypes(first, expected)
    weak = lambda t: [x.weak_type for x in jax.tree.leaves(t)]  # noqa: E731
    assert weak(first) == weak(expected)  # a weak-typed carry would recompile the next call


@contextlib.contextmanager
def count_compiles():
    """Collects jit cache misses (traces and XLA compiles) inside the block."""
    events = []
    names = {"/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration"}
    listener = lambda name, duration, **kwargs: events.append(name) if name in names else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("name", CONFIGS)
def test_same_key_same_plan_new_key_new_plan(name, planners, key):
    plan, root, prev = planners[name], jnp.asarray(ROOT), initial_plan(HORIZON, 1)
    first, again = plan(key, root, prev, 0.0), plan(key, root, prev, 0.0)
    other = plan(jax.random.split(key)[1], root, prev, 0.0)
    jax.tree.map(np.testing.assert_array_equal, first, again)
    assert not np.allclose(first.actions, other.actions)


@pytest.mark.parametrize("name", CONFIGS)
def test_vmap_over_roots_matches_single_calls(name, planners, key):
    plan, prev = planners[name], initial_plan(HORIZON, 1)
    keys, roots = jax.random.split(key, 3), jnp.array([[0.1, 0.0], [-0.5, 0.2], [0.3, 0.3]])
    batched = jit(jax.vmap(planner_call(name), in_axes=(0, 0, None, None)))(keys, roots, prev, 0.0)
    assert batched.actions.shape == (3, HORIZON, 1) and batched.value.shape == (3,)
    for i in range(3):
        single = jax.tree.map(np.asarray, plan(keys[i], roots[i], prev, 0.0))
        row = jax.tree.map(lambda x, i=i: np.asarray(x[i]), batched)
        jax.tree.map(
            lambda b, s: np.testing.assert_allclose(b, s, rtol=1e-5, atol=1e-5), row, single
        )


WARM_CONFIGS = {
    "random_shooting": (random_shooting, dict(num_samples=16)),
    "cem": (cem, dict(num_samples=8, num_elites=2, iterations=1, min_std=1e-4, max_std=1e-4)),
    "mppi": (mppi, dict(num_samples=8, num_elites=2, iterations=1, min_std=1e-4, max_std=1e-4)),
    "gradient_shooting": (gradient_shooting, dict(num_samples=4, iterations=2)),
}


@pytest.mark.parametrize("name", WARM_CONFIGS)
def test_warm_start_is_the_shifted_previous_mean(name, key):
    # The reward peaks exactly at the shifted previous mean (time rides in the latent): random
    # shooting and gradient shooting must return that candidate; CEM and MPPI, with a tiny
    # std, can only sample around it.
    planner, config = WARM_CONFIGS[name]
    prev = initial_plan(HORIZON, 1).replace(mean=jnp.linspace(-0.8, 0.8, HORIZON)[:, None])
    shifted = jnp.concatenate([prev.mean[1:], jnp.zeros((1, 1))])
    track = lambda t, action, key: (t + 1, -jnp.sum(jnp.square(action - shifted[t])))
    plan = lambda key, prev: planner(
        key, jnp.int32(0), track, horizon=HORIZON, action_size=1, prev=prev, **config
    )
    out = jit(plan)(key, prev)
    np.testing.assert_allclose(out.actions, shifted, atol=1e-3)
    np.testing.assert_allclose(out.mean, shifted, atol=1e-3)


def test_reset_plan_batched_and_single():
    plans = jax.tree.map(lambda x: jnp.stack([x + 1.0, x + 2.0]), initial_plan(HORIZON, 1))
    reset = reset_plan(plans, jnp.array([True, False]))
    for field in ("action", "actions", "mean", "value"):
        np.testing.assert_array_equal(getattr(reset, field)[0], 0.0)
        np.testing.assert_array_equal(getattr(reset, field)[1], getattr(plans, field)[1])
    np.testing.assert_array_equal(reset.std, plans.std)
    assert jax.tree.structure(reset) == jax.tree.structure(plans)
    single = reset_plan(jax.tree.map(lambda x: x[1], plans), jnp.bool_(True))
    np.testing.assert_array_equal(single.mean, 0.0)


def test_gradient_shooting_uses_common_random_numbers(key):
    # Each step's target is drawn from its model key, so gradient ascent can only reach the
    # targets (a return near 0) if every candidate keeps its keys through the optimisation.
    def step_fn(state, action, key):
        target = jax.random.uniform(key, (1,), minval=-0.5, maxval=0.5)
        return state, -jnp.sum(jnp.square(action - target))

    plan = lambda k: gradient_shooting(
        k, jnp.zeros(2), step_fn, horizon=3, action_size=1, num_samples=2, iterations=20,
        optimizer=optax.sgd(0.4),
    )  # fmt: skip
    assert float(jit(plan)(key).value) > -1e-4


BAD_ARGS = [
    (planner, kwargs, name)
    for planner in (random_shooting, cem, mppi, gradient_shooting)
    for kwargs, name in [
        (dict(horizon=0), "horizon"),
        (dict(horizon=2.0), "horizon"),
        (dict(action_size=0), "action_size"),
        (dict(num_samples=0), "num_samples"),
        (dict(num_pi_trajs=-1), "num_pi_trajs"),
        (dict(discount=1.5), "discount"),
        (dict(action_low=1.0, action_high=1.0), "action_low"),
        (dict(action_low=jnp.zeros(3)), "action_low"),
        (dict(prev=initial_plan(HORIZON + 1, 1)), "prev"),
    ]
]
BAD_ARGS += [
    (planner, kwargs, name)
    for planner in (cem, mppi)
    for kwargs, name in [
        (dict(num_elites=0), "num_elites"),
        (dict(num_samples=8, num_elites=9), "num_elites"),
        (dict(iterations=0), "iterations"),
        (dict(min_std=3.0), "min_std"),
        (dict(min_std=-0.1), "min_std"),
    ]
]
BAD_ARGS += [
    (mppi, dict(temperature=0.0), "temperature"),
    (gradient_shooting, dict(iterations=0), "iterations"),
    (gradient_shooting, dict(learning_rate=-1.0), "learning_rate"),
    (gradient_shooting, dict(init_std=-1.0), "init_std"),
]


@pytest.mark.parametrize(
    "planner, kwargs, name", BAD_ARGS, ids=[f"{p.__name__}-{n}" for p, _, n in BAD_ARGS]
)
def test_bad_arguments_raise_before_tracing(planner, kwargs, name, key):
    def exploding_step(*args):
        raise AssertionError("step_fn was traced before the arguments were checked")

    with pytest.raises(ValueError, match=name):
        planner(key, jnp.asarray(ROOT), exploding_step, **(dict(horizon=5, action_size=1) | kwargs))


@pytest.mark.parametrize("planner", [random_shooting, cem, mppi, gradient_shooting])
def test_prior_counts_toward_num_elites_and_traces(planner, key):
    config = dict(horizon=HORIZON, action_size=1, num_samples=8, num_pi_trajs=4)
    if planner in (cem, mppi):
        config["num_elites"] = 10  # more than num_samples: valid only with the prior's sequences
        with pytest.raises(ValueError, match="num_elites"):
            planner(key, jnp.asarray(ROOT), point_mass, **config)
    prior_fn = lambda x, key: jnp.clip(-3.0 * x[:1] + 0.1 * jax.random.normal(key, (1,)), -1, 1)
    trace = lambda k: planner(k, jnp.asarray(ROOT), point_mass, prior_fn=prior_fn, **config)
    shapes = jax.eval_shape(trace, key)  # traces the prior path without paying for a compile
    assert shapes.actions.shape == (HORIZON, 1) and shapes.value.shape == ()


def jitted(planner):
    """`planner` compiled as one program (the examples' own code, without eager dispatch)."""
    return lambda key, root, step_fn, *args, **kw: jit(
        lambda k, r: planner(k, r, step_fn, *args, **kw)
    )(key, root)


def test_docstring_examples_run():
    planners = [random_shooting, cem, mppi, gradient_shooting]
    globs = {"jax": jax, "jnp": jnp} | {p.__name__: jitted(p) for p in planners}
    result = doctest.testmod(planning, extraglobs=globs)
    assert result.failed == 0 and result.attempted >= 4
    result = doctest.testmod(planner_configs)  # builds configs only: nothing to compile
    assert result.failed == 0 and result.attempted >= 2


def readme_step(latent, action, key):
    """The README's point mass, state (position, velocity): a reward `[]` per latent."""
    pos, vel = latent
    vel = vel + 0.1 * action[0]
    return (pos + 0.1 * vel, vel), -(pos**2 + 0.1 * vel**2)


def with_reward(reshape):
    """`readme_step` with its reward passed through `reshape`."""

    def step_fn(latent, action, key):
        latent, reward = readme_step(latent, action, key)
        return latent, reshape(reward)

    return step_fn


def with_latent(change):
    """`readme_step` with its new latent passed through `change`."""

    def step_fn(latent, action, key):
        latent, reward = readme_step(latent, action, key)
        return change(latent), reward

    return step_fn


README_ROOT = (jnp.array(1.0), jnp.array(0.0))
GOOD_VALUE = lambda latent, key: -(latent[0] ** 2)
GOOD_PRIOR = lambda latent, key: jnp.clip(-latent[0], -1.0, 1.0)[None]
TINY = {  # the smallest budget that still runs every part of each planner (traced only)
    random_shooting: dict(num_samples=4, num_pi_trajs=2),
    cem: dict(num_samples=4, num_elites=2, num_pi_trajs=2, iterations=1),
    mppi: dict(num_samples=4, num_elites=2, num_pi_trajs=2, iterations=1),
    gradient_shooting: dict(num_samples=2, num_pi_trajs=2, iterations=1),
}
SHAPE = r"\(one scalar per latent\), got shape"
REWARD = rf"step_fn must return reward of shape \[\] {SHAPE}"
BAD_OUTPUTS = {  # case: (planner keywords, error, message)
    "reward[1]": (dict(step_fn=with_reward(lambda r: r[None])), ValueError, rf"{REWARD} \(1,\)"),
    "reward[2]": (
        dict(step_fn=with_reward(lambda r: jnp.stack([r, r]))),
        ValueError,
        rf"{REWARD} \(2,\) float32",
    ),
    "reward[1]-prior": (  # the prior's rollouts check the step too
        dict(step_fn=with_reward(lambda r: r[None]), prior_fn=GOOD_PRIOR),
        ValueError,
        rf"{REWARD} \(1,\) float32",
    ),
    "bool-reward": (
        dict(step_fn=with_reward(lambda r: r > -0.5)),
        TypeError,
        r"step_fn must return a floating-point reward of shape \[\], got shape \(\) bool",
    ),
    "int-reward": (
        dict(step_fn=with_reward(lambda r: r.astype(jnp.int32))),
        TypeError,
        r"step_fn must return a floating-point reward .*\(\) int32",
    ),
    "no-pair": (
        dict(step_fn=lambda latent, action, key: readme_step(latent, action, key)[1]),
        TypeError,
        r"step_fn must return a pair \(latent, reward \[\]\)",
    ),
    "latent-shape": (
        dict(step_fn=with_latent(lambda z: (z[0], z[1][None]))),
        ValueError,
        r"step_fn must return a latent shaped like .* latent\[1\] went in as \(\) float32, "
        r"came out as \(1,\) float32",
    ),
    "latent-dtype": (
        dict(step_fn=with_latent(lambda z: (z[0], z[1].astype(jnp.int32)))),
        TypeError,
        r"step_fn .* latent\[1\] went in as \(\) float32, came out as \(\) int32",
    ),
    "latent-structure": (
        dict(step_fn=with_latent(lambda z: [*z])),
        ValueError,
        r"step_fn must return a latent with the pytree structure",
    ),
    "value[1]": (
        dict(value_fn=lambda latent, key: GOOD_VALUE(latent, key)[None]),
        ValueError,
        rf"value_fn must return value of shape \[\] {SHAPE} \(1,\) float32",
    ),
    "bool-value": (
        dict(value_fn=lambda latent, key: latent[0] > 0),
        TypeError,
        r"value_fn must return a floating-point value of shape \[\], got shape \(\) bool",
    ),
    "prior[2]": (
        dict(prior_fn=lambda latent, key: jnp.zeros(2)),
        ValueError,
        r"prior_fn must return an action of shape \[A\] = \(1,\) for one latent, "
        r"got shape \(2,\) float32",
    ),
    "prior[]": (
        dict(prior_fn=lambda latent, key: GOOD_PRIOR(latent, key)[0]),
        ValueError,
        r"prior_fn must return an action of shape \[A\] = \(1,\) .*got shape \(\) float32",
    ),
}


def trace_plan(planner, key, *, step_fn=readme_step, root=README_ROOT, **kwargs):
    """Traces `planner` on the README point mass without compiling; returns the output shapes."""
    config = dict(horizon=3, action_size=1, value_fn=GOOD_VALUE) | TINY[planner] | kwargs
    return jax.eval_shape(lambda k: planner(k, root, step_fn, **config), key)


def test_readme_point_mass_with_a_reward_of_shape_one_raises(key):
    # Broadcast against the [H] discounts, this reward gave a wrong plan without an error.
    step_fn = with_reward(lambda r: jnp.reshape(r, (1,)))
    with pytest.raises(ValueError, match=rf"step_fn must return reward of shape \[\] {SHAPE} \(1,"):
        mppi(key, README_ROOT, step_fn, horizon=5, action_size=1)


@pytest.mark.parametrize("case", BAD_OUTPUTS)
@pytest.mark.parametrize("planner", [random_shooting, cem, mppi, gradient_shooting])
def test_bad_model_outputs_raise_naming_the_function_and_shapes(planner, case, key):
    kwargs, error, message = BAD_OUTPUTS[case]
    with pytest.raises(error, match=message):
        trace_plan(planner, key, **kwargs)


@pytest.mark.parametrize("planner", [random_shooting, cem, mppi, gradient_shooting])
def test_good_model_outputs_pass_the_checks(planner, key):
    # Python numbers as the root are weakly typed: the step may return them as float32 arrays.
    for root in (README_ROOT, (1.0, 0.0)):
        out = trace_plan(planner, key, root=root, prior_fn=GOOD_PRIOR)
        assert out.actions.shape == (3, 1) and out.value.shape == ()


CONFIG_OF = {
    random_shooting: RandomShootingConfig,
    cem: CEMConfig,
    mppi: MPPIConfig,
    gradient_shooting: GradientShootingConfig,
}


def jaxpr_of(planner, key, *args, **kwargs):
    """The traced program of one plan on the README point mass: equal text, equal computation
    (the same ops on the same keys, so bit-identical outputs), at no compile cost."""
    call = lambda k: planner(
        k, README_ROOT, readme_step, *args, action_size=1, value_fn=GOOD_VALUE,
        prior_fn=GOOD_PRIOR, **kwargs,
    )  # fmt: skip
    return str(jax.make_jaxpr(call)(key))


@pytest.mark.parametrize("planner", CONFIG_OF)
def test_config_form_equals_keyword_form(planner, key):
    fields = dict(horizon=3) | TINY[planner]
    keywords = jaxpr_of(planner, key, **fields)
    assert jaxpr_of(planner, key, CONFIG_OF[planner](**fields)) == keywords
    # A config and keywords replacing some of its fields: the same as keywords alone.
    base = CONFIG_OF[planner](**(fields | dict(horizon=5)))
    assert jaxpr_of(planner, key, base, **fields) == keywords
    assert jaxpr_of(planner, key, base) != keywords  # the keywords did change the plan


def test_config_form_gives_the_same_plan_bit_for_bit(key):
    cfg = MPPIConfig(horizon=3, num_samples=8, num_elites=2, num_pi_trajs=2, iterations=2)
    run = lambda *args, **kw: jit(
        lambda k: mppi(k, README_ROOT, readme_step, *args, action_size=1, prior_fn=GOOD_PRIOR,
                       value_fn=GOOD_VALUE, **kw)
    )(key)  # fmt: skip
    by_config = run(cfg)
    by_keywords = run(**dataclasses.asdict(cfg))
    by_override = run(dataclasses.replace(cfg, iterations=5), iterations=2)
    for out in (by_keywords, by_override):
        jax.tree.map(np.testing.assert_array_equal, by_config, out)


def test_default_configs_are_the_old_keyword_defaults():
    # MPPI's are the official TD-MPC2 settings (its temperature 0.5 is our 2.0, see MPPIConfig).
    assert MPPIConfig(horizon=3) == MPPIConfig(
        horizon=3, num_samples=512, num_elites=64, num_pi_trajs=24, iterations=6,
        temperature=2.0, min_std=0.05, max_std=2.0,
    )  # fmt: skip
    assert CEMConfig(horizon=3) == CEMConfig(
        horizon=3, num_samples=512, num_elites=64, num_pi_trajs=0, iterations=6, min_std=0.05,
        max_std=2.0,
    )  # fmt: skip
    assert RandomShootingConfig(horizon=3) == RandomShootingConfig(
        horizon=3, num_samples=512, num_pi_trajs=24
    )
    assert GradientShootingConfig(horizon=3) == GradientShootingConfig(
        horizon=3, num_samples=8, num_pi_trajs=1, iterations=50, learning_rate=0.05,
        init_std=0.3, optimizer=None,
    )  # fmt: skip
    for cls in CONFIG_OF.values():
        with pytest.raises(TypeError, match="horizon"):
            cls()
        with pytest.raises(dataclasses.FrozenInstanceError):
            cls(horizon=3).horizon = 4


BAD_CONFIGS = [
    (cls, kwargs, rf"^{cls.__name__}\.{message}")
    for cls in CONFIG_OF.values()
    for kwargs, message in [
        (dict(horizon=0), r"horizon must be an int >= 1, got 0$"),
        (dict(horizon=2.0), r"horizon must be an int >= 1, got 2\.0$"),
        (dict(horizon=jnp.int32(3)), r"horizon must be an int >= 1"),  # counts fix shapes
        (dict(num_samples=0), r"num_samples must be an int >= 1, got 0$"),
        (dict(num_samples=True), r"num_samples must be an int >= 1, got True$"),
        (dict(num_pi_trajs=-1), r"num_pi_trajs must be an int >= 0, got -1$"),
    ]
]
BAD_CONFIGS += [
    (cls, kwargs, rf"^{cls.__name__}\.{message}")
    for cls in (CEMConfig, MPPIConfig)
    for kwargs, message in [
        (dict(num_elites=0), r"num_elites must be an int >= 1, got 0$"),
        (dict(iterations=0), r"iterations must be an int >= 1, got 0$"),
        (dict(min_std=-0.1), r"min_std must be >= 0, got -0\.1$"),
        (dict(max_std=0.0), r"max_std must be > 0, got 0\.0$"),
        (dict(min_std=3.0), r"min_std \(3\.0\) must be <= max_std \(2\.0\)$"),
        (dict(max_std=float("inf")), r"max_std must be a finite number, got inf$"),
        (
            dict(num_samples=8, num_elites=9, num_pi_trajs=0),
            r"num_elites \(9\) must be <= num_samples \+ num_pi_trajs \(8 \+ 0\)$",
        ),
    ]
]
BAD_CONFIGS += [
    (MPPIConfig, dict(temperature=0.0), r"^MPPIConfig\.temperature must be > 0, got 0\.0$"),
    (MPPIConfig, dict(temperature=float("nan")), r"^MPPIConfig\.temperature must be a finite"),
    (GradientShootingConfig, dict(iterations=0), r"^GradientShootingConfig\.iterations must be"),
    (
        GradientShootingConfig,
        dict(learning_rate=-1.0),
        r"^GradientShootingConfig\.learning_rate must be > 0, got -1\.0$",
    ),
    (
        GradientShootingConfig,
        dict(init_std=-1.0),
        r"^GradientShootingConfig\.init_std must be >= 0, got -1\.0$",
    ),
]


@pytest.mark.parametrize(
    "cls, kwargs, message",
    BAD_CONFIGS,
    ids=[f"{c.__name__}-{'-'.join(kw)}-{i}" for i, (c, kw, _) in enumerate(BAD_CONFIGS)],
)
def test_bad_config_fields_raise_naming_class_and_field(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**(dict(horizon=3) | kwargs))


@pytest.mark.parametrize("planner", CONFIG_OF)
def test_a_bad_field_raises_in_either_form(planner, key):
    cls = CONFIG_OF[planner]
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.num_samples must be an int >= 1"):
        planner(key, README_ROOT, readme_step, horizon=3, action_size=1, num_samples=0)
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.num_samples must be an int >= 1"):
        planner(key, README_ROOT, readme_step, cls(horizon=3), action_size=1, num_samples=0)


@pytest.mark.parametrize("planner", CONFIG_OF)
def test_unknown_keyword_is_a_type_error_naming_it_and_the_config(planner, key):
    name = CONFIG_OF[planner].__name__
    with pytest.raises(TypeError, match=rf"{planner.__name__}\(\).*'num_sample'.*{name}"):
        planner(key, README_ROOT, readme_step, horizon=3, action_size=1, num_sample=8)
    with pytest.raises(TypeError, match=rf"'bogus'.*{name}"):
        planner(key, README_ROOT, readme_step, CONFIG_OF[planner](horizon=3), action_size=1,
                bogus=1)  # fmt: skip


def test_other_planners_fields_and_configs_are_refused(key):
    with pytest.raises(TypeError, match=r"cem\(\).*'temperature'.*CEMConfig"):
        cem(key, README_ROOT, readme_step, horizon=3, action_size=1, temperature=1.0)
    with pytest.raises(TypeError, match=r"mppi\(\) takes a MPPIConfig as cfg, got CEMConfig"):
        mppi(key, README_ROOT, readme_step, CEMConfig(horizon=3), action_size=1)
    with pytest.raises(TypeError, match=r"mppi\(\) needs a MPPIConfig as cfg, or horizon="):
        mppi(key, README_ROOT, readme_step, action_size=1)


def test_traced_temperature_passes_unchecked(key):
    # An annealed temperature under jit: the config cannot compare a tracer, so it does not.
    small = dict(horizon=3, num_samples=4, num_elites=2, num_pi_trajs=0, iterations=1)

    def plan(t):
        by_keyword = mppi(key, README_ROOT, readme_step, action_size=1, temperature=t, **small)
        by_config = mppi(key, README_ROOT, readme_step, MPPIConfig(temperature=t, **small),
                         action_size=1)  # fmt: skip
        return by_keyword, by_config

    shapes = jax.eval_shape(plan, 0.5)
    assert shapes[0].actions.shape == shapes[1].actions.shape == (3, 1)
