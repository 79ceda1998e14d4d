import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.tdmpc2 import TDMPC2Config, episode_discount, make_tdmpc2
from agents.types import EnvSpec, Transition
from worldmodels import MPPIConfig

SPEC = EnvSpec(
    name="toy", obs_size=4, action_size=2, num_envs=3, episode_length=50, action_repeat=1
)
CFG = TDMPC2Config.tiny()


@pytest.fixture(scope="module")
def agent():
    return make_tdmpc2(CFG, SPEC)


@pytest.fixture(scope="module")
def jitted(agent):
    return {
        "act": jax.jit(agent.act, static_argnames="eval"),
        "update": jax.jit(agent.update),
        "state": agent.init(jax.random.key(0)),
    }


def _batch(key, h=3, b=16):
    k = jax.random.split(key, 3)
    return Transition(
        obs=jax.random.normal(k[0], (h, b, 4)),
        action=jnp.tanh(jax.random.normal(k[1], (h, b, 2))),
        reward=jnp.ones((h, b)),
        next_obs=jax.random.normal(k[2], (h, b, 4)),
        terminated=jnp.zeros((h, b), bool),
        done=jnp.zeros((h, b), bool),
    )


def test_act_shapes_bounds_and_carry(agent, jitted):
    state = jitted["state"]
    carry = agent.initial_carry(state, 3)
    obs = jax.random.normal(jax.random.key(1), (3, 4))
    carry2, action, info = jitted["act"](state, carry, obs, jnp.ones(3, bool), jax.random.key(2))
    assert action.shape == (3, 2) and np.all(np.abs(action) <= 1)
    assert carry2.mean.shape == (3, CFG.planner.horizon, 2)
    assert jax.tree.structure(carry2) == jax.tree.structure(carry)
    # eval: same key same action; training adds noise on top of the plan
    _, a1, _ = jitted["act"](state, carry, obs, jnp.ones(3, bool), jax.random.key(3), eval=True)
    _, a2, _ = jitted["act"](state, carry, obs, jnp.ones(3, bool), jax.random.key(3), eval=True)
    np.testing.assert_array_equal(a1, a2)


def test_no_recompile_on_second_call(agent, jitted, count_compiles):
    act, update = jax.jit(agent.act, static_argnames="eval"), jax.jit(agent.update)
    state = jitted["state"]
    carry = agent.initial_carry(state, 3)

    def step(i, state, carry):
        obs = jax.random.normal(jax.random.key(i), (3, 4))
        carry, _, _ = act(state, carry, obs, jnp.zeros(3, bool), jax.random.key(i))
        state = update(state, _batch(jax.random.key(i)), jax.random.key(i)).state
        return jax.block_until_ready((state, carry))

    state, carry = step(0, state, carry)
    with count_compiles() as events:
        for i in range(1, 3):
            state, carry = step(i, state, carry)
    assert events == []


def test_update_moves_params_and_target_slowly(jitted):
    state = jitted["state"]
    new, metrics, _ = jitted["update"](state, _batch(jax.random.key(5)), jax.random.key(6))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(new.updates) == int(state.updates) + 1
    delta = lambda a, b: float(
        sum(
            jnp.abs(x - y).sum()
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )
    )  # noqa: E731
    moved_q = delta(new.params["q"], state.params["q"])
    moved_target = delta(new.target_q, state.target_q)
    assert moved_q > 0 and delta(new.params["pi"], state.params["pi"]) > 0
    assert 0 < moved_target < moved_q  # EMA with tau < 1


def test_policy_only_mode(jitted):
    agent = make_tdmpc2(dataclasses.replace(CFG, mpc=False), SPEC)
    state = jitted["state"]
    carry = agent.initial_carry(state, 3)
    _, action, _ = agent.act(
        state, carry, jnp.zeros((3, 4)), jnp.ones(3, bool), jax.random.key(0), eval=True
    )
    assert action.shape == (3, 2)


def test_discount_follows_episode_length():
    assert episode_discount(CFG, 1000) == pytest.approx(0.995)
    assert episode_discount(CFG, 500) == pytest.approx(0.99)
    assert episode_discount(CFG, 10) == pytest.approx(0.95)


def test_an_explicit_discount_wins_and_the_models_is_refused():
    assert episode_discount(dataclasses.replace(CFG, discount=0.9), 1000) == pytest.approx(0.9)
    # the agent sets the model's discount: setting it there would be silently overridden
    with pytest.raises(ValueError, match=r"model\.discount .* set TDMPC2Config\.discount"):
        dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, discount=0.9))
    with pytest.raises(ValueError, match="discount"):
        dataclasses.replace(CFG, discount=1.5)


