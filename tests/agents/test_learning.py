"""The default agent learns: TD-MPC2 at `wm train` defaults on inverted_pendulum, shortened.

Runs in a child process with XLA's default code generation (the suite compiles at LLVM level 0,
see tests/conftest.py, which makes long runs several times slower). About 4-8 minutes on 2 CPU
cores. Untrained agents balance for about 20 of the 1000 steps; earlier runs of the defaults
reached 433-1000 by 16k-20k env steps.
"""

import json
import subprocess
import sys

STEPS = 20_000

_CHILD = """
import dataclasses, json, sys
import jax
from agents.run import build
from agents.config import TrainConfig

steps = int(sys.argv[1])
cfg = dataclasses.replace(TrainConfig(), steps=steps)
_, _, trainer = build(cfg)
state = trainer.init(jax.random.key(cfg.seed))
before = float(trainer.evaluate(state.agent, jax.random.key(1))["eval/return"])
state, _ = trainer.seed_chunk(state)
while int(state.agent_steps) * cfg.env_steps_per_agent_step < steps:
    state, _ = trainer.train_chunk(state)
after = float(trainer.evaluate(state.agent, jax.random.key(2))["eval/return"])
print(json.dumps({"before": before, "after": after}))
"""


def test_tdmpc2_learns_inverted_pendulum(default_codegen_env):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(STEPS)],
        env=default_codegen_env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    before, after = result["before"], result["after"]
    assert before < 100
    assert after >= 300, f"eval return {after:.0f} after {STEPS} env steps (untrained {before:.0f})"
