"""Several seeds in one vmapped program (`TrainConfig.num_seeds`, `wm train --num-seeds N`)."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from _tiny_run import TINY_RUN

from agents.run import build, run_training
from agents.train import seed_keys

# The shared tiny run, shorter: the one-seed programs are the same (the seed is an input, not part
# of the program), so the persistent compilation cache serves them.
CFG = dataclasses.replace(TINY_RUN, steps=240, eval_every=80)
# Chunks of 5 agent steps (20 updates per seed): the chunk length is part of the program, so the
# four-seed run, the seed-k check and the benchmark share one four-seed and one one-seed program.
SHORT = dataclasses.replace(CFG, chunk_steps=5)
_quiet = lambda *_: None  # noqa: E731


def _evals(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "eval/return" in r]


@pytest.fixture(scope="module")
def four_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "run"
    run_training(dataclasses.replace(SHORT, num_seeds=4), out, progress=False, log=_quiet)
    return out


def test_four_seeds_give_four_curves_and_their_mean(four_seeds):
    evals = _evals(four_seeds)
    assert [r["env_steps"] for r in evals] == [160, 240]  # per seed, as a one-seed run counts
    for r in evals:
        seeds = r["eval/return_seeds"]
        assert len(seeds) == 4 and r["eval/return"] == pytest.approx(np.mean(seeds))
        assert r["eval/return_seeds_min"] == min(seeds) == pytest.approx(min(seeds))
        assert r["eval/return_seeds_max"] == max(seeds)
        assert r["eval/return_seeds_std"] == pytest.approx(np.std(seeds))
    curves = {tuple(r["eval/return_seeds"][k] for r in evals) for k in range(4)}
    assert len(curves) == 4, curves  # four different seeds, not one copied
    assert (four_seeds / "curve.png").stat().st_size > 0


def _leaves(state):
    import jax

    return [
        np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )
        for x in jax.tree.leaves(state)
    ]


def _close(a, b) -> bool:
    """Float leaves equal to rounding (Adam's normalised steps amplify it on tiny weights),
    the rest (counters, keys, flags) exactly; prints the first leaf that is not."""
    import jax

    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(b)[0]]
    for path, x, y in zip(paths, _leaves(a), _leaves(b), strict=True):
        ok = np.allclose(x, y, rtol=1e-2, atol=1e-3) if x.dtype.kind == "f" else (x == y).all()
        if not ok:
            print("differs:", path, np.max(np.abs(x.astype(float) - y.astype(float))))
            return False
    return True


def test_seed_k_of_the_batch_is_the_one_seed_run_with_seed_k():
    """Equal up to float rounding after a chunk of training: the vmapped matmuls round
    differently, and RL amplifies that (a plan's argmax flips, a pendulum falls a step sooner;
    measured: with the tests' XLA flags an env's episode ended one step apart within the first
    chunk), so the check is on what was learnt from it, the agent's whole state (parameters,
    optimiser moments, target networks, counters), after one chunk of collection and updates."""
    import jax

    from agents.run import build
    from agents.train import seed_keys

    short = SHORT  # 5 agent steps, 20 updates per seed
    batched = dataclasses.replace(short, num_seeds=4)
    _, _, many = build(batched)
    state, _ = many.seed_chunk(many.init(seed_keys(batched)))
    state, _ = many.train_chunk(state)
    for k in (0, 3):
        one = dataclasses.replace(short, seed=k)
        _, _, trainer = build(one)
        alone, _ = trainer.seed_chunk(trainer.init(seed_keys(one)))
        alone, _ = trainer.train_chunk(alone)
        mine = jax.tree.map(lambda x, k=k: x[k], state.agent)
        assert _close(mine, alone.agent)
        other = jax.tree.map(lambda x, k=k: x[(k + 1) % 4], state.agent)
        assert not _close(other, alone.agent)  # the check tells seeds apart
        assert int(state.agent_steps[k]) == int(alone.agent_steps)


def test_the_seeds_benchmark_pairs_both_programs_and_reports_per_seed_rates():
    """benchmarks/seeds.py on the previous test's programs (served by the compile cache)."""
    from _bench import load_benchmark

    seeds = load_benchmark("seeds")
    base = SHORT
    r = seeds.measure(4, rounds=2, agent="tdmpc2", base=base)
    one, four = r["rows"]["1"], r["rows"]["4"]
    chunk = base.env_steps_per_chunk
    assert one["env_steps_per_s_per_seed"] == pytest.approx(chunk / one["chunk_s"], rel=0.01)
    assert four["env_steps_per_s_all_seeds"] == pytest.approx(
        4 * four["env_steps_per_s_per_seed"], rel=0.01
    )
    assert r["cost_ratio"] > 0 and r["num_seeds"] == 4
    text = seeds.markdown(r)
    assert "| 4 |" in text and f"{r['cost_ratio']}x" in text


@pytest.mark.slow
def test_two_seeds_train_with_the_episodic_schedule():
    """The fit's epoch and batch loops end per seed: each seed as its one-seed run fits.

    With TD-MPC2's tiny agent; slow (about 200 s of a 2-core CI run, the two-seed episodic
    program's compile). The default suite checks the same loops exactly, on a toy agent:
    `test_schedules.py::test_two_seeds_with_the_episodic_schedule_are_the_one_seed_runs`."""
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
