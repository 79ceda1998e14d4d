"""`agents.bench`: the Dreamer rows of `wm bench` and `benchmarks/throughput.py` (tiny config)."""

import pytest

import agents.bench as bench
from agents.config import TrainConfig
from agents.dreamer import DreamerConfig
from agents.types import EnvSpec

# The spec and config of tests/agents/test_dreamer.py: the same update program, compiled once per
# session (the persistent compilation cache of conftest.py).
SPEC = EnvSpec(
    name="toy", obs_size=4, action_size=2, num_envs=3, episode_length=50, action_repeat=1
)


def test_bench_dreamer_rows_act_imagination_and_update():
    cfg = DreamerConfig.tiny()
    b, t = cfg.batch_size, cfg.batch_length
    rows = bench.bench_dreamer(
        cfg, SPEC, starts=8, horizon=3, batch=(b, t), num_envs=(3,), repeats=1, peak=100.0
    )
    assert list(rows) == ["act_3env", "imagine_8x3", f"update_{b}x{t}"]
    for row in rows.values():  # tiny: the rounded GFLOP figures may be 0
        assert row["ms"] > 0 and {"gflop", "gflops", "frac_peak", "compile_s"} <= row.keys()
        assert row["frac_peak"] == pytest.approx(row["gflops"] / 100.0, abs=1e-4)
    assert rows[f"update_{b}x{t}"]["compile_s"] > 0
    imagine = rows["imagine_8x3"]
    assert imagine["mflop_per_step"] > 0
    assert imagine["imagined_steps_per_s"] == pytest.approx(8 * 3 / imagine["ms"] * 1e3, rel=0.01)


def test_bench_config_benchmarks_the_selected_agent(monkeypatch):
    calls = []
    fake = lambda agent, spec, **k: calls.append((agent, spec, k)) or {"agent_row": {}}
    monkeypatch.setattr(bench, "bench_agent", fake)
    # The machine-wide measurements are slow and agent-independent: faked here.
    monkeypatch.setattr(bench, "matmul_peak", lambda *a, **k: 100.0)
    monkeypatch.setattr(bench, "bench_env", lambda *a, **k: 1.0)
    monkeypatch.setattr(bench, "bench_train", lambda cfg: {"train_env_steps_per_s": 1.0})
    d = DreamerConfig.tiny()
    out = bench.bench_config(TrainConfig(agent=d, num_envs=2), repeats=3)
    assert out["agent"] == DreamerConfig.name and "agent_row" in out
    ((agent, spec, kw),) = calls
    # the agent bench_agent gets is the config's: its data spec says so
    assert (agent.data.seq_len, agent.data.batch_size) == (d.batch_length, d.batch_size)
    assert spec.num_envs == 2 and kw == {"num_envs": (1, 2), "repeats": 3, "peak": 100.0}
    calls.clear()
    out = bench.bench_config(TrainConfig(num_envs=1), repeats=3)
    assert out["agent"] == TrainConfig().agent.name and calls[0][2]["num_envs"] == (1,)
    assert calls[0][0].data.seq_len == TrainConfig().agent.planner.horizon
