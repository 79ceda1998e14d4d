"""benchmarks/seeds.py: the paired N-seeds-against-one measurement, on a tiny config."""

import pytest
from _bench import load_benchmark

seeds = load_benchmark("seeds")


def test_measure_pairs_both_programs_and_reports_per_seed_rates():
    from agents.config import TrainConfig
    from agents.tdmpc2 import TDMPC2Config

    tiny = TrainConfig(
        num_envs=2, episode_length=20, seed_steps=40, chunk_steps=5, replay_capacity=200,
        eval_episodes=1, agent=TDMPC2Config.tiny(),
    )  # fmt: skip
    r = seeds.measure(2, rounds=2, agent="tdmpc2", base=tiny)
    one, two = r["rows"]["1"], r["rows"]["2"]
    chunk = tiny.env_steps_per_chunk
    assert one["env_steps_per_s_per_seed"] == pytest.approx(chunk / one["chunk_s"], rel=0.01)
    assert two["env_steps_per_s_all_seeds"] == pytest.approx(
        2 * two["env_steps_per_s_per_seed"], rel=0.01
    )
    assert r["cost_ratio"] > 0 and r["num_seeds"] == 2
    text = seeds.markdown(r)
    assert "| 2 |" in text and f"{r['cost_ratio']}x" in text
