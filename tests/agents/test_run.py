"""What a user sees of a run: the compile cache it shares with `wm`, the progress bar, the summary,
metrics files rewritten at every evaluation, TensorBoard events, and metrics absent (not 0) when
nothing happened."""

import csv
import math

import jax
import numpy as np
import pytest

import agents.run
from agents.compile_cache import enable_compile_cache
from agents.config import TrainConfig
from agents.metrics import MetricsLog, drop_absent, plotted_rows, reduce_seeds


@pytest.fixture
def no_cache_dir():
    """JAX with no compilation cache directory set (the test session's restored after)."""
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_the_compile_cache_is_wm_jax_cache_unless_one_is_set(no_cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WM_JAX_CACHE", "")
    assert enable_compile_cache() is None and not jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("WM_JAX_CACHE", str(tmp_path / "a"))
    assert enable_compile_cache() == str(tmp_path / "a")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
    monkeypatch.setenv("WM_JAX_CACHE", str(tmp_path / "b"))  # one set already is kept
    assert enable_compile_cache() == str(tmp_path / "a")


def test_run_training_uses_the_clis_compile_cache(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(agents.run, "enable_compile_cache", lambda: calls.append(1))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(FileExistsError):  # before anything is compiled
        agents.run.run_training(TrainConfig(), tmp_path / "run", progress=False)
    assert calls == [1]


NAN = float("nan")


def test_what_did_not_happen_in_a_chunk_is_absent_not_zero():
    """Issue 16.5: `train/return` was logged as 0.0 for chunks where no episode ended."""
    quiet = {"train/return": 0.0, "train/episodes": 0, "updates": 0, "nonfinite_updates": 0}
    assert drop_absent({**quiet, "loss/model": NAN}) == {
        "train/episodes": 0,
        "updates": 0,
        "nonfinite_updates": 0,
    }
    ran = drop_absent({**quiet, "train/episodes": 2, "train/return": 7.0, "updates": 4})
    assert ran["train/return"] == 7.0
    bad = drop_absent({**quiet, "updates": 4, "nonfinite_updates": 4, "loss/model": NAN})
    assert math.isnan(bad["loss/model"])  # updates ran and were non-finite: shown, not hidden


def test_a_seed_without_an_episode_is_left_out_of_the_mean():
    m = {
        "train/return": np.array([0.0, 6.0, 0.0]),
        "train/episodes": np.array([0, 2, 1]),
        "updates": np.array([0, 4, 4]),
        "nonfinite_updates": np.zeros(3, int),
        "loss/model": np.array([NAN, 1.0, 3.0]),
    }
    row = reduce_seeds(drop_absent(m), 3)
    assert row["train/return"] == 3.0 and row["train/return_seeds"] == [None, 6.0, 0.0]
    assert row["train/return_seeds_min"] == 0.0 and row["loss/model"] == 2.0
    assert row["train/episodes"] == 3 and row["updates"] == 8
    zeros, nans = np.zeros(3, int), np.full(3, NAN)
    none = drop_absent({**m, "train/episodes": zeros, "updates": zeros, "loss/model": nans})
    row = reduce_seeds(none, 3)
    assert "train/return" not in row and "train/return_seeds" not in row
    assert "loss/model" not in row


def test_absent_metrics_are_empty_cells_and_not_plotted(tmp_path):
    log = MetricsLog(tmp_path)
    log.write(80, 1.0, {"train/episodes": 0})
    log.write(160, 2.0, {"train/episodes": 1, "train/return": 0.0, "eval/return": NAN})
    log.write(240, 3.0, {"train/episodes": 1, "train/return": 5.0, "eval/return": 9.0})
    log.export(title="t")
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["train/return"] for r in rows] == ["", "0.0", "5.0"]
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert [r["env_steps"] for r in plotted_rows(log.rows(), "train/return")] == [160, 240]
    assert [r["env_steps"] for r in plotted_rows(log.rows(), "eval/return")] == [240]
