"""Throughput of TD-MPC2 and Dreamer on this machine: TD-MPC2 plan and update latency at the
official configs, env steps/s, train-chunk speed and compile time at `wm train` defaults; Dreamer
(RSSM) imagination steps/s and train-step latency at DreamerV3's size1m and size12m; all with the
fraction of the measured matmul peak. Writes `benchmarks/results/throughput_<kind>.json` and `.md`.

No official figures are kept here: a ratio to the official code is only honest when both ran in
the same run on the same CPU, so the `vs official` column quotes the newest
`benchmarks/results/official_*.json` (`benchmarks/official.py`) measured on this CPU model
(vendor, family, model number), or says "not measured here".

  python benchmarks/throughput.py                 # everything (about 8 minutes on 2 cores, a path)
                                                  # one process per agent, tuned as `wm` tunes it
  python benchmarks/throughput.py --quick         # 1M / size1m configs and fewer repeats
  python benchmarks/throughput.py --only dreamer  # Dreamer rows alone, merged into the results
  python benchmarks/throughput.py --paths plain   # one code path (default on CPU: rewrites,plain)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official import cpu_info, find_official  # noqa: E402 - standard library only

from agents.bench import (  # noqa: E402
    bench_agent,
    bench_dreamer,
    bench_env,
    bench_train,
    machine_info,
    matmul_peak,
)
from agents.config import TrainConfig  # noqa: E402
from agents.dreamer import DreamerConfig  # noqa: E402
from agents.envs import make_env  # noqa: E402
from agents.hostmem import host_allocator, tune_host_allocator  # noqa: E402
from agents.tdmpc2 import TDMPC2Config, make_tdmpc2  # noqa: E402
from worldmodels.rssm_config import RSSMConfig  # noqa: E402
from worldmodels.tdmpc import TDMPCConfig  # noqa: E402

try:  # the CPU rewrites switch (another change adds it); without it there is one path
    from worldmodels import backend
except ImportError:
    backend = None

RESULTS = Path(__file__).parent / "results"

# The official TD-MPC2 model sizes (tdmpc2/common/__init__.py, MODEL_SIZE); planner and batch as in
# its config.yaml. `episodic=False` as in the official DMControl runs.
OFFICIAL = {
    "5M": TDMPCConfig(
        enc_dim=256, mlp_dim=512, latent_dim=512, num_enc_layers=2, num_q=5, episodic=False
    ),
    "1M": TDMPCConfig(
        enc_dim=256, mlp_dim=384, latent_dim=128, num_enc_layers=2, num_q=2, episodic=False
    ),
}

# DreamerV3's size presets (RSSM sizes and MLP width `units`, also the actor's and critic's);
# everything else DreamerV3's defaults: horizon 15, batch 16 x 64, replay context.
DREAMER_SIZES = {"size1m": RSSMConfig.size1m, "size12m": RSSMConfig.size12m}


def dreamer_config(size: str) -> DreamerConfig:
    """DreamerV3's defaults at a size preset: actor and critic as wide as the preset's `units`."""
    model = DREAMER_SIZES[size]()
    return DreamerConfig(model=model, units=model.units)


# ---------------------------------------------------------------------------------------------
# The same-run ratios of benchmarks/official.py.


def official_row(agent: str, size: str, name: str) -> str | None:
    """The `benchmarks/official.py` row that one of our rows is compared in, if any."""
    if agent == "tdmpc2":
        if name.startswith("act_1env"):
            return f"tdmpc2_{size}_plan"
        if name.startswith("update"):
            return f"tdmpc2_{size}_update"
    elif agent == "dreamer":
        if name.startswith("imagine"):
            return f"dreamerv3_{size}_imagine"
        if name.startswith("update"):
            return f"dreamerv3_{size}_train"
        if name == "compile":
            return f"dreamerv3_{size}_compile"
    return None


def official_ratios(machine: dict, results: Path = RESULTS) -> dict:
    """`{"source": file or None, "date", "ratios": {official row: ratio}}` from the newest
    `official_*.json` measured on this CPU model (`machine` has `vendor`, `family`, `model`)."""
    found = find_official(machine, results)
    if found is None:
        return {"source": None, "ratios": {}}
    ratios = {
        r["name"]: r["ratio"]
        for r in found.get("rows", [])
        if r.get("ratio") is not None and not r.get("not_measured")
    }
    return {"source": Path(found["path"]).name, "date": found.get("date"), "ratios": ratios}


def ratio_cell(official: dict | None, agent: str, size: str, name: str) -> str:
    """The `vs official` cell: `2.41x` (same run, official time / ours) or why there is none."""
    key = official_row(agent, size, name)
    if key is None:
        return "-"
    if not official or official.get("source") is None or key not in official.get("ratios", {}):
        return "not measured here"
    return f"{official['ratios'][key]:.2f}x"


# ---------------------------------------------------------------------------------------------
# Code paths (worldmodels.backend.use_cpu_rewrites; read at trace time).


def resolve_paths(requested: str | None, platform: str) -> tuple[list[str], str | None]:
    """The paths to time and a note: both on CPU by default, one where the switch is missing."""
    if backend is None or not hasattr(backend, "use_cpu_rewrites"):
        return ["default"], "worldmodels.backend.use_cpu_rewrites is not there: one path timed"
    if requested:
        paths = [p.strip() for p in requested.split(",") if p.strip()]
        bad = [p for p in paths if p not in ("rewrites", "plain")]
        if bad:
            raise SystemExit(f"--paths: unknown path(s) {bad}; choose from rewrites, plain")
        return paths, None
    if platform == "cpu":
        return ["rewrites", "plain"], None
    return ["plain"], "the CPU rewrites apply on CPU only: one path timed"


def path_context(path: str):
    """The context every agent of `path` is built and traced in."""
    if path == "default" or backend is None:
        return contextlib.nullcontext()
    return backend.use_cpu_rewrites(path == "rewrites")


def run_dreamer(spec, peak: float, quick: bool) -> dict:
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
        out["sizes"][size] = bench_dreamer(
            dreamer_config(size), spec, repeats=3 if quick else 10, peak=peak
        )
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def run_tdmpc2(spec, peak: float, quick: bool) -> dict:
    rows = {}
    for size in ("1M",) if quick else ("5M", "1M"):
        cfg = TDMPC2Config(model=OFFICIAL[size])  # official planner: H3, 6 it, 512/64/24
        print(f"TD-MPC2 {size}: plan (1 env, 64 envs) and update (batch 256)", file=sys.stderr)
        agent = make_tdmpc2(cfg, spec)
        rows[size] = bench_agent(
            agent, spec, num_envs=(1, 64), repeats=3 if quick else 10, peak=peak
        )
    return rows


def run(quick: bool, only: str | None = None, paths: str | None = None) -> dict:
    info = machine_info()
    info.update({k: v for k, v in cpu_info().items() if k in ("vendor", "family", "model")})
    peak = matmul_peak(repeats=5 if quick else 10)
    print(
        f"machine: {info['cpu']} ({info['kind']}), matmul peak {peak:.1f} GFLOP/s", file=sys.stderr
    )
    path_list, note = resolve_paths(paths, info["backend"])
    _, spec = make_env("hopper")  # obs/action sizes only matter for the encoder's first layer
    result = {
        "machine": info,
        "matmul_peak_gflops": round(peak, 1),
        "env_for_shapes": "hopper",
        "date": time.strftime("%Y-%m-%d"),
        "paths": path_list,
        "official": official_ratios(info),
    }
    if note:
        result["paths_note"] = note
    for path in path_list:
        print(f"path: {path}", file=sys.stderr)
        with path_context(path):
            if only != "tdmpc2":
                result.setdefault("dreamer", {})[path] = run_dreamer(spec, peak, quick)
            if only != "dreamer":
                result.setdefault("agent", {})[path] = run_tdmpc2(spec, peak, quick)
    if only == "dreamer":
        return result
    result["env_steps_per_s"] = {
        f"{name}_{n}": round(bench_env(name, n), 1)
        for name in ("inverted_pendulum", "hopper")
        for n in (1, 64)
    }
    default = TrainConfig()
    train = bench_train(dataclasses.replace(default, seed_steps=default.env_steps_per_chunk))
    train["config"] = "wm train defaults (inverted_pendulum)"
    result["train"] = train
    return result


def markdown(r: dict) -> str:
    m = r["machine"]
    off = r.get("official") or {}
    source = (
        f"`vs official`: official time / ours, measured in one run of `benchmarks/official.py` "
        f"on this CPU model ({off['source']}, {off.get('date')}); not a ratio to this file's "
        "figures."
        if off.get("source")
        else "`vs official`: not measured here (no `benchmarks/results/official_*.json` from "
        "this CPU model: run `benchmarks/official.py`)."
    )
    lines = [
        f"# Throughput on {m['cpu']} ({m['kind']}: {', '.join(m['simd'])}; {m['cores']} cores)",
        "",
        f"JAX {m['jax']} on {m['backend']}; measured f32 matmul peak **{r['matmul_peak_gflops']} "
        f"GFLOP/s**; date {r['date']}; host allocator {m.get('host_allocator', 'default')} "
        f"(`agents/hostmem.py`); code paths {', '.join(r.get('paths', ['default']))}"
        f"{' (' + r['paths_note'] + ')' if r.get('paths_note') else ''}. "
        "Reproduce: `python benchmarks/throughput.py`.",
        "",
        source,
        "",
    ]
    if "agent" in r:
        lines += _tdmpc2_markdown(r)
    if "dreamer" in r:
        lines += _dreamer_markdown(r)
    while not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def _by_path(section: dict) -> dict:
    """`{path: value}`; results files from before the paths option hold one unnamed path."""
    if section and all(
        isinstance(v, dict) and ("sizes" in v or "1M" in v or "5M" in v) for v in section.values()
    ):
        return section
    return {"default": section}


def _tag(path: str, paths) -> str:
    return f" [{path}]" if len(paths) > 1 else ""


def _tdmpc2_markdown(r: dict) -> list[str]:
    lines = [
        "| workload | ms | GFLOP | GFLOP/s | of peak | compile s | vs official |",
        "|---|---|---|---|---|---|---|",
    ]
    agent = _by_path(r["agent"])
    for path, sizes in agent.items():
        for size, rows in sizes.items():
            for name, row in rows.items():
                lines.append(
                    f"| TD-MPC2 {size} {name}{_tag(path, agent)} | {row['ms']} | {row['gflop']} | "
                    f"{row['gflops']} | {row['frac_peak']:.0%} | {row['compile_s']} | "
                    f"{ratio_cell(r.get('official'), 'tdmpc2', size, name)} |"
                )
    if "env_steps_per_s" in r:
        lines += ["", "| env (random actions, lax.scan) | env steps/s |", "|---|---|"]
        lines += [f"| {k} envs | {v:,.0f} |" for k, v in r["env_steps_per_s"].items()]
    if "train" in r:
        t = r["train"]
        lines += [
            "",
            f"`wm train` defaults: first train chunk compiles in **{t['train_chunk_compile_s']} "
            f"s**; train chunks run at **{t['train_env_steps_per_s']:,.0f} env steps/s** "
            "(planning + updates included).",
        ]
    return [*lines, ""]


def _dreamer_markdown(r: dict) -> list[str]:
    dreamer = _by_path(r["dreamer"])
    first = next(iter(dreamer.values()))
    lines = [
        "## Dreamer (RSSM), DreamerV3 defaults at its size presets",
        "",
        "Imagination: actor + RSSM prior, 1024 starts x horizon 15 in one `lax.scan`, then the "
        "reward and continue heads on all imagined latents; forward only. Train step: the full "
        "`update` (world model, imagination, actor, critic) on a 16 x 64 batch. Matmul peak in "
        f"this run **{first['matmul_peak_gflops']} GFLOP/s**; date {first['date']}; load average "
        f"(1, 5, 15 min) before {first['load_before']}, after {first['load_after']} (other "
        f"processes share the 2 cores); host allocator {first.get('host_allocator', 'default')}. "
        "Reproduce: `python benchmarks/throughput.py --only dreamer`.",
        "",
        "| workload | result | ms | GFLOP | GFLOP/s | of peak | compile s | vs official |",
        "|---|---|---|---|---|---|---|---|",
    ]
    off = r.get("official")
    for path, d in dreamer.items():
        for size, rows in d["sizes"].items():
            for name, row in rows.items():
                if "imagined_steps_per_s" in row:
                    result = f"{row['imagined_steps_per_s']:,.0f} steps/s"
                else:
                    result = f"{row['ms']:,.0f} ms"
                compile_s = str(row["compile_s"])
                if name.startswith("update") and official_row("dreamer", size, "compile"):
                    cell = ratio_cell(off, "dreamer", size, "compile")
                    if cell != "not measured here":
                        compile_s += f" (vs official {cell})"
                lines.append(
                    f"| Dreamer {size} {name}{_tag(path, dreamer)} | {result} | {row['ms']} | "
                    f"{row['gflop']} | {row['gflops']} | {row['frac_peak']:.0%} | {compile_s} | "
                    f"{ratio_cell(off, 'dreamer', size, name)} |"
                )
    lines += [
        "",
        "GFLOP counts matmuls only (scan bodies times their trip count).",
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
    parser.add_argument(
        "--paths",
        help="code paths to time, comma-separated from rewrites,plain "
        "(worldmodels.backend.use_cpu_rewrites; default on CPU: both)",
    )
    args = parser.parse_args()
    if args.only is None:  # one process per agent: the allocator setting is per process
        for only in ("tdmpc2", "dreamer"):
            cmd = [sys.executable, __file__, "--only", only]
            cmd += ["--quick"] * args.quick + (["--paths", args.paths] if args.paths else [])
            subprocess.run(cmd, check=True)
        return
    # As `wm` does: the allocator tuning only where the agent's config asks for it, before JAX
    # starts (agents/hostmem.py: it halves a TD-MPC2 train chunk and speeds up a Dreamer update).
    config = DreamerConfig if args.only == "dreamer" else TDMPC2Config
    if config.tune_host_allocator:
        tune_host_allocator()
    result = run(args.quick, args.only, args.paths)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"throughput_{'cpu_' + result['machine']['kind'].lower().replace('-', '')}"
    if args.quick:
        stem = stem.with_name(stem.name + "_quick")
    if args.only and stem.with_suffix(".json").exists():
        merged = json.loads(stem.with_suffix(".json").read_text())
        if args.only == "dreamer":  # the top-level machine, peak and date are the TD-MPC2 run's
            merged["dreamer"] = result["dreamer"]
            merged["official"] = result["official"]
        else:
            merged.update(result)
        result = merged
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
