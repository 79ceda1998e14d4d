"""Throughput of TD-MPC2 on this machine: plan and update latency at the official configs, env
steps/s, train-chunk speed and compile time at `wm train` defaults, with the fraction of the
measured matmul peak. Writes `benchmarks/results/throughput_<kind>.json` and `.md`.

  python benchmarks/throughput.py                 # everything (about 5 minutes on 2 cores)
  python benchmarks/throughput.py --quick         # 1M config and fewer repeats
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from agents.bench import bench_agent, bench_env, bench_train, machine_info, matmul_peak
from agents.envs import make_env
from agents.tdmpc2 import TDMPC2Config
from agents.train import TrainConfig
from worldmodels.tdmpc import TDMPCConfig

RESULTS = Path(__file__).parent / "results"

# The official TD-MPC2 model sizes (tdmpc2/common/__init__.py, MODEL_SIZE); planner and batch as in
# its config.yaml. `episodic=False` as in the official DMControl runs the reference was timed on.
OFFICIAL = {
    "5M": TDMPCConfig(
        enc_dim=256, mlp_dim=512, latent_dim=512, num_enc_layers=2, num_q=5, episodic=False
    ),
    "1M": TDMPCConfig(
        enc_dim=256, mlp_dim=384, latent_dim=128, num_enc_layers=2, num_q=2, episodic=False
    ),
}
# Official PyTorch implementation on these machines (shared/STACK.md), milliseconds.
REFERENCE = {
    "AVX2": {"5M": {"plan": 1228, "update": 1148}},
    "AVX-512": {"5M": {"plan": 567, "update": 506}, "1M": {"plan": 195, "update": 131}},
}
# Issue targets, set on the AVX2 machine; scaled by the reference ratio on other kinds.
TARGET_AVX2 = {"plan": 700, "update": 650}


def run(quick: bool) -> dict:
    info = machine_info()
    peak = matmul_peak(repeats=5 if quick else 10)
    print(
        f"machine: {info['cpu']} ({info['kind']}), matmul peak {peak:.1f} GFLOP/s", file=sys.stderr
    )
    _, spec = make_env("hopper")  # obs/action sizes only matter for the encoder's first layer
    result = {
        "machine": info,
        "matmul_peak_gflops": round(peak, 1),
        "env_for_shapes": "hopper",
        "date": time.strftime("%Y-%m-%d"),
        "agent": {},
    }
    for size in ("1M",) if quick else ("5M", "1M"):
        cfg = TDMPC2Config(model=OFFICIAL[size])  # official planner: H3, 6 it, 512/64/24
        print(f"TD-MPC2 {size}: plan (1 env, 64 envs) and update (batch 256)", file=sys.stderr)
        rows = bench_agent(cfg, spec, num_envs=(1, 64), repeats=3 if quick else 10, peak=peak)
        ref = REFERENCE.get(info["kind"], {}).get(size, {})
        for name, row in rows.items():
            what = (
                "plan"
                if name.startswith("plan_1env")
                else "update"
                if name.startswith("update")
                else None
            )
            if what and what in ref:
                row["official_ms"] = ref[what]
                row["speedup_vs_official"] = round(ref[what] / row["ms"], 2)
            if what and size == "5M":
                scale = ref.get(what, 1) / REFERENCE["AVX2"]["5M"][what] if ref else 1
                row["target_ms"] = round(TARGET_AVX2[what] * scale, 1)
                row["meets_target"] = row["ms"] <= row["target_ms"]
        result["agent"][size] = rows
    result["env_steps_per_s"] = {
        f"{name}_{n}": round(bench_env(name, n), 1)
        for name in ("inverted_pendulum", "hopper")
        for n in (1, 64)
    }
    default = TrainConfig()
    train = bench_train(dataclasses.replace(default, seed_steps=default.env_steps_per_chunk))
    train["target_compile_s"] = 20.0
    train["config"] = "wm train defaults (inverted_pendulum)"
    result["train"] = train
    return result


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Throughput on {m['cpu']} ({m['kind']}: {', '.join(m['simd'])}; {m['cores']} cores)",
        "",
        f"JAX {m['jax']} on {m['backend']}; measured f32 matmul peak **{r['matmul_peak_gflops']} "
        f"GFLOP/s**; date {r['date']}. Reproduce: `python benchmarks/throughput.py`.",
        "",
        "| workload | ms | official ms | target ms | GFLOP | GFLOP/s | of peak | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, rows in r["agent"].items():
        for name, row in rows.items():
            lines.append(
                f"| TD-MPC2 {size} {name} | {row['ms']} | {row.get('official_ms', '-')} | "
                f"{row.get('target_ms', '-')} | {row['gflop']} | {row['gflops']} | "
                f"{row['frac_peak']:.0%} | {row['compile_s']} |"
            )
    lines += ["", "| env (random actions, lax.scan) | env steps/s |", "|---|---|"]
    lines += [f"| {k} envs | {v:,.0f} |" for k, v in r["env_steps_per_s"].items()]
    t = r["train"]
    lines += [
        "",
        f"`wm train` defaults: first train chunk compiles in **{t['train_chunk_compile_s']} s** "
        f"(target {t['target_compile_s']} s); train chunks run at "
        f"**{t['train_env_steps_per_s']:,.0f} env steps/s** (planning + updates included).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M config only, fewer repeats")
    args = parser.parse_args()
    result = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"throughput_{'cpu_' + result['machine']['kind'].lower().replace('-', '')}"
    if args.quick:
        stem = stem.with_name(stem.name + "_quick")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