def test_seen_failures_discount_over_the_whole_episode():
    assert episode_discount(CFG, 500, failures=True) == pytest.approx(0.998)
    assert episode_discount(CFG, 100, failures=True) == pytest.approx(0.99)
    assert episode_discount(CFG, 5000, failures=True) == pytest.approx(0.998)  # the max
    off = dataclasses.replace(CFG, alive_discount_max=None)
    assert episode_discount(off, 500, failures=True) == pytest.approx(0.99)
    fixed = dataclasses.replace(CFG, discount=0.9)
    assert episode_discount(fixed, 500, failures=True) == pytest.approx(0.9)


def _failing(batch, where=(1, 5)):
    """`batch` with one failure (a terminated, done step) at `where`."""
    terminated = batch.terminated.at[where].set(True)
    return batch.replace(terminated=terminated, done=batch.done | terminated)


def _varying(batch):
    """`batch` whose reward differs between steps (a progress term beside the bonus)."""
    return batch.replace(reward=batch.reward + 0.1 * jnp.arange(batch.reward.shape[1])[None])


def test_the_discount_switches_for_good_once_the_data_show_failures_and_varying_rewards(jitted):
    """The rule is measured from the data: no env name or spec field decides it. Episodes of 50
    agent steps: the heuristic (50/5 - 1)/(50/5) = 0.9, raised to discount_min 0.95; the
    whole-episode discount 1 - 1/50 = 0.98."""
    update, state = jitted["update"], jitted["state"]
    assert not bool(state.failures_seen)
    discount = lambda out: float(out.metrics["discount"])  # noqa: E731
    out = update(state, _varying(_batch(jax.random.key(5))), jax.random.key(6))
    assert discount(out) == pytest.approx(0.95)  # the reward varies, but nothing failed
    out = update(out.state, _failing(_varying(_batch(jax.random.key(7)))), jax.random.key(8))
    assert bool(out.state.failures_seen) and discount(out) == pytest.approx(0.98)
    # and it stays: a later batch with neither keeps the whole-episode discount
    out = update(out.state, _batch(jax.random.key(9)), jax.random.key(10))
    assert discount(out) == pytest.approx(0.98)
    # the two kinds of evidence may come from different batches
    out = update(state, _failing(_batch(jax.random.key(7))), jax.random.key(8))
    assert discount(out) == pytest.approx(0.95)
    out = update(out.state, _varying(_batch(jax.random.key(9))), jax.random.key(10))
    assert discount(out) == pytest.approx(0.98)


def test_a_constant_reward_keeps_the_heuristic_despite_failures(agent, jitted):
    """The pendulums' case: every step pays the same bonus, so every discount already ranks
    policies by survival. The update is then bit for bit the heuristic's (the official rule)."""
    batch, key = _failing(_batch(jax.random.key(11))), jax.random.key(12)
    # the failing step itself pays less (it ended within the action repeat): not counted
    batch = batch.replace(reward=batch.reward.at[1, 5].set(0.5))
    ours = jitted["update"](jitted["state"], batch, key)
    assert bool(ours.state.failures_seen) and float(ours.metrics["discount"]) == pytest.approx(0.95)
    official = make_tdmpc2(dataclasses.replace(CFG, alive_discount_max=None), SPEC)
    theirs = jax.jit(official.update)(jitted["state"], batch, key)
    jax.tree.map(np.testing.assert_array_equal, ours.state.params, theirs.state.params)
    jax.tree.map(np.testing.assert_array_equal, ours.metrics, theirs.metrics)


def test_the_discount_reaches_the_td_target_and_the_plan(agent, jitted):
    """The same params with the flag up and down: the TD target (reward 1 + discount * Q) and the
    planner's value (discounted) both change, so both read the measured discount. A few updates
    first, so that Q is no longer ~0."""
    update, act, state = jitted["update"], jitted["act"], jitted["state"]
    for i in range(5):
        state = update(state, _batch(jax.random.key(20 + i)), jax.random.key(30 + i)).state
    batch, key = _batch(jax.random.key(11)), jax.random.key(12)
    up = state.replace(
        failures_seen=jnp.ones((), bool), reward_low=jnp.zeros(()), reward_high=jnp.ones(())
    )
    td_down = float(update(state, batch, key).metrics["td_target"])
    td_up = float(update(up, batch, key).metrics["td_target"])
    assert td_down != td_up
    carry, obs = agent.initial_carry(state, 3), jax.random.normal(jax.random.key(13), (3, 4))
    args = (carry, obs, jnp.ones(3, bool), jax.random.key(14))
    v_down = float(act(state, *args, eval=True)[2]["plan/value"])
    v_up = float(act(up, *args, eval=True)[2]["plan/value"])
    assert v_down != v_up


