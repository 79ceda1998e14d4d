"""The loop's phases and schedules, on a counting env and a counting agent (fast to compile).

The env's observation is `(agent step, env)`, so a batch tells where in replay it came from; the
agent's update counts, per replay slot, how often a sequence starting there was trained on.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from agents import replay
from agents.config import TrainConfig
from agents.train import make_train, seed_keys
from agents.types import Agent, DataSpec, EnvSpec, UpdateOutput

N, ROWS, LENGTHS = 2, 64, (4, 6)  # envs, replay rows per env, episode length of each env
SEQ, BATCH = 3, 4


@struct.dataclass
class CountEnvState:
    obs: jax.Array  # [N, 2] float32: (agent step, env) of the observation
    reward: jax.Array
    done: jax.Array
    info: dict
    step: jax.Array  # [N] int32: steps into the episode


class CountEnv:
    """`N` envs (Brax's interface, as `agents.envs.step_transition` reads it); env `e`'s episodes
    last `LENGTHS[e]` steps, and the observation counts every step since the reset."""

    lengths = jnp.asarray(LENGTHS)

    def reset(self, key):
        del key
        obs = jnp.stack([jnp.zeros(N), jnp.arange(N, dtype=jnp.float32)], -1)
        zeros = jnp.zeros(N)
        info = {"final_obs": obs, "terminated": zeros}
        return CountEnvState(obs, zeros, zeros, info, jnp.zeros(N, jnp.int32))

    def step(self, state, action):
        step = state.step + 1
        done = step >= self.lengths
        obs = state.obs.at[:, 0].add(1.0)
        info = {"final_obs": obs, "terminated": jnp.zeros(N)}
        reward = 1.0 + action[:, 0]
        return CountEnvState(obs, reward, done.astype(jnp.float32), info, jnp.where(done, 0, step))


SPEC = EnvSpec(
    name="count", obs_size=2, action_size=1, num_envs=N, episode_length=10, action_repeat=1
)


@struct.dataclass
class CountState:
    seen: jax.Array  # [ROWS, N] int32: sequences trained on that started at each slot
    updates: jax.Array  # int32
    noise: jax.Array  # float32: the sum of uniform draws of the update keys (key use)


def count_agent(sign: float = 1.0, cross: bool = False, updates_per_step: int = 2) -> Agent:
    """An agent that counts what it trains on; its `loss/model` is `sign` x updates so far."""

    def update(state, batch, key):
        t, env = (batch.obs[0, :, i].astype(jnp.int32) for i in range(2))
        seen = state.seen.at[t % ROWS, env].add(1)
        noise = state.noise + jax.random.uniform(key)
        metrics = {"loss/model": sign * state.updates.astype(jnp.float32), "noise": noise}
        return UpdateOutput(CountState(seen, state.updates + 1, noise), metrics)

    def act(state, carry, obs, is_first, key, *, eval=False):
        return carry, jax.random.uniform(key, (obs.shape[0], 1), minval=-1, maxval=1), {}

    init = lambda key: CountState(  # noqa: E731
        jnp.zeros((ROWS, N), jnp.int32), jnp.int32(0), jax.random.uniform(key)
    )
    return Agent(
        data=DataSpec(SEQ, BATCH, cross, updates_per_step),
        init=init,
        initial_carry=lambda state, n: jnp.zeros(n),
        act=act,
        update=update,
    )


INTERLEAVED = TrainConfig(
    num_envs=N,
    action_repeat=1,
    steps=48,  # 4 seed steps and 2 chunks of 10 agent steps
    seed_steps=8,
    chunk_steps=10,
    replay_capacity=ROWS * N,
)
CFG = dataclasses.replace(INTERLEAVED, schedule="episodic", fit_epochs=3)


def _trainer(cfg=CFG, **agent_kw):
    return make_train(cfg, CountEnv(), SPEC, count_agent(**agent_kw))


def _leaves(state):
    key = lambda x: jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)  # noqa: E731
    return [np.asarray(jax.random.key_data(x) if key(x) else x) for x in jax.tree.leaves(state)]


def _assert_equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cross", [True, False], ids=["cross-episodes", "one-episode"])
def test_an_episodic_fit_trains_on_every_valid_start_once_per_epoch(cross):
    trainer = _trainer(cross=cross)
    state, _ = trainer.seed_chunk(trainer.init(jax.random.key(0)))
    state, m = trainer.train_chunk(state)  # 10 steps collected, then 3 epochs over 14 rows
    valid = np.asarray(replay.valid_starts(state.replay, SEQ, cross))
    seen, count = np.asarray(state.agent.seen), int(valid.sum())
    assert int(state.agent_steps) == 14 and int(m["fit/epochs"]) == 3
    assert int(m["fit/train_starts"]) == count
    batches = -(-count // BATCH)  # per epoch: the last one topped up with the epoch's first starts
    assert int(m["updates"]) == int(state.agent.updates) == 3 * batches
    assert seen[~valid].sum() == 0 and seen.sum() == 3 * batches * BATCH
    if count % BATCH == 0:  # (14 - 3 + 1) x 2 starts across episodes: 6 batches exactly
        assert cross
        np.testing.assert_array_equal(seen, 3 * valid)  # every start exactly once an epoch
    else:  # starts in one episode (of 4 and 6 steps): 6 + 8, the 4th batch topped up by 2
        assert not cross and count == 14
        assert (seen[valid] >= 3).all() and (seen[valid] <= 3 + 3).all()
        assert (seen[valid] - 3).sum() == 3 * (batches * BATCH - count)


def test_the_fit_stops_early_when_the_held_out_loss_rises():
    holdout = dataclasses.replace(CFG, fit_epochs=10, fit_holdout=0.3, fit_patience=2)
    trainer = _trainer(holdout, sign=1.0)  # the loss counts updates: it rises with each epoch
    state, _ = trainer.seed_chunk(trainer.init(jax.random.key(0)))
    state, m = trainer.train_chunk(state)
    count = int(replay.valid_starts(state.replay, SEQ).sum())
    held_out = int(np.floor(count * 0.3))
    assert int(m["fit/val_starts"]) == held_out and int(m["fit/train_starts"]) == count - held_out
    assert int(m["fit/epochs"]) == 2  # no better than before the fit for 2 epochs: stop
    assert float(m["fit/val_loss"]) == 0.0  # the best: before the first update
    seen = np.asarray(state.agent.seen)
    assert (seen > 0).sum() == count - held_out  # the held-out starts were never trained on

    falling = _trainer(holdout, sign=-1.0)  # always improving: every epoch runs
    state, _ = falling.seed_chunk(falling.init(jax.random.key(0)))
    state, m = falling.train_chunk(state)
    assert int(m["fit/epochs"]) == 10
    assert float(m["fit/val_loss"]) == -float(state.agent.updates)


def test_a_fit_metric_the_agent_does_not_return_is_refused_before_compiling():
    bad = dataclasses.replace(CFG, fit_holdout=0.2, fit_metric="loss/nope")
    with pytest.raises(ValueError, match=r"fit_metric 'loss/nope' .* loss/model, noise"):
        _trainer(bad)


def test_a_fit_on_an_empty_replay_does_nothing():
    trainer = _trainer()
    state = trainer.init(jax.random.key(0))
    state, m = trainer.fit(state, 3)
    assert int(m["fit/epochs"]) == 0 and int(m["updates"]) == 0
    assert np.isnan(float(m["loss/model"])) and int(state.agent.updates) == 0


def test_collect_learn_and_fit_compile_once(count_compiles):
    trainer = _trainer()
    state = trainer.init(jax.random.key(0))
    state, m = trainer.collect(state, 6, random_actions=True)
    state, _ = trainer.collect(state, 6)
    state, _ = trainer.learn(state, 5)
    state, first = trainer.fit(state, 2)
    with count_compiles() as events:
        state, m = trainer.collect(state, 6)
        state, m = trainer.collect(state, 6, random_actions=True)
        state, learned = trainer.learn(state, 5)
        state, fitted = jax.block_until_ready(trainer.fit(state, 2))
    assert events == []
    assert int(state.agent_steps) == 24 and int(m["updates"]) == 0
    assert int(learned["updates"]) == 5 and int(fitted["fit/epochs"]) == 2
    assert int(state.agent.updates) == 10 + int(first["updates"]) + int(fitted["updates"])


def test_learn_samples_with_replacement_and_counts():
    trainer = _trainer()
    state, _ = trainer.collect(trainer.init(jax.random.key(0)), 12, random_actions=True)
    state, m = trainer.learn(state, 7)
    assert int(m["updates"]) == 7 and int(m["nonfinite_updates"]) == 0
    seen, valid = np.asarray(state.agent.seen), np.asarray(replay.valid_starts(state.replay, SEQ))
    assert seen.sum() == 7 * BATCH and seen[~valid].sum() == 0
    with pytest.raises(ValueError, match="num_updates"):
        trainer.learn(state, 0)


@pytest.mark.parametrize("schedule", ["interleaved", "episodic"])
def test_a_whole_run_is_one_function_of_the_key_and_vmaps_over_seeds(schedule):
    cfg = dataclasses.replace(CFG, schedule=schedule, fit_holdout=0.2)
    trainer = _trainer(cfg)
    keys = jax.random.split(jax.random.key(5), 2)
    state, metrics = trainer.run(keys[0])
    assert cfg.num_chunks == 2 and metrics["updates"].shape == (2,)
    driven, _ = trainer.seed_chunk(trainer.init(keys[0]))  # as `agents.run` drives the pieces
    for _ in range(cfg.num_chunks):
        driven, last = trainer.train_chunk(driven)
    _assert_equal(state, driven)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[-1], metrics), last)
    both, _ = jax.vmap(trainer.run)(keys)
    _assert_equal(jax.tree.map(lambda x: x[0], both), state)
    other, _ = trainer.run(keys[1])
    _assert_equal(jax.tree.map(lambda x: x[1], both), other)


def test_two_seeds_with_the_episodic_schedule_are_the_one_seed_runs():
    cfg = dataclasses.replace(CFG, num_seeds=2, seed=3, fit_holdout=0.2, fit_patience=1)
    many = _trainer(cfg)
    state, _ = many.seed_chunk(many.init(seed_keys(cfg)))
    state, m = many.train_chunk(state)
    state, m = many.train_chunk(state)
    assert m["fit/epochs"].shape == (2,)
    one = _trainer(dataclasses.replace(cfg, num_seeds=1))
    for k in range(2):
        alone, _ = one.seed_chunk(one.init(jax.random.key(3 + k)))
        alone, _ = one.train_chunk(alone)
        alone, mk = one.train_chunk(alone)
        _assert_equal(jax.tree.map(lambda x, k=k: x[k], state), alone)
        assert int(m["fit/epochs"][k]) == int(mk["fit/epochs"])


# Recorded with the loop of 9c2d390, before the phases (`TrainConfig.schedule` did not exist and
# this was its only loop), on jax 0.10.2: which starts two interleaved chunks sampled, per env and
# replay row, and the run key after them. Integer counts and threefry draws, so the same on any
# machine; a change of the key splitting or of sampling changes them.
BEFORE_SEEN = [
    [9, 7, 0, 0, 6, 9, 0, 0, 7, 6, 0, 0, 5, 5, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
    [17, 14, 16, 13, 0, 0, 8, 9, 5, 3, 0, 0, 4, 5, 3, 1, 0, 0, 2, 0, 4, 0, 0, 0],
]
BEFORE_KEY = [2384082471, 1305457853]


def test_the_interleaved_chunk_is_the_loop_of_before():
    trainer = _trainer(INTERLEAVED)
    state, _ = trainer.seed_chunk(trainer.init(jax.random.key(0)))
    state, _ = trainer.train_chunk(state)
    state, m = trainer.train_chunk(state)
    assert int(m["updates"]) == 10 * 2 and int(state.agent.updates) == 40
    np.testing.assert_array_equal(np.asarray(state.agent.seen)[:24].T, BEFORE_SEEN)
    np.testing.assert_array_equal(jax.random.key_data(state.key), BEFORE_KEY)
    assert float(state.agent.noise) == pytest.approx(19.974056243896484, abs=1e-5)
