"""Paired A/B of the Dreamer update: a git ref against the working tree, calls alternating.

This host's speed drifts by up to 1.8x within minutes, so two separate benchmark runs cannot tell
a few percent apart. Here each side's `update` (DreamerV3 defaults at a size preset, a 16 x 64
batch, as `benchmarks/throughput.py`) is compiled in its own process, the baseline's with
`PYTHONPATH` at a temporary `git worktree` of the ref, and the two processes then take turns, one
call each per round (the order flips every round). The medians and the median of the per-round
ratios (working tree / baseline) are printed; below 1 the working tree is faster.

  python benchmarks/ab_update.py HEAD~1                # the last commit's change
  python benchmarks/ab_update.py main --size size12m --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(size: str) -> None:
    """Compile one update, say `ready`, then time one call per line read from stdin."""
    from agents.hostmem import tune_host_allocator

    tune_host_allocator()  # as `benchmarks/throughput.py`, before JAX starts
    import jax

    sys.path.insert(0, str(Path(__file__).parent))
    from throughput import dreamer_config

    from agents.bench import _sequence_batch
    from agents.dreamer import make_dreamer
    from agents.envs import make_env

    _, spec = make_env("hopper")
    agent = make_dreamer(dreamer_config(size), spec)
    state = agent.init(jax.random.key(0), spec)
    data = _sequence_batch(agent, state, spec, 64, 16)
    key = jax.random.key(3)
    update = jax.jit(agent.update).lower(state, data, key).compile()
    jax.block_until_ready(update(state, data, key))
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        jax.block_until_ready(update(state, data, key))
        print(time.perf_counter() - start, flush=True)


def compare(trees: dict[str, Path], size: str, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each tree's update, `rounds` calls each, alternating."""
    procs = {}
    for name, tree in trees.items():
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--size", size]
        procs[name] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree
        )
    times: dict[str, list[float]] = {name: [] for name in procs}
    try:
        for name, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{name}: the update did not compile (see its stderr above)")
        order = list(procs)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                procs[name].stdin.write("go\n")
                procs[name].stdin.flush()
                times[name].append(float(procs[name].stdout.readline()))
            print(f"round {r + 1}/{rounds}", file=sys.stderr, end="\r")
    finally:
        print(file=sys.stderr)
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", nargs="?", default="HEAD", help="baseline git ref (default HEAD)")
    parser.add_argument("--size", default="size1m", choices=("size1m", "size12m"))
    parser.add_argument("--rounds", type=int, default=24, help="calls per side (default 24)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.size)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "-q", "--detach", str(base), args.ref], check=True)
        try:
            times = compare({args.ref: base, "working tree": ROOT}, args.size, args.rounds)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(base)], check=False)
    for name, t in times.items():
        print(f"{name}: median {statistics.median(t) * 1e3:.1f} ms, min {min(t) * 1e3:.1f} ms")
    a, b = times.values()
    ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
    print(f"working tree / {args.ref}: {ratio:.3f} (median of {args.rounds} paired ratios)")


if __name__ == "__main__":
    main()