def test_an_env_under_another_name_trains_with_the_same_settings(jitted):
    """A user's env (the README's adapter) under any name: the same update, bit for bit."""
    renamed = make_tdmpc2(CFG, dataclasses.replace(SPEC, name="my_hopper_v2"))
    batch, key = _failing(_varying(_batch(jax.random.key(15)))), jax.random.key(16)
    ours = jitted["update"](jitted["state"], batch, key)
    theirs = jax.jit(renamed.update)(renamed.init(jax.random.key(0)), batch, key)
    jax.tree.map(np.testing.assert_array_equal, ours.state, theirs.state)
    jax.tree.map(np.testing.assert_array_equal, ours.metrics, theirs.metrics)


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_elites", 10_000),
        ("horizon", 0),
        ("iterations", 0),
        ("num_samples", -1),
        ("temperature", 0.0),
        ("num_pi_trajs", -1),
    ],
)
def test_bad_planner_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"MPPIConfig\.{field}"):
        MPPIConfig(**({"horizon": 3} | {field: value}))


def test_presets_plan_with_mppi_configs():
    # The official MPPI settings are MPPIConfig's own defaults, not a copy of them.
    assert TDMPC2Config().planner == MPPIConfig(horizon=3)
    assert TDMPC2Config().mpc and TDMPC2Config.cpu().mpc
    assert TDMPC2Config.cpu().planner == MPPIConfig(
        horizon=3, num_samples=64, num_elites=8, num_pi_trajs=8, iterations=3
    )
    assert CFG.planner == MPPIConfig(
        horizon=3, num_samples=16, num_elites=4, num_pi_trajs=4, iterations=2
    )
    assert make_tdmpc2(CFG, SPEC).data.seq_len == CFG.planner.horizon == 3


def test_the_agent_passes_its_planner_config_whole(monkeypatch, jitted):
    import agents.tdmpc2 as tdmpc2

    seen = []
    real = tdmpc2.planning.mppi
    monkeypatch.setattr(
        tdmpc2.planning, "mppi", lambda *a, **kw: seen.append((a[3], set(kw))) or real(*a, **kw)
    )
    agent = make_tdmpc2(CFG, SPEC)
    state = jitted["state"]
    jax.eval_shape(
        lambda: agent.act(state, agent.initial_carry(state, 3), jnp.zeros((3, 4)),
                          jnp.ones(3, bool), jax.random.key(0), eval=False)
    )  # fmt: skip
    cfg, keywords = seen[0]
    assert cfg is CFG.planner
    assert keywords == {"action_size", "value_fn", "prior_fn", "prev", "discount"}


def test_bad_agent_config_names_the_field():
    with pytest.raises(ValueError, match="batch_size"):
        TDMPC2Config(batch_size=0)
    with pytest.raises(ValueError, match="tau"):
        TDMPC2Config(tau=2.0)


def test_terminal_steps_are_sampled_at_every_position_of_a_sequence():
    """Hopper's value estimates ran to the never-falling value (td_target 300 while episodes
    ended after ~120 steps): with sequences confined to one episode, a terminal step was only
    ever the last of its sequence, so the Q-function of the encoder's latent (position 0) never
    saw one. TD-MPC2's sequences now run past episode ends, the losses masking what follows."""
    from agents.replay import add, init_replay, sample_sequences

    data = make_tdmpc2(CFG, SPEC).data
    n, horizon = 2, data.seq_len
    assert data.cross_episodes and horizon == CFG.planner.horizon

    def step(t):
        ended = jnp.full((n,), t % 5 == 4)  # episodes of 5 steps, each ending by failure
        z = jnp.zeros((n, 1))
        return Transition(obs=z + t, action=z, reward=z[:, 0], next_obs=z + t + 1,
                          terminated=ended, done=ended)  # fmt: skip

    state = init_replay(step(0), 40 * n)
    for t in range(40):
        state = add(state, step(t))
    batch = sample_sequences(state, jax.random.key(0), 256, horizon, data.cross_episodes)
    terminal_at = np.asarray(batch.terminated).any(axis=1)  # [H]: positions holding one
    assert terminal_at.all(), terminal_at
