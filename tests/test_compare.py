"""benchmarks/compare.py: reading both kinds of result file, the table and the plot."""

import json

import pytest
from _bench import load_benchmark

cmp = load_benchmark("compare")

MACHINE = {"cpu": "test cpu", "kind": "AVX2"}


def _ours(task, returns_by_seed, step=10_000):
    evals = {
        str(seed): [
            {"env_steps": step * (i + 1), "wall_s": 10.0 * (i + 1), "eval/return": r}
            for i, r in enumerate(rets)
        ]
        for seed, rets in returns_by_seed.items()
    }
    return {
        "task": task,
        "agent": "tdmpc2",
        "commit": "abc1234",
        "machine": MACHINE,
        "evals": evals,
    }


def _brax(task, returns, step=10_240):
    rows = [{"env_steps": 0, "wall_s": 1.0, "eval/episode_reward": -5.0}] + [
        {"env_steps": step * (i + 1), "wall_s": 5.0 * (i + 1), "eval/episode_reward": r}
        for i, r in enumerate(returns)
    ]
    runs = [{"seed": 0, "rows": rows}]
    return {"algo": "sac", "env": task, "settings": "default", "machine": MACHINE, "runs": runs}


@pytest.fixture
def results(tmp_path):
    (tmp_path / "learning_tdmpc2_hopper_cpu_avx2.json").write_text(
        json.dumps(_ours("hopper", {0: [100, 200, 300, 400], 1: [300, 400, 500, 600]}))
    )
    # A task whose name starts with "hopper" must not be read for hopper.
    (tmp_path / "learning_tdmpc2_hopper-hop_cpu_avx2.json").write_text(
        json.dumps(_ours("hopper-hop", {0: [9, 9, 9]}))
    )
    (tmp_path / "brax_sac_hopper_default.json").write_text(
        json.dumps(_brax("hopper", [50, 60, 700, 800]))
    )
    return tmp_path


def test_sources_and_table(results):
    sources = cmp.load_sources("hopper", results)
    assert [s["name"] for s in sources] == ["tdmpc2 (ours, abc1234)", "Brax SAC (default)"]
    assert 0 not in [step for step, _, _ in sources[1]["curves"][0]]  # untrained eval left out
    ours, sac = (cmp.summarize(s, [20_000, 40_000, 100_000]) for s in sources)
    assert ours["at"][20_000] == (300, 200, 400, 2) and ours["at"][100_000] is None
    assert ours["last3"] == pytest.approx((300 + 500) / 2)
    assert sac["at"][40_000][0] == 800  # 40,960 is the nearest of Brax's grid, within 10%
    md = cmp.markdown("hopper", sources, [20_000, 40_000])
    assert "| tdmpc2 (ours, abc1234) | 2 | 300 (200-400) | 500 (400-600) | 400 |" in md
    assert "hopper-hop" not in md
    reach = cmp.summarize(sources[0], [], reach=350)["reach"]
    assert reach == ((40_000 + 20_000) / 2, (40.0 + 20.0) / 2, 2)  # seed 0 at 40k, seed 1 at 20k
    assert cmp.summarize(sources[1], [], reach=10_000)["reach"] is None
    md = cmp.markdown("hopper", sources, [20_000], reach=350)
    assert "| 30,000, 30 (2/2) |" in md and "| 30,720, 15 (1/1) |" in md and "--reach 350`" in md
    assert "| never |" in cmp.markdown("hopper", sources, [20_000], reach=5000)


def test_mean_curve_and_plot(results, tmp_path):
    sources = cmp.load_sources("hopper", results)
    curve = cmp.mean_curve(sources[0]["curves"])
    assert curve[0] == (10_000, 10.0, 200, 100, 300)
    cmp.plot("hopper", sources, tmp_path / "out.png")
    assert (tmp_path / "out.png").stat().st_size > 10_000


def test_main_without_results_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cmp, "RESULTS", tmp_path)
    with pytest.raises(SystemExit):
        cmp.main(["--task", "ant"])
