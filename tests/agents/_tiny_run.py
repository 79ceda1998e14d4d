"""The tiny TD-MPC2 run that the run-level tests share (`test_train`, `test_run`, `test_seeds`,
and `test_agent_contract`'s training chunk).

One config, so the session's persistent compilation cache compiles its programs once for all of
them: the schedule fields (`steps`, `eval_every`, `checkpoint_every`) and the seed are inputs or
loop bounds outside the compiled chunks, so tests may change those and still share them. Prefill
to env step 80, chunks of 80 env steps, evaluations at 160, 320 and 480.
"""

from agents.config import TrainConfig
from agents.tdmpc2 import TDMPC2Config

TINY_RUN = TrainConfig(
    env="inverted_pendulum",
    steps=480,
    num_envs=2,
    action_repeat=2,
    episode_length=60,
    seed_steps=80,
    chunk_steps=20,
    replay_capacity=400,
    eval_every=160,
    eval_episodes=2,
    checkpoint_every=160,
    agent=TDMPC2Config.tiny(),
)
