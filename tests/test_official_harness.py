"""`benchmarks/official.py` and the ratios `benchmarks/throughput.py` quotes from it: CPU
identification, the results-file lookup by CPU model, the tables (no official code, no compile)."""

import json
import subprocess
import sys

import pytest
from _bench import BENCHMARKS, load_benchmark

official = load_benchmark("official_bench", BENCHMARKS / "official.py")

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
stepping\t: 1
flags\t\t: fpu sse avx avx2 fma avx512f avx512bw avx512vl avx512_bf16

processor\t: 1
vendor_id\t: GenuineIntel
"""
ZEN4 = {"vendor": "AuthenticAMD", "family": "25", "model": "17"}


def _result(machine, timestamp, ratio, **extra):
    return {
        "machine": {**machine, "model_name": "AMD EPYC", "kind": "AVX-512", "simd": ["avx512f"]},
        "timestamp": timestamp,
        "date": timestamp[:10],
        "rows": [
            {"name": "tdmpc2_1M_plan", "ratio": ratio},
            {"name": "dreamerv3_size1m_compile", "ratio": None, "not_measured": "why"},
        ],
        **extra,
    }


def test_cpu_info_reads_the_first_processor(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    info = official.cpu_info(str(path))
    assert (info["vendor"], info["family"], info["model"]) == ("AuthenticAMD", "25", "17")
    assert info["model_name"] == "AMD EPYC 9R14" and info["kind"] == "AVX-512"
    assert info["simd"] == ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"]
    assert official.machine_stem(info) == "official_cpu_avx512_amd_f25_m17"


def test_lookup_takes_the_newest_file_of_the_same_cpu_model(tmp_path):
    zen5 = {"vendor": "AuthenticAMD", "family": "26", "model": "2"}
    files = {
        "official_a.json": _result(ZEN4, "2026-11-01T10:00:00", 1.5),
        "official_b.json": _result(ZEN4, "2026-12-01T10:00:00", 2.5),
        "official_c.json": _result(zen5, "2026-12-02T10:00:00", 9.0),  # another CPU model
    }
    for name, r in files.items():
        (tmp_path / name).write_text(json.dumps(r))
    (tmp_path / "official_broken.json").write_text("{")
    found = official.find_official(ZEN4, tmp_path)
    assert found["path"].endswith("official_b.json")
    assert (
        official.find_official({"vendor": "GenuineIntel", "family": "6", "model": "85"}, tmp_path)
        is None
    )

    throughput = load_benchmark("throughput")
    ratios = throughput.official_ratios(ZEN4, tmp_path)
    assert ratios["source"] == "official_b.json" and ratios["ratios"] == {"tdmpc2_1M_plan": 2.5}
    assert throughput.ratio_cell(ratios, "tdmpc2", "1M", "act_1env") == "2.50x"
    assert throughput.ratio_cell(ratios, "tdmpc2", "1M", "act_64env") == "-"
    assert throughput.ratio_cell(ratios, "dreamer", "size1m", "compile") == "not measured here"
    none = throughput.official_ratios({"vendor": "x", "family": "1", "model": "1"}, tmp_path)
    assert throughput.ratio_cell(none, "tdmpc2", "1M", "update_256x4") == "not measured here"
    assert "not measured here" in throughput.markdown(
        {
            "machine": {
                "cpu": "c",
                "kind": "AVX2",
                "simd": [],
                "cores": 2,
                "jax": "0",
                "backend": "cpu",
            },
            "matmul_peak_gflops": 1.0,
            "date": "d",
            "official": none,
            "agent": {
                "plain": {
                    "1M": {
                        "act_1env": {
                            "ms": 1,
                            "gflop": 1,
                            "gflops": 1,
                            "frac_peak": 0.5,
                            "compile_s": 1,
                        }
                    }
                }
            },
        }
    )


def test_markdown_has_both_figures_ratio_fractions_and_reasons():
    r = {
        **_result(ZEN4, "2026-12-03T10:00:00", 2.0),
        "peak_gflops": 300.0,
        "peak_start_gflops": 300.0,
        "peak_end_gflops": 290.0,
        "load_before": [1, 1, 1],
        "load_after": [2, 2, 2],
        "rounds": 5,
        "ours": {"jax": "0.10.2", "allocator": "tuned"},
        "official": {
            "tdmpc2": {"commit": official.PINNED["tdmpc2"]["commit"], "framework": "torch 2.7.1"},
            "dreamerv3": {
                "commit": official.PINNED["dreamerv3"]["commit"],
                "framework": "jax 0.4.33",
            },
        },
        "notes": ["a note"],
    }
    r["machine"]["cores"] = 2
    r["rows"] = [
        {
            "name": "tdmpc2_5M_plan",
            "label": "TD-MPC2 5M plan (1 env)",
            "kind": "plan",
            "ratio": 2.41,
            "ours": {"s": 0.177, "ms": 177.0, "gflop": 37.4, "frac_peak": 0.7},
            "official": {"s": 0.428, "ms": 428.0, "gflop": 46.4, "frac_peak": 0.36, "threads": 1},
            "official_2thread": {"s": 5.0, "ms": 5000.0, "threads": 2},
            "official_1thread": {"s": 0.428, "ms": 428.0, "threads": 1},
        },
        {
            "name": "dreamerv3_size1m_imagine",
            "label": "DreamerV3 size1m imagination",
            "kind": "imagine",
            "ratio": 2.5,
            "ours": {
                "s": 0.1,
                "ms": 100.0,
                "steps_per_s": 153600.0,
                "gflop": 15.6,
                "frac_peak": 0.5,
            },
            "official": {
                "s": 0.25,
                "ms": 250.0,
                "steps_per_s": 61440.0,
                "gflop": 15.0,
                "frac_peak": 0.2,
            },
        },
        {
            "name": "dreamerv3_size1m_compile",
            "label": "DreamerV3 compile",
            "kind": "compile",
            "not_measured": "no source",
        },
    ]
    md = official.markdown(r)
    assert (
        "| TD-MPC2 5M plan (1 env) | 177 ms | 428 ms (1 thread; 2 threads: 5,000 ms) | 2.41x | "
        "37.4 / 46.4 | 70% / 36% |" in md
    )
    assert "| DreamerV3 size1m imagination | 153.6k steps/s | 61.4k steps/s | 2.50x |" in md
    assert "| DreamerV3 compile | not measured: no source |" in md
    assert "family 25 model 17" in md and "- a note" in md


def test_calls_per_turn_is_bounded():
    assert official.calls_per_turn(0.01, 1.5) == 10
    assert official.calls_per_turn(0.3, 1.5) == 5
    assert official.calls_per_turn(9.0, 1.5) == 1
    assert [w["name"] for w in official.workloads(quick=True)] == [
        "tdmpc2_1M_plan",
        "tdmpc2_1M_update",
        "dreamerv3_size1m_imagine",
        "dreamerv3_size1m_train",
        "dreamerv3_size1m_compile",
    ]


def test_help_names_the_pinned_commits():
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "official.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for pin in official.PINNED.values():
        assert pin["commit"] in out.stdout and pin["repo"] in out.stdout


def _part(agent, allocator, peak, rows, info):
    return {
        "machine": {"model_name": "AMD EPYC"},
        "peak_gflops": peak,
        "peak_start_gflops": peak,
        "peak_end_gflops": peak - 1,
        "load_before": [0, 0, 0],
        "load_after": [peak, 0, 0],
        "ours": {"jax": "0.10.2", "allocator": allocator},
        "official": {
            "tdmpc2": {"commit": "a", **(info if agent == "tdmpc2" else {})},
            "dreamerv3": {"commit": "b", **(info if agent == "dreamerv3" else {})},
        },
        "rows": [{"name": n, "agent": agent} for n in rows],
        "notes": ["shared", f"{agent} note"],
    }


def test_each_implementation_runs_with_its_agents_allocator_and_the_parts_merge():
    # `wm` tunes the allocator for Dreamer only (the configs' class attribute), so do the runs
    assert not official.wants_tuned_allocator("tdmpc2")
    assert official.wants_tuned_allocator("dreamerv3")
    merged = official.merge_results(
        [
            _part("tdmpc2", "default", 80.0, ["t_plan", "t_update"], {"framework": "torch"}),
            _part("dreamerv3", "tuned", 90.0, ["d_train"], {"framework": "jax", "x": 1}),
        ]
    )
    assert [r["name"] for r in merged["rows"]] == ["t_plan", "t_update", "d_train"]
    assert merged["official"]["tdmpc2"]["framework"] == "torch"
    assert merged["official"]["dreamerv3"]["framework"] == "jax"
    assert merged["ours"]["allocator"] == {"tdmpc2": "default", "dreamerv3": "tuned"}
    assert merged["peak_gflops"] == 90.0 and merged["peak_start_gflops"] == 80.0
    assert merged["peaks_per_process"] == {"tdmpc2": 80.0, "dreamerv3": 90.0}
    assert merged["load_after"] == [90.0, 0, 0]
    assert merged["notes"] == ["shared", "tdmpc2 note", "dreamerv3 note"]
    assert official._allocator(merged["ours"]["allocator"]) == "tdmpc2 default, dreamerv3 tuned"


def test_select_keeps_the_named_workloads_of_one_implementation():
    args = official.parser().parse_args(["--quick", "--only", "dreamerv3"])
    assert {w["agent"] for w in official.select(args)} == {"dreamerv3"}
    args = official.parser().parse_args(["--workloads", "tdmpc2_5M_plan,dreamerv3_size12m_train"])
    assert [w["name"] for w in official.select(args)] == [
        "tdmpc2_5M_plan",
        "dreamerv3_size12m_train",
    ]


def test_throughput_runs_each_agent_in_its_own_process_tuned_as_wm_tunes_it(monkeypatch):
    throughput = load_benchmark("throughput")
    children, tuned = [], []
    monkeypatch.setattr(throughput.subprocess, "run", lambda cmd, **kw: children.append(cmd[2:]))
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--quick", "--paths", "plain"])
    throughput.main()
    assert children == [
        ["--only", "tdmpc2", "--quick", "--paths", "plain"],
        ["--only", "dreamer", "--quick", "--paths", "plain"],
    ]

    class Stop(Exception):
        pass

    def run(*args):
        raise Stop

    monkeypatch.setattr(throughput, "tune_host_allocator", lambda: tuned.append(True))
    monkeypatch.setattr(throughput, "run", run)
    for only, want in (("tdmpc2", []), ("dreamer", [True])):
        tuned.clear()
        monkeypatch.setattr(sys, "argv", ["throughput.py", "--only", only])
        with pytest.raises(Stop):  # stopped before anything is measured
            throughput.main()
        assert tuned == want, only
