"""`wm train --env NAME` works for every Brax env: one seed chunk, one train chunk, one eval.

All are marked slow (1-5 minutes each: `pytest -m slow tests/agents/test_every_env_trains.py`);
the default run trains inverted_pendulum (tests/agents/test_train.py) and steps every env
(tests/agents/test_envs.py).
"""

import dataclasses

import jax
import numpy as np
import pytest

from agents.config import TrainConfig
from agents.envs import ENV_NAMES
from agents.run import build
from agents.tdmpc2 import TDMPC2Config

TINY = TrainConfig(
    num_envs=2,
    action_repeat=2,
    episode_length=20,
    seed_steps=40,
    chunk_steps=5,
    replay_capacity=200,
    eval_episodes=1,
    agent=dataclasses.replace(TDMPC2Config.tiny(), updates_per_step=1),
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_trains_one_chunk(name):
    cfg = dataclasses.replace(TINY, env=name)
    spec, _, trainer = build(cfg)
    state = trainer.init(jax.random.key(0))
    state, _ = trainer.seed_chunk(state)
    state, metrics = trainer.train_chunk(state)
    result = trainer.evaluate(state.agent, jax.random.key(1))
    assert np.isfinite(float(metrics["loss/model"]))
    assert np.isfinite(float(result["eval/return"]))
    assert 0 < float(result["eval/length"]) <= cfg.episode_length
    assert state.carry.mean.shape == (cfg.num_envs, cfg.agent.planner.horizon, spec.action_size)
