"""`benchmarks/learning.py`: the per-seed figures it reports (pure functions, no training)."""

import pytest
from _bench import BENCHMARKS, load_benchmark

learning = load_benchmark("learning_benchmark", BENCHMARKS / "learning.py")


def _evals(returns, every=5000):
    return [
        {"env_steps": every * (i + 1), "wall_s": 10.0 * (i + 1), "eval/return": r}
        for i, r in enumerate(returns)
    ]


def test_stays_above_is_the_start_of_the_last_unbroken_stretch():
    evals = _evals([100, 960, 300, 970, 990, 1000])
    assert learning.stays_above(evals, 950) == 20000
    assert learning.first_reaching(evals, 950)["env_steps"] == 10000
    assert learning.stays_above(_evals([960, 970, 10]), 950) is None
    assert learning.stays_above(_evals([960, 970]), 950) == 5000


def test_summary_of_a_run_that_fell_back():
    s = learning.summarise(_evals([569, 383, 914, 97]), 900)
    assert s["final"] == 97 and s["best"] == 914
    assert s["last3_mean"] == pytest.approx((383 + 914 + 97) / 3)
    assert s["last_over_best"] == pytest.approx(97 / 914)
    assert s["reached"] == {"env_steps": 15000, "wall_s": 30.0} and s["stays_above"] is None
    assert learning.summarise([], 900) == {"evals": 0}


def test_by_step_keeps_the_steps_every_seed_logged():
    runs = {0: _evals([100, 200, 300]), 1: _evals([300, 400])}
    table = learning.by_step(runs)
    assert [r["env_steps"] for r in table] == [5000, 10000]
    ci_lo, ci_hi = table[1].pop("ci_lo"), table[1].pop("ci_hi")
    assert table[1] == {"env_steps": 10000, "wall_s": 20.0, "mean": 300.0, "lo": 200, "hi": 400}
    assert 200 <= ci_lo < 300 < ci_hi <= 400
    result = {
        "agent": "tdmpc2", "task": "hopper", "machine": {"cpu": "x", "cores": 2},
        "command": "python benchmarks/learning.py", "date": "2026-12-01", "commit": "abc",
        "action_repeat": 2, "threshold": 250.0, "by_step": table, "wall_s": {0: 30.0, 1: 20.0},
        "seeds": {s: learning.summarise(ev, 250.0) for s, ev in runs.items()},
    }  # fmt: skip
    text = learning.markdown(result)
    assert "| 0 | 300 | 200 | 300 | 1.00 | 15,000 | 15,000 | 30 |" in text
    assert "| 1 | 400 | 350 | 400 | 1.00 | 5,000 | 5,000 | 20 |" in text


def test_bootstrap_ci_of_the_mean():
    lo, hi = learning.bootstrap_ci([900.0, 1000.0, 950.0])
    assert 900 <= lo < 950 < hi <= 1000
    assert learning.bootstrap_ci([900.0, 1000.0, 950.0]) == (lo, hi)  # a fixed resampling seed
    assert learning.bootstrap_ci([5.0]) == (5.0, 5.0)
    wide = learning.bootstrap_ci([0.0, 1000.0, 500.0, 250.0, 750.0])
    narrow = learning.bootstrap_ci([490.0, 510.0, 500.0, 495.0, 505.0])
    assert wide[1] - wide[0] > 10 * (narrow[1] - narrow[0])
    with pytest.raises(ValueError, match="no values"):
        learning.bootstrap_ci([])


def test_seeds_trained_together_are_split_from_their_rows():
    rows = [
        {"env_steps": 4000, "wall_s": 5.0},  # the seed phase: no evaluation
        {"env_steps": 5000, "wall_s": 9.0, "eval/return": 2.0, "eval/return_seeds": [1.0, 3.0]},
        {"env_steps": 10000, "wall_s": 19.0, "eval/return": 5.0, "eval/return_seeds": [4.0, 6.0]},
    ]
    runs = learning.evals_per_seed(rows, [7, 8])
    assert [e["eval/return"] for e in runs[7]] == [1.0, 4.0]
    assert [e["eval/return"] for e in runs[8]] == [3.0, 6.0]
    assert [e["env_steps"] for e in runs[8]] == [5000, 10000]
    with pytest.raises(ValueError, match="2 seeds' returns, expected 3"):
        learning.evals_per_seed(rows, [0, 1, 2])


def test_agent_overrides_are_python_literals():
    assert learning.parse_overrides(["alive_discount_max=None", "batch_size=32", "lr=1e-3"]) == {
        "alive_discount_max": None, "batch_size": 32, "lr": 1e-3,
    }  # fmt: skip
    with pytest.raises(ValueError, match="field=value"):
        learning.parse_overrides(["lr"])
    with pytest.raises(ValueError, match="not a Python literal"):
        learning.parse_overrides(["lr=fast"])
