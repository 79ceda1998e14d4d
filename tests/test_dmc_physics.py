"""benchmarks/dmc_physics.py and benchmarks/anchors/dm_control_runner.py: the parts that need no
venv, no dm_control and no compilation (divergence measure, summary, table)."""

from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

ROOT = Path(__file__).resolve().parent.parent
dp = load_benchmark("dmc_physics")


def test_runner_imports_no_project_code():
    source = (ROOT / "benchmarks" / "anchors" / "dm_control_runner.py").read_text()
    assert "import agents" not in source and "from agents" not in source
    assert "worldmodels" not in source and "jax" not in source


def test_first_apart_finds_the_first_step_over_the_tolerance():
    a = np.zeros(6)
    assert dp.first_apart(a, a) == 6
    b = np.array([0.0, 0.005, 0.02, 0.0, 0.5, 0.0])
    assert dp.first_apart(a, b, tol=0.01) == 2
    assert dp.first_apart(a, b, tol=0.1) == 4
    # [T, nq]: a step is apart when any coordinate is.
    q = np.zeros((4, 3))
    q2 = q.copy()
    q2[3, 2] = 1.0
    assert dp.first_apart(q, q2, tol=0.1) == 3


def test_compare_summarises_each_side():
    rng = np.random.default_rng(0)
    mjx = rng.uniform(0, 1, (3, 200))
    same = mjx.copy()
    same[:, 150:] += 0.5  # identical for 150 steps, then apart
    own = rng.uniform(0, 1, (3, 200))
    path = rng.normal(size=(3, 200, 2))
    c = dp.compare(mjx, same, own, path, path + (np.arange(200) >= 20)[None, :, None])
    assert c["mjx"]["mean"] == pytest.approx(mjx.sum(1).mean())
    assert c["dm_control_same_start"]["mean"] == pytest.approx(mjx.sum(1).mean() + 25.0)
    assert c["dm_control_own_reset"]["returns"] == pytest.approx(own.sum(1), abs=1e-3)
    assert c["mean_abs_reward_gap"]["1-10"] == 0.0 and c["mean_abs_reward_gap"]["1-100"] == 0.0
    assert c["mean_abs_reward_gap"]["1-200"] == pytest.approx(0.5 * 50 / 200)
    assert c["steps_until_apart"] == [150, 150, 150]
    assert c["steps_until_qpos_apart"] == [20, 20, 20]


def test_markdown_has_one_row_per_task_with_both_sides():
    rng = np.random.default_rng(1)
    tasks = {}
    for t in ("cheetah-run", "walker-walk"):
        r = rng.uniform(0, 1, (2, 50))
        opts = {"timestep": 0.01, "substeps": 1, "iterations": 4, "ls_iterations": 8}
        tasks[t] = {
            "compare": dp.compare(r, r, r),
            "options": {"playground": opts, "dm_control": {**opts, "iterations": 100}},
        }
    result = {
        "machine": {"cpu": "test cpu", "cores": 2},
        "command": "python benchmarks/dmc_physics.py",
        "date": "2026-12-02",
        "versions": {
            "playground": "0.2.0",
            "mujoco": "4.0.0",
            "dm_control": "1.0.50",
            "dm_control_mujoco": "3.17.0",
        },
        "episodes": 2,
        "steps": 50,
        "tasks": tasks,
        "windows": list(tasks["cheetah-run"]["compare"]["mean_abs_reward_gap"]),
    }
    md = dp.markdown(result)
    rows = [line for line in md.splitlines() if line.startswith("| cheetah-run")]
    assert len(rows) == 2  # returns row and options row
    assert "4 / 100" in rows[1]
    assert "| walker-walk |" in md and "dm_control 1.0.50 (mujoco 3.17.0)" in md
