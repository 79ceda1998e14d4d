"""The DM Control adapter (`agents.dmc`): MuJoCo Playground's MJX tasks behind the Brax `Env`
interface, selected as `dmc:<domain>-<task>`: reset, step, auto-reset, one compile, one chunk."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import dmc
from agents.config import TrainConfig
from agents.envs import make_env
from agents.run import build
from agents.tdmpc2 import TDMPC2Config

NAME = "dmc:cartpole-balance"  # the suite's cheapest MJX model to compile (cheetah: 3x)
N, REPEAT, LENGTH = 2, 2, 10  # episodes of 10 control steps = 5 agent steps


@pytest.fixture(scope="module")
def env_and_spec():
    return make_env(NAME, num_envs=N, action_repeat=REPEAT, episode_length=LENGTH)


@pytest.fixture(scope="module")
def jitted(env_and_spec):
    env, _ = env_and_spec
    return jax.jit(env.reset), jax.jit(env.step)


def test_task_names_are_playgrounds_dm_control_suite():
    from mujoco_playground import dm_control_suite

    assert sorted(dmc.DMC_TASKS.values()) == sorted(dm_control_suite.ALL_ENVS)
    assert dmc.playground_name("dmc:walker-walk") == "WalkerWalk"
    assert dmc.playground_name("dmc:CheetahRun") == "CheetahRun"
    with pytest.raises(ValueError, match="unknown DM Control task 'dmc:cheetah-fly'.*dmc:walker"):
        dmc.playground_name("dmc:cheetah-fly")
    with pytest.raises(ValueError, match="TrainConfig.env: unknown DM Control task"):
        TrainConfig(env="dmc:walker-jog")
    with pytest.raises(ValueError, match="MJX only"):
        make_env(NAME, backend="positional")
    assert dmc.playground_name("dmc:cheetah-run") == "CheetahRun"


def test_spec_matches_the_suite(env_and_spec):
    _, spec = env_and_spec
    assert (spec.obs_size, spec.action_size) == (5, 1)  # dm_control's cartpole
    assert spec.episode_length == LENGTH // REPEAT and spec.action_repeat == REPEAT


def test_reset_step_and_auto_reset_compile_once(jitted, env_and_spec, count_compiles):
    reset, step = jitted
    _, spec = env_and_spec
    state = reset(jax.random.key(0))
    assert state.obs.shape == (N, spec.obs_size) and state.obs.dtype == jnp.float32
    action = jnp.full((N, spec.action_size), 0.5)
    state = step(state, action)  # compiles here
    first = state
    dones, rewards, steps = [], [], []
    with count_compiles() as events:
        for _ in range(2 * spec.episode_length):
            state = step(state, action)
            dones.append(np.asarray(state.done))
            rewards.append(np.asarray(state.reward))
            steps.append(np.asarray(state.info["steps"]))
    assert events == []
    dones = np.stack(dones)
    # The first step was agent step 1 of 5: done exactly on agent steps 5 and 10, by truncation
    # (no DM Control task ends an episode by failure).
    assert np.all(dones[[3, 8]] == 1) and dones.sum() == 2 * N
    assert np.asarray(state.info["terminated"]).sum() == 0
    assert np.all(np.stack(steps)[4] == REPEAT)  # counted again from 0 after the auto-reset
    # Rewards are in [0, 1] per control step, summed over the action repeat.
    rewards = np.stack(rewards)
    assert np.all(rewards >= 0) and np.all(rewards <= REPEAT) and rewards.max() > 0
    # Fresh episodes start from different random states per env.
    assert not np.allclose(np.asarray(state.obs[0]), np.asarray(state.obs[1]))
    assert not np.allclose(np.asarray(state.obs), np.asarray(first.obs))


def test_trains_one_chunk():
    cfg = TrainConfig(
        env=NAME,
        num_envs=2,
        action_repeat=2,
        episode_length=20,
        seed_steps=40,
        chunk_steps=10,
        replay_capacity=200,
        eval_episodes=1,
        agent=dataclasses.replace(TDMPC2Config.tiny(), updates_per_step=1),
    )
    spec, _, trainer = build(cfg)
    state = trainer.init(jax.random.key(0))
    state, _ = trainer.seed_chunk(state)
    state, metrics = trainer.train_chunk(state)
    assert np.isfinite(float(metrics["loss/model"]))
    assert int(metrics["updates"]) == cfg.chunk_steps * cfg.agent.updates_per_step
    # Episodes of 10 agent steps, after a seed phase of 10: each env ends one in the chunk.
    assert int(metrics["train/episodes"]) == cfg.num_envs
    assert 0 < float(metrics["train/return"]) <= cfg.episode_length
    assert state.carry.mean.shape == (cfg.num_envs, cfg.agent.planner.horizon, spec.action_size)
