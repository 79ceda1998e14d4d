"""The `Agent` contract, checked on every agent `wm train` knows (`agents.config.AGENT_CONFIGS`).

A new agent gets these checks by joining the `AgentConfig` union: shapes under jit, no recompile
on a second call, one `UpdateOutput` type, one training chunk in the loop, a checkpoint round trip.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny_run import TINY_RUN

from agents.checkpoint import Checkpointer
from agents.config import AGENT_CONFIGS, make_agent
from agents.run import build
from agents.rundir import config_to_dict
from agents.types import Agent, DataSpec, EnvSpec, UpdateOutput

SPEC = EnvSpec(
    name="toy", obs_size=4, action_size=2, num_envs=3, episode_length=50, action_repeat=1
)
IDS = [c.name for c in AGENT_CONFIGS]


def _batch(agent: Agent, state, key):
    """A random `[T, B]` batch as `agent.data` asks, with replay context if the agent keeps one."""
    from agents.bench import _sequence_batch

    t, b = agent.data.seq_len, agent.data.batch_size
    data = _sequence_batch(agent, state, SPEC, t, b)
    k = jax.random.split(key, 2)
    return data.replace(
        obs=jax.random.normal(k[0], data.obs.shape),
        next_obs=jax.random.normal(k[1], data.obs.shape),
    )


@pytest.fixture(scope="module", params=AGENT_CONFIGS, ids=IDS)
def built(request):
    cls = request.param
    agent = make_agent(cls.tiny(), SPEC)
    act = jax.jit(agent.act, static_argnames="eval")
    return cls, agent, act, jax.jit(agent.update), agent.init(jax.random.key(0))


def test_every_agent_has_a_label_presets_and_a_data_spec(built):
    cls, agent, *_ = built
    assert isinstance(cls.name, str) and cls.name in IDS
    for preset in (cls(), cls.cpu(), cls.tiny()):
        assert isinstance(preset, cls)
    data = agent.data
    assert isinstance(data, DataSpec)
    assert all(isinstance(v, int) and v >= 1 for v in (data.seq_len, data.batch_size))
    assert isinstance(data.cross_episodes, bool) and data.updates_per_step >= 0


def test_act_shapes_bounds_eval_and_no_recompile(built, count_compiles):
    _, agent, act, _, state = built
    carry = agent.initial_carry(state, 3)
    obs = jax.random.normal(jax.random.key(1), (3, 4))
    first = jnp.ones(3, bool)
    carry2, action, info = act(state, carry, obs, first, jax.random.key(2))
    assert action.shape == (3, 2) and np.all(np.abs(np.asarray(action)) <= 1)
    assert jax.tree.structure(carry2) == jax.tree.structure(carry) and isinstance(info, dict)
    _, a1, _ = act(state, carry, obs, first, jax.random.key(3), eval=True)
    _, a2, _ = act(state, carry, obs, first, jax.random.key(3), eval=True)
    np.testing.assert_array_equal(a1, a2)
    carry3, _, _ = act(state, carry2, obs + 1, ~first, jax.random.key(4))  # a carry from act
    with count_compiles() as events:  # the train loop's second step: new values, same types
        jax.block_until_ready(act(state, carry3, obs + 2, ~first, jax.random.key(5)))
        jax.block_until_ready(act(state, carry, obs + 3, first, jax.random.key(6), eval=True))
    assert events == []


def test_update_returns_one_type_and_does_not_recompile(built, count_compiles):
    _, agent, _, update, state = built
    out = update(state, _batch(agent, state, jax.random.key(1)), jax.random.key(2))
    assert isinstance(out, UpdateOutput)
    assert jax.tree.structure(out.state) == jax.tree.structure(state)
    assert all(np.shape(v) == () and np.isfinite(float(v)) for v in out.metrics.values())
    assert any(k.startswith("loss") for k in out.metrics)
    if agent.context is None:
        assert out.context is None
    else:  # the refreshed context of every step, [T, B, ...]
        lead = (agent.data.seq_len, agent.data.batch_size)
        assert all(x.shape[:2] == lead for x in jax.tree.leaves(out.context))
    with count_compiles() as events:
        again = update(out.state, _batch(agent, state, jax.random.key(3)), jax.random.key(4))
        jax.block_until_ready(again.state)
    assert events == []


@pytest.mark.parametrize("cls", AGENT_CONFIGS, ids=IDS)
def test_one_training_chunk_and_a_checkpoint_round_trip(cls, tmp_path):
    # On the run-level tests' shared config: with TD-MPC2's tiny agent it is TINY_RUN itself,
    # whose programs the session's compile cache compiles once for this test and test_train.
    cfg = dataclasses.replace(TINY_RUN, agent=cls.tiny())
    _, agent, trainer = build(cfg)
    state = trainer.init(jax.random.key(0))
    state, _ = trainer.seed_chunk(state)
    state, metrics = trainer.train_chunk(state)
    assert int(metrics["updates"]) == cfg.chunk_steps * agent.data.updates_per_step
    assert int(metrics["nonfinite_updates"]) == 0 and np.isfinite(float(metrics["loss/model"]))
    result = trainer.evaluate(state.agent, jax.random.key(1))
    assert np.isfinite(float(result["eval/return"]))
    with Checkpointer(tmp_path / "ckpt", config=config_to_dict(cfg)) as ckpt:
        ckpt.save(1, state, metadata={})
        restored, _ = ckpt.restore(jax.eval_shape(trainer.init, jax.random.key(0)))
    leaves = lambda s: [
        np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )
        for x in jax.tree.leaves(s)
    ]
    for a, b in zip(leaves(state), leaves(restored), strict=True):
        np.testing.assert_array_equal(a, b)
