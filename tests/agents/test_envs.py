"""Tests for the wrapped Brax envs.

The wrappers' exact semantics are checked on a tiny counting env (compiles in a second); real
Brax envs check integration: inverted_pendulum (positional) and swimmer (generalized, with the
`jnp.clip` shim) by default, the other nine in the slow sweep.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

import agents.envs as envs_module
from agents.envs import ENV_NAMES, make_env, step_transition, wrap_env


class CountingEnv(Env):
    """obs = [count, start marker]; each step counts up and rewards the new count.

    Terminates when the count reaches `fail_at`; the observation turns NaN at `nan_at`. `done`
    is built from Python floats, weak-typed like Brax's, to exercise the strong-dtype cast.
    """

    def __init__(self, fail_at: int = 1000, nan_at: int = -1):
        self.fail_at, self.nan_at = fail_at, nan_at

    def reset(self, rng):
        obs = jnp.stack([jnp.zeros(()), jax.random.uniform(rng)])
        return State(None, obs, jnp.zeros(()), jnp.zeros(()), metrics={"count": obs[0]})

    def step(self, state, action):
        count = state.obs[0] + 1.0
        obs = jnp.stack([count, state.obs[1]])
        obs = jnp.where(count == self.nan_at, jnp.nan, obs)
        done = jnp.where(count >= self.fail_at, 1.0, 0.0)
        return state.replace(obs=obs, reward=count + 0.0 * action[0], done=done)

    observation_size = 2
    action_size = 1
    backend = "counting"


def _counting(num_envs=2, action_repeat=1, episode_length=1000, **kwargs):
    env = wrap_env(
        CountingEnv(**kwargs),
        num_envs=num_envs,
        action_repeat=action_repeat,
        episode_length=episode_length,
    )
    return env, jax.jit(env.reset), jax.jit(env.step)


def _run(env_step, state, num_steps, num_envs=2):
    """Python loop of jitted steps; returns the list of states after each step."""
    states = []
    for _ in range(num_steps):
        state = env_step(state, jnp.zeros((num_envs, 1)))
        states.append(state)
    return states


def test_action_repeat_sums_rewards(key):
    _, reset, step = _counting(action_repeat=3)
    state = step(reset(key), jnp.zeros((2, 1)))
    np.testing.assert_array_equal(state.reward, [6.0, 6.0])  # 1 + 2 + 3
    np.testing.assert_array_equal(state.obs[:, 0], [3.0, 3.0])
    np.testing.assert_array_equal(state.info["steps"], [3, 3])
    np.testing.assert_array_equal(state.info["episode_length"], [1, 1])


def test_termination_stops_the_repeat_and_auto_resets(key):
    _, reset, step = _counting(action_repeat=3, fail_at=4)
    first = reset(key)
    s1, s2, s3 = _run(step, first, 3)
    np.testing.assert_array_equal(s1.done, [0.0, 0.0])
    np.testing.assert_array_equal(s2.reward, [4.0, 4.0])  # counts 5 and 6 are not added
    np.testing.assert_array_equal(s2.done, [1.0, 1.0])
    np.testing.assert_array_equal(s2.info["terminated"], [1.0, 1.0])
    np.testing.assert_array_equal(s2.info["truncated"], [0.0, 0.0])
    np.testing.assert_array_equal(s2.info["final_obs"][:, 0], [4.0, 4.0])
    np.testing.assert_array_equal(s2.info["final_obs"][:, 1], first.obs[:, 1])
    np.testing.assert_array_equal(s2.info["episode_return"], [10.0, 10.0])
    np.testing.assert_array_equal(s2.info["episode_length"], [2, 2])
    # The new episode starts from a reset: count 0, steps 0, totals restart on the next step.
    np.testing.assert_array_equal(s2.obs[:, 0], [0.0, 0.0])
    np.testing.assert_array_equal(s2.info["steps"], [0, 0])
    np.testing.assert_array_equal(s3.info["episode_return"], [6.0, 6.0])
    np.testing.assert_array_equal(s3.info["episode_length"], [1, 1])
    np.testing.assert_array_equal(s3.done, [0.0, 0.0])


def test_truncation_at_episode_length(key):
    # 5 underlying steps with action repeat 2: truncated after ceil(5 / 2) = 3 agent steps.
    _, reset, step = _counting(action_repeat=2, episode_length=5)
    states = _run(step, reset(key), 4)
    np.testing.assert_array_equal([s.done[0] for s in states], [0, 0, 1, 0])
    s3 = states[2]
    np.testing.assert_array_equal(s3.info["truncated"], [1.0, 1.0])
    np.testing.assert_array_equal(s3.info["terminated"], [0.0, 0.0])
    np.testing.assert_array_equal(s3.info["final_obs"][:, 0], [6.0, 6.0])
    np.testing.assert_array_equal(s3.obs[:, 0], [0.0, 0.0])


def test_termination_at_the_time_limit_counts_as_terminated(key):
    _, reset, step = _counting(action_repeat=1, episode_length=3, fail_at=3)
    state = _run(step, reset(key), 3)[-1]
    np.testing.assert_array_equal(state.info["terminated"], [1.0, 1.0])
    np.testing.assert_array_equal(state.info["truncated"], [0.0, 0.0])


def test_auto_reset_uses_a_fresh_key_per_env_and_episode(key):
    num_envs = 4
    _, reset, step = _counting(num_envs=num_envs, fail_at=2)
    state = reset(key)
    markers = [np.asarray(state.obs[:, 1])]
    for s in _run(step, state, 6, num_envs):
        if s.done[0]:
            markers.append(np.asarray(s.obs[:, 1]))
    markers = np.stack(markers)  # [episodes, envs]
    assert markers.shape == (4, num_envs)
    assert len(np.unique(markers)) == markers.size, "an episode repeated a start state"


def test_nan_physics_terminates_keeps_last_finite_obs_and_resets(key):
    _, reset, step = _counting(action_repeat=3, nan_at=5)
    s1, s2, s3 = _run(step, reset(key), 3)
    np.testing.assert_array_equal(s2.reward, [4.0, 4.0])  # count 5 broke: only 4 counts
    np.testing.assert_array_equal(s2.info["terminated"], [1.0, 1.0])
    np.testing.assert_array_equal(s2.info["final_obs"][:, 0], [4.0, 4.0])
    for s in (s1, s2, s3):
        assert np.isfinite(s.obs).all() and np.isfinite(s.info["final_obs"]).all()
    np.testing.assert_array_equal(s3.obs[:, 0], [3.0, 3.0])  # a full repeat after the reset


def test_step_output_types_match_input_and_compile_once(key):
    env, reset, step = _counting(action_repeat=2, fail_at=3)
    state = reset(key)
    out = jax.eval_shape(env.step, state, jnp.zeros((2, 1)))
    assert jax.tree.map(jax.typeof, out) == jax.tree.map(jax.typeof, state)  # incl. weak types
    for _ in range(4):
        state = step(state, jnp.zeros((2, 1)))
    assert step._cache_size() == 1

    @jax.jit
    def rollout(state):
        return jax.lax.scan(lambda s, _: (env.step(s, jnp.zeros((2, 1))), None), state, length=3)[0]

    rollout(rollout(state))
    assert rollout._cache_size() == 1


def test_step_transition(key):
    env, reset, _ = _counting(action_repeat=1, fail_at=2)
    state = reset(key)
    step = jax.jit(step_transition, static_argnums=0)
    transitions = []
    for _ in range(3):
        state, transition = step(env, state, jnp.ones((2, 1)))
        transitions.append(transition)
    t1, t2, t3 = transitions
    assert t1.obs.shape == (2, 2) and t1.next_obs.shape == (2, 2) and t1.action.shape == (2, 1)
    assert t1.reward.dtype == jnp.float32 and t1.reward.shape == (2,)
    assert t1.done.dtype == jnp.bool_ and t1.terminated.dtype == jnp.bool_
    assert not t1.done.any() and t2.done.all() and t2.terminated.all()
    np.testing.assert_array_equal(t2.obs, t1.next_obs)
    np.testing.assert_array_equal(t2.next_obs[:, 0], [2.0, 2.0])  # the final obs, not the reset
    np.testing.assert_array_equal(t3.obs[:, 0], [0.0, 0.0])


def test_unknown_name_lists_valid_names_before_building(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("constructed an env")

    monkeypatch.setattr(envs_module, "get_environment", fail)
    with pytest.raises(ValueError, match="unknown env 'cartpole'") as error:
        make_env("cartpole")
    assert all(name in str(error.value) for name in ENV_NAMES)


@pytest.mark.parametrize("field", ["num_envs", "action_repeat", "episode_length"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_raise(field, value):
    with pytest.raises(ValueError, match=field):
        make_env("hopper", **{field: value})


def test_clip_shim_accepts_old_names():
    shim = envs_module._ClipCompatNumpy()
    np.testing.assert_array_equal(shim.clip(jnp.arange(4.0), a_min=1.0, a_max=2.0), [1, 1, 2, 2])
    np.testing.assert_array_equal(shim.clip(jnp.arange(4.0), 1.0, 2.0), [1, 1, 2, 2])
    assert shim.sum is jnp.sum


# --- Real Brax envs -------------------------------------------------------------------------

STEPS = 20


@pytest.fixture(scope="module")
def pendulum():
    """inverted_pendulum, 4 envs: two pushed hard (terminate fast), two idle (hit the time limit);
    one jitted scan of STEPS `step_transition`s, compiled once for the module."""
    env, spec = make_env("inverted_pendulum", num_envs=4, action_repeat=2, episode_length=13)
    actions = jnp.zeros((STEPS, 4, 1)).at[:, :2].set(1.0)

    @jax.jit
    def rollout(state):
        def body(state, action):
            new_state, transition = step_transition(env, state, action)
            return new_state, (transition, new_state.info)

        return jax.lax.scan(body, state, actions)

    state0 = jax.jit(env.reset)(jax.random.key(0))
    final, (transitions, infos) = rollout(state0)
    return env, spec, rollout, state0, final, transitions, infos


def test_pendulum_spec(pendulum):
    _, spec, *_ = pendulum
    assert (spec.obs_size, spec.action_size, spec.num_envs) == (4, 1, 4)
    assert (spec.episode_length, spec.action_repeat) == (7, 2)  # ceil(13 / 2)


def test_pendulum_rollout_is_finite_and_consistent(pendulum):
    *_, transitions, infos = pendulum
    tr = jax.tree.map(np.asarray, transitions)  # [T, N, ...]
    assert np.isfinite(tr.obs).all() and np.isfinite(tr.next_obs).all()
    assert np.isfinite(tr.reward).all()
    truncated = infos["truncated"] > 0
    np.testing.assert_array_equal(tr.done, tr.terminated | np.asarray(truncated))
    assert not (tr.terminated & np.asarray(truncated)).any()
    # Pushed envs fail by the pole angle (|obs[1]| > 0.2) before the limit; idle ones time out.
    assert tr.terminated[:, :2].any() and not tr.terminated[:, 2:].any()
    assert (np.abs(tr.next_obs[..., 1])[tr.terminated] > 0.2).all()
    np.testing.assert_array_equal(np.flatnonzero(tr.done[:, 2]), [6, 13])
    # Chain: the next obs of a step is the next step's obs, unless the episode ended there.
    chained = ~tr.done[:-1]
    np.testing.assert_array_equal(tr.obs[1:][chained], tr.next_obs[:-1][chained])
    assert (tr.obs[1:][tr.done[:-1]] != tr.next_obs[:-1][tr.done[:-1]]).all()


def test_pendulum_auto_reset_starts_fresh_episodes(pendulum):
    _, _, _, state0, _, transitions, infos = pendulum
    tr = jax.tree.map(np.asarray, transitions)
    steps = np.asarray(infos["steps"])
    np.testing.assert_array_equal(steps[tr.done], 0)
    # Starts after a reset differ from every env's first start (not a cached first state).
    restarts = tr.obs[1:][tr.done[:-1]]
    assert len(restarts) > 4
    first = np.asarray(state0.obs)
    assert not (restarts[:, None, :] == first[None, :, :]).all(-1).any()
    assert len(np.unique(restarts, axis=0)) == len(restarts)


def test_pendulum_scan_compiles_once(pendulum):
    _, _, rollout, _, final, *_ = pendulum
    rollout(final)
    assert rollout._cache_size() == 1


def _smoke(name):
    env, spec = make_env(name, num_envs=2)
    assert spec.name == name

    @jax.jit
    def run(key):
        state = env.reset(key)
        step = lambda s, _: (env.step(s, jnp.full((2, spec.action_size), 0.5)), s.obs)
        return jax.lax.scan(step, state, length=2)

    state, obs = run(jax.random.key(1))
    assert obs.shape == (2, 2, spec.obs_size)
    assert np.isfinite(obs).all() and np.isfinite(state.obs).all()
    assert np.isfinite(state.info["final_obs"]).all()


_DEFAULT_ENVS = ("inverted_pendulum", "swimmer")  # swimmer exercises the brax.fluid clip shim


@pytest.mark.parametrize(
    "name",
    [n if n in _DEFAULT_ENVS else pytest.param(n, marks=pytest.mark.slow) for n in ENV_NAMES],
)
def test_every_env_constructs_resets_and_steps(name):
    _smoke(name)
