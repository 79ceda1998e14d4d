"""Throughput of TD-MPC2 and Dreamer on this machine: TD-MPC2 plan and update latency at the
official configs, env steps/s, train-chunk speed and compile time at `wm train` defaults; Dreamer
(RSSM) imagination steps/s and train-step latency at DreamerV3's size1m and size12m; all with the
fraction of the measured matmul peak. Writes `benchmarks/results/throughput_<kind>.json` and `.md`.

  python benchmarks/throughput.py                 # everything (about 8 minutes on 2 cores)
  python benchmarks/throughput.py --quick         # 1M / size1m configs and fewer repeats
  python benchmarks/throughput.py --only dreamer  # Dreamer rows alone, merged into the results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from agents.bench import (
    bench_agent,
    bench_dreamer,
    bench_env,
    bench_train,
    machine_info,
    matmul_peak,
)
from agents.config import TrainConfig
from agents.dreamer import DreamerConfig
from agents.envs import make_env
from agents.hostmem import host_allocator, tune_host_allocator
from agents.tdmpc2 import TDMPC2Config, make_tdmpc2
from worldmodels.rssm_config import RSSMConfig
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

# DreamerV3's size presets (RSSM sizes and MLP width `units`, also the actor's and critic's);
# everything else DreamerV3's defaults: horizon 15, batch 16 x 64, replay context.
DREAMER_SIZES = {"size1m": RSSMConfig.size1m, "size12m": RSSMConfig.size12m}
# Official DreamerV3 (JAX) on these machines (shared/STACK.md): imagined steps/s of 1024 starts x
# horizon 15, train-step seconds on a 16 x 64 batch, train-step compile seconds.
DREAMER_REFERENCE = {
    "AVX2": {
        "size1m": {"imagine": 20_600, "update_s": 1.44, "compile_s": 30},
        "size12m": {"imagine": 2_860, "update_s": 11.3},
    },
    "AVX-512": {
        "size1m": {"imagine": 40_600, "update_s": 0.77, "compile_s": 18},
        "size12m": {"imagine": 6_610, "update_s": 5.06},
    },
}
# Issue targets on the AVX2 machine (imagined steps/s, train-step seconds); scaled like TD-MPC2's.
DREAMER_TARGET_AVX2 = {
    "size1m": {"imagine": 62_000, "update_s": 0.5},
    "size12m": {"imagine": 5_700},
}


def dreamer_config(size: str) -> DreamerConfig:
    """DreamerV3's defaults at a size preset: actor and critic as wide as the preset's `units`."""
    model = DREAMER_SIZES[size]()
    return DreamerConfig(model=model, units=model.units)


def run_dreamer(kind: str, spec, peak: float, quick: bool) -> dict:
    """Dreamer rows per size: imagination (1024 starts x H15) and train step (16 x 64)."""
    out = {
        "matmul_peak_gflops": round(peak, 1),
        "date": time.strftime("%Y-%m-%d"),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "host_allocator": host_allocator(),
        "sizes": {},
    }
    for size in ("size1m",) if quick else tuple(DREAMER_SIZES):
        print(f"Dreamer {size}: imagination 1024 x H15, update 16 x 64", file=sys.stderr)
        rows = bench_dreamer(dreamer_config(size), spec, repeats=3 if quick else 10, peak=peak)
        ref = DREAMER_REFERENCE.get(kind, {}).get(size, {})
        base, target = DREAMER_REFERENCE["AVX2"][size], DREAMER_TARGET_AVX2.get(size, {})
        for name, row in rows.items():
            if name.startswith("imagine"):
                steps = row["imagined_steps_per_s"]
                if "imagine" in ref:
                    row["official_steps_per_s"] = ref["imagine"]
                    row["speedup_vs_official"] = round(steps / ref["imagine"], 2)
                if "imagine" in target:
                    scale = ref["imagine"] / base["imagine"] if ref else 1
                    row["target_steps_per_s"] = round(target["imagine"] * scale)
                    row["meets_target"] = steps >= row["target_steps_per_s"]
            elif name.startswith("update"):
                if "update_s" in ref:
                    row["official_ms"] = round(ref["update_s"] * 1e3)
                    row["speedup_vs_official"] = round(row["official_ms"] / row["ms"], 2)
                if "compile_s" in ref:
                    row["official_compile_s"] = ref["compile_s"]
                if "update_s" in target:
                    scale = ref["update_s"] / base["update_s"] if ref else 1
                    row["target_ms"] = round(target["update_s"] * scale * 1e3, 1)
                    row["meets_target"] = row["ms"] <= row["target_ms"]
        out["sizes"][size] = rows
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def run(quick: bool, only: str | None = None) -> dict:
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
    }
    if only != "tdmpc2":
        result["dreamer"] = run_dreamer(info["kind"], spec, peak, quick)
    if only == "dreamer":
        return result
    result["agent"] = {}
    for size in ("1M",) if quick else ("5M", "1M"):
        cfg = TDMPC2Config(model=OFFICIAL[size])  # official planner: H3, 6 it, 512/64/24
        print(f"TD-MPC2 {size}: plan (1 env, 64 envs) and update (batch 256)", file=sys.stderr)
        agent = make_tdmpc2(cfg, spec)
        rows = bench_agent(agent, spec, num_envs=(1, 64), repeats=3 if quick else 10, peak=peak)
        ref = REFERENCE.get(info["kind"], {}).get(size, {})
        for name, row in rows.items():
            what = (
                "plan"
                if name.startswith("act_1env")
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
        f"GFLOP/s**; date {r['date']}; host allocator {m.get('host_allocator', 'default')} "
        "(`agents/hostmem.py`). Reproduce: `python benchmarks/throughput.py`.",
        "",
    ]
    if "agent" in r:
        lines += _tdmpc2_markdown(r)
    if "dreamer" in r:
        lines += _dreamer_markdown(r["dreamer"])
    while not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def _tdmpc2_markdown(r: dict) -> list[str]:
    lines = [
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
        "",
    ]
    return lines


def _dreamer_markdown(d: dict) -> list[str]:
    lines = [
        "## Dreamer (RSSM), DreamerV3 defaults at its size presets",
        "",
        "Imagination: actor + RSSM prior, 1024 starts x horizon 15 in one `lax.scan`, then the "
        "reward and continue heads on all imagined latents; forward only. Train step: the full "
        "`update` (world model, imagination, actor, critic) on a 16 x 64 batch. Matmul peak in "
        f"this run **{d['matmul_peak_gflops']} "
        f"GFLOP/s**; date {d['date']}; load average (1, 5, 15 min) before {d['load_before']}, "
        f"after {d['load_after']} (other processes share the 2 cores); host allocator "
        f"{d.get('host_allocator', 'default')}. Reproduce: "
        "`python benchmarks/throughput.py --only dreamer`.",
        "",
        "| workload | result | official | target | met | ms | GFLOP | GFLOP/s | of peak | "
        "compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, rows in d["sizes"].items():
        for name, row in rows.items():
            if "imagined_steps_per_s" in row:
                result = f"{row['imagined_steps_per_s']:,.0f} steps/s"
                official = f"{row['official_steps_per_s']:,} steps/s"
                target = row.get("target_steps_per_s")
                target = "-" if target is None else f">= {target:,} steps/s"
            else:
                result, official = f"{row['ms']:,.0f} ms", f"{row.get('official_ms', '-')} ms"
                target = row.get("target_ms")
                target = "-" if target is None else f"<= {target:,} ms"
            met = {True: "yes", False: "**no**"}.get(row.get("meets_target"), "-")
            compile_s = row["compile_s"]
            if "official_compile_s" in row:
                compile_s = f"{compile_s} (official {row['official_compile_s']})"
            lines.append(
                f"| Dreamer {size} {name} | {result} | {official} | {target} | {met} | "
                f"{row['ms']} | {row['gflop']} | {row['gflops']} | {row['frac_peak']:.0%} | "
                f"{compile_s} |"
            )
    lines += [
        "",
        "Targets are the issue's, set on the AVX2 machine and scaled here by the ratio of the "
        "official figures on the two kinds of machine. GFLOP counts matmuls only (scan bodies "
        "times their trip count).",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M config only, fewer repeats")
    parser.add_argument(
        "--only",
        choices=("tdmpc2", "dreamer"),
        help="run one agent's rows and merge them into the existing results file",
    )
    args = parser.parse_args()
    tune_host_allocator()  # as `wm` does, before JAX starts (see agents/hostmem.py)
    result = run(args.quick, args.only)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"throughput_{'cpu_' + result['machine']['kind'].lower().replace('-', '')}"
    if args.quick:
        stem = stem.with_name(stem.name + "_quick")
    if args.only and stem.with_suffix(".json").exists():
        merged = json.loads(stem.with_suffix(".json").read_text())
        if args.only == "dreamer":  # the top-level machine, peak and date are the TD-MPC2 run's
            merged["dreamer"] = result["dreamer"]
        else:
            merged.update(result)
        result = merged
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
