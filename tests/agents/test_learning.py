"""The default agent learns: TD-MPC2 at `wm train` defaults on inverted_pendulum, shortened.

About 3 minutes on 2 CPU cores. Untrained agents balance for about 20 of the 1000 steps; earlier
runs of the defaults reached 433-1000 by 16k-20k env steps.
"""

import dataclasses

import jax

from agents.run import build
from agents.train import TrainConfig

STEPS = 20_000


def test_tdmpc2_learns_inverted_pendulum():
    cfg = dataclasses.replace(TrainConfig(), steps=STEPS)
    _, _, trainer = build(cfg)
    state = trainer.init(jax.random.key(cfg.seed))
    before = float(trainer.evaluate(state.agent, jax.random.key(1))["eval/return"])
    state, _ = trainer.seed_chunk(state)
    while int(state.agent_steps) * cfg.env_steps_per_agent_step < STEPS:
        state, metrics = trainer.train_chunk(state)
    after = float(trainer.evaluate(state.agent, jax.random.key(2))["eval/return"])
    assert before < 100
    assert after >= 300, f"eval return {after:.0f} after {STEPS} env steps (untrained {before:.0f})"
