"""Several seeds in one vmapped program (`TrainConfig.num_seeds`, `wm train --num-seeds N`)."""

import dataclasses
import json

import numpy as np
import pytest

from agents.config import TrainConfig
from agents.run import run_training
from agents.tdmpc2 import TDMPC2Config

# tests/agents/test_train.py's run, shorter: the one-seed programs are the same (the seed is an
# input, not part of the program), so the persistent compilation cache serves them.
CFG = TrainConfig(
    env="inverted_pendulum",
    steps=240,
    num_envs=2,
    action_repeat=2,
    episode_length=60,
    seed_steps=80,
    chunk_steps=20,
    replay_capacity=400,
    eval_every=80,
    eval_episodes=2,
    checkpoint_every=160,
    agent=TDMPC2Config.tiny(),
)
_quiet = lambda *_: None  # noqa: E731


def _evals(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval/return" in r]


@pytest.fixture(scope="module")
def four_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "run"
    run_training(dataclasses.replace(CFG, num_seeds=4), out, progress=False, log=_quiet)
    return out


def test_four_seeds_give_four_curves_and_their_mean(four_seeds):
    evals = _evals(four_seeds)
    assert [r["env_steps"] for r in evals] == [160, 240]  # per seed, as a one-seed run counts
    for r in evals:
        seeds = r["eval/return_seeds"]
        assert len(seeds) == 4 and r["eval/return"] == pytest.approx(np.mean(seeds))
        assert r["eval/return_min"] == min(seeds) and r["eval/return_max"] == max(seeds)
        assert r["eval/return_std"] == pytest.approx(np.std(seeds))
    curves = {tuple(r["eval/return_seeds"][k] for r in evals) for k in range(4)}
    assert len(curves) == 4, curves  # four different seeds, not one copied
    assert (four_seeds / "curve.png").stat().st_size > 0


@pytest.mark.parametrize("k", [0, 3])
def test_seed_k_of_the_batch_is_the_one_seed_run_with_seed_k(four_seeds, tmp_path, k):
    out = tmp_path / "one"
    run_training(dataclasses.replace(CFG, seed=k), out, progress=False, log=_quiet)
    alone = [r["eval/return"] for r in _evals(out)]
    batched = [r["eval/return_seeds"][k] for r in _evals(four_seeds)]
    np.testing.assert_allclose(batched, alone, rtol=1e-3, atol=1e-2)
