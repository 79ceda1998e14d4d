"""Several seeds in one vmapped program (`TrainConfig.num_seeds`, `wm train --num-seeds N`)."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from agents.config import TrainConfig
from agents.run import build, run_training
from agents.tdmpc2 import TDMPC2Config
from agents.train import seed_keys

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


def test_two_seeds_train_with_the_episodic_schedule():
    """The fit's epoch and batch loops end per seed: each seed as its one-seed run fits."""
    episodic = dataclasses.replace(CFG, schedule="episodic", fit_epochs=2, fit_holdout=0.2)
    two = dataclasses.replace(episodic, num_seeds=2)
    _, _, trainer = build(two)
    state, _ = trainer.seed_chunk(trainer.init(seed_keys(two)))
    state, m = trainer.train_chunk(state)
    assert m["fit/epochs"].shape == (2,) and np.all(np.asarray(m["nonfinite_updates"]) == 0)
    assert np.all(np.isfinite(np.asarray(m["loss/model"])))
    _, _, one = build(dataclasses.replace(episodic, seed=1))
    alone, _ = one.seed_chunk(one.init(jax.random.key(1)))
    alone, m1 = one.train_chunk(alone)
    for name in ("fit/epochs", "updates", "fit/train_starts", "fit/val_starts"):
        assert int(m[name][1]) == int(m1[name]), name
    for name in ("loss/model", "fit/val_loss"):
        np.testing.assert_allclose(m[name][1], m1[name], rtol=1e-3, err_msg=name)
    np.testing.assert_allclose(  # up to float rounding (vmapped matmuls differ in the last bits)
        np.asarray(jax.tree.leaves(state.agent.params)[0][1]),
        np.asarray(jax.tree.leaves(alone.agent.params)[0]),
        rtol=1e-3,
        atol=1e-5,
    )
