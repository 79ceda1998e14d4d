"""Paired A/B of compile time and train-chunk speed: a git ref against the working tree.

Compile time drifts with the host as much as run time does, so it is measured the way
`benchmarks/ab_update.py` measures calls: both trees take turns. Each round starts one fresh
process per tree (the order flips every round), with no persistent compilation cache, which
compiles the program once and reports the seconds of `jax.jit(f).lower(*args).compile()`; the
baseline's process runs with `PYTHONPATH` at a temporary `git worktree` of the ref.

What is compiled (`--what`):
  train-chunk     `wm train`'s defaults (`TrainConfig()`), the first train chunk after the
                  random-action chunk, as `agents.bench.bench_train` times it. With
                  `--calls N` the first round's processes also run N chunks each, alternating,
                  and report env steps/s (the train-chunk throughput of the two trees).
  dreamer-update  DreamerV3's `update` at `--size` on a 16 x 64 batch of hopper, as
                  `benchmarks/throughput.py` builds it (trees from 2026-11-30 on)

  python benchmarks/ab_compile.py HEAD~3                          # train chunk, 5 rounds
  python benchmarks/ab_compile.py 71b6912 --what dreamer-update
  python benchmarks/ab_compile.py 5e62e50 --calls 8 --json out.json
  python benchmarks/ab_compile.py 5e62e50 --tree 1f9a2da --rounds 1 --calls 4   # bisecting
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from abtrees import ROOT, child_start, init_agent, worktrees

WHAT = ("train-chunk", "dreamer-update")


def _lowered(what: str, size: str):
    """`(lowered, args, steps)`: the program, its arguments and env steps per call (train chunk)."""
    import dataclasses

    import jax

    if what == "train-chunk":
        try:
            from agents.config import TrainConfig
        except ImportError:  # trees before agents/config.py
            from agents.train import TrainConfig
        from agents.run import build

        default = TrainConfig()
        cfg = dataclasses.replace(default, seed_steps=default.env_steps_per_chunk)
        _, _, trainer = build(cfg)
        try:
            from agents.train import seed_keys

            key = seed_keys(cfg)
        except ImportError:  # trees before multi-seed runs
            key = jax.random.key(cfg.seed)
        state, _ = trainer.seed_chunk(trainer.init(key))
        return trainer.train_chunk.lower(state), (state,), cfg.env_steps_per_chunk
    from agents.bench import _sequence_batch
    from agents.dreamer import make_dreamer
    from agents.envs import make_env

    sys.path.insert(0, str(Path.cwd() / "benchmarks"))  # the tree's own throughput.py
    from throughput import dreamer_config

    _, spec = make_env("hopper")
    agent = make_dreamer(dreamer_config(size), spec)
    state = init_agent(agent, jax.random.key(0), spec)
    args = (state, _sequence_batch(agent, state, spec, 64, 16), jax.random.key(3))
    return jax.jit(agent.update).lower(*args), args, 0


def child(what: str, size: str, calls: int) -> None:
    """Compile once and print `compile <s>`; then time `calls` calls, one per line of stdin."""
    child_start(tune_allocator=what == "dreamer-update")
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    lowered, args, steps = _lowered(what, size)
    start = time.perf_counter()
    compiled = lowered.compile()
    print(f"compile {time.perf_counter() - start}", flush=True)
    if not calls:
        return
    state, rest = args[0], args[1:]
    state, out = compiled(state, *rest)  # the first call pays for allocation
    jax.block_until_ready(out)
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        state, out = compiled(state, *rest)
        jax.block_until_ready(out)
        print(steps / (time.perf_counter() - start), flush=True)


def _spawn(tree: Path, what: str, size: str, calls: int, extra: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), **extra}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--what", what]
    cmd += ["--size", size, "--calls", str(calls)]
    return subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree
    )


def _compile_seconds(proc: subprocess.Popen, name: str) -> float:
    line = proc.stdout.readline().split()
    if not line or line[0] != "compile":
        raise RuntimeError(f"{name}: did not compile (see its stderr above)")
    return float(line[1])


def compare(
    trees: dict[str, Path], what: str, size: str, rounds: int, calls: int, envs: dict
) -> dict:
    """Per tree: compile seconds of each round and (with `calls`) env steps/s of each call;
    `envs[name]`: environment variables set for that tree's processes."""
    out = {name: {"compile_s": [], "env_steps_per_s": []} for name in trees}
    order = list(trees)
    for r in range(rounds):
        n = calls if r == 0 else 0
        names = order if r % 2 == 0 else order[::-1]
        # Compiles are sequential (one process at a time), so neither steals the other's cores.
        procs = {}
        for name in names:
            procs[name] = _spawn(trees[name], what, size, n, envs.get(name, {}))
            out[name]["compile_s"].append(_compile_seconds(procs[name], name))
        if n:
            for name in names:
                if procs[name].stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{name}: first call failed")
            for c in range(n):
                for name in names if c % 2 == 0 else names[::-1]:
                    procs[name].stdin.write("go\n")
                    procs[name].stdin.flush()
                    out[name]["env_steps_per_s"].append(float(procs[name].stdout.readline()))
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
        print(f"round {r + 1}/{rounds}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", nargs="?", default="HEAD", help="baseline git ref (default HEAD)")
    parser.add_argument("--what", default=WHAT[0], choices=WHAT, help="the program compiled")
    parser.add_argument(
        "--size", default="size1m", choices=("size1m", "size12m"), help="dreamer-update only"
    )
    parser.add_argument("--rounds", type=int, default=5, help="fresh compiles per side")
    parser.add_argument("--calls", type=int, default=0, help="train-chunk calls timed per side")
    parser.add_argument(
        "--tree", help="compare against this git ref instead of the working tree (bisecting)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set for the second side's processes only (e.g. WM_HOST_ALLOCATOR=default)",
    )
    parser.add_argument("--json", type=Path, help="also write the samples to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.what, args.size, args.calls)
    if args.rounds < 1 or args.calls < 0:
        parser.error("--rounds must be >= 1 and --calls >= 0")
    if args.calls and args.what != "train-chunk":
        parser.error("--calls times train chunks: use it with --what train-chunk")
    with worktrees(args.ref, *[args.tree] * bool(args.tree)) as (base, *other):
        second = args.tree or "working tree"
        if args.env:
            second += " with " + " ".join(args.env)
        trees = {args.ref: base, second: other[0] if other else ROOT}
        extra = dict(item.split("=", 1) for item in args.env)
        out = compare(trees, args.what, args.size, args.rounds, args.calls, {second: extra})
    from official import cpu_info  # vendor, family and model number: Zen 4 and Zen 5 differ

    from agents.bench import machine_info

    summary = {"ref": args.ref, "what": args.what, "load_after": list(os.getloadavg())}
    summary["machine"] = {**machine_info(), **cpu_info()}
    for name, samples in out.items():
        line = f"{name}: compile median {statistics.median(samples['compile_s']):.2f} s"
        line += f" (min {min(samples['compile_s']):.2f})"
        if samples["env_steps_per_s"]:
            line += f", train chunk median {statistics.median(samples['env_steps_per_s']):.1f}"
            line += " env steps/s"
        print(line)
    a, b = out.values()
    ratio = statistics.median(y / x for x, y in zip(a["compile_s"], b["compile_s"], strict=True))
    name = list(out)[1]
    print(f"compile, {name} / {args.ref}: {ratio:.3f} (median of {args.rounds} pairs)")
    summary["compile_ratio"] = ratio
    if args.calls:
        pairs = zip(a["env_steps_per_s"], b["env_steps_per_s"], strict=True)
        speed = statistics.median(y / x for x, y in pairs)
        print(f"env steps/s, {name} / {args.ref}: {speed:.3f} (median of {args.calls})")
        summary["speed_ratio"] = speed
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
