"""Paired A/B of an agent's update or plan: a git ref against the working tree, calls alternating.

This host's speed drifts by up to 1.8x within minutes, so two separate benchmark runs cannot tell
a few percent apart. Here each side's call is compiled in its own process, the baseline's with
`PYTHONPATH` at a temporary `git worktree` of the ref, and the two processes then take turns, one
call each per round (the order flips every round). The medians and the median of the per-round
ratios (working tree / baseline) are printed; below 1 the working tree is faster.

What is timed (`--what`), always on hopper (`agents.envs.make_env("hopper")`):
  dreamer-update  DreamerV3's `update` at a size preset on a 16 x 64 batch, as
                  `benchmarks/throughput.py` (the default)
  tdmpc2-update   `TDMPC2Config.cpu()`'s `update` on a `[horizon, batch_size]` batch, as
                  `agents/bench.py` builds it
  tdmpc2-plan     `TDMPC2Config.cpu()`'s `act` on 4 envs (`eval=False`), as `wm train` calls it

The child code runs against both trees, whose agent APIs may differ, so it uses only what both
can be expected to have: configs from `TDMPC2Config.cpu()`, `agent.init(key)` (or the older
`agent.init(key, spec)`), and outputs only passed to `block_until_ready`.

  python benchmarks/ab_update.py HEAD~1                # the last commit's change
  python benchmarks/ab_update.py main --size size12m --rounds 10
  python benchmarks/ab_update.py main --what tdmpc2-plan
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from abtrees import ROOT, child_start, init_agent, worktrees

WHAT = ("dreamer-update", "tdmpc2-update", "tdmpc2-plan")


def _compiled_call(what: str, size: str):
    """`(compiled, args)`: the one call `what` times, compiled for these arguments."""
    import jax
    import jax.numpy as jnp

    from agents.bench import _sequence_batch
    from agents.envs import make_env

    _, spec = make_env("hopper")
    if what == "dreamer-update":
        sys.path.insert(0, str(Path(__file__).parent))
        from throughput import dreamer_config

        from agents.dreamer import make_dreamer

        agent, (t, b) = make_dreamer(dreamer_config(size), spec), (64, 16)
    else:
        from agents.tdmpc2 import TDMPC2Config, make_tdmpc2

        cfg = TDMPC2Config.cpu()
        agent, (t, b) = make_tdmpc2(cfg, spec), (cfg.planner.horizon, cfg.batch_size)
    state = init_agent(agent, jax.random.key(0), spec)
    if what == "tdmpc2-plan":
        n = 4  # `TrainConfig.num_envs`
        obs = jax.random.normal(jax.random.key(1), (n, spec.obs_size))
        args = (state, agent.initial_carry(state, n), obs, jnp.zeros(n, bool), jax.random.key(2))
        act = jax.jit(lambda *a: agent.act(*a, eval=False))  # keyword on either tree
        return act.lower(*args).compile(), args
    args = (state, _sequence_batch(agent, state, spec, t, b), jax.random.key(3))
    return jax.jit(agent.update).lower(*args).compile(), args


def child(what: str, size: str) -> None:
    """Compile one call, say `ready`, then time one call per line read from stdin."""
    child_start(tune_allocator=what == "dreamer-update")
    import jax

    call, args = _compiled_call(what, size)
    jax.block_until_ready(call(*args))
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        jax.block_until_ready(call(*args))
        print(time.perf_counter() - start, flush=True)


def compare(trees: dict[str, Path], what: str, size: str, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each tree's `what`, `rounds` calls each, alternating."""
    procs = {}
    for name, tree in trees.items():
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--what", what]
        cmd += ["--size", size]
        procs[name] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree
        )
    times: dict[str, list[float]] = {name: [] for name in procs}
    try:
        for name, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{name}: {what} did not compile (see its stderr above)")
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
    parser.add_argument("--what", default=WHAT[0], choices=WHAT, help="the call timed")
    parser.add_argument(
        "--size", default="size1m", choices=("size1m", "size12m"), help="dreamer-update only"
    )
    parser.add_argument("--rounds", type=int, default=24, help="calls per side (default 24)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.what, args.size)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    with worktrees(args.ref) as (base,):
        times = compare({args.ref: base, "working tree": ROOT}, args.what, args.size, args.rounds)
    for name, t in times.items():
        print(f"{name}: median {statistics.median(t) * 1e3:.1f} ms, min {min(t) * 1e3:.1f} ms")
    a, b = times.values()
    ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
    print(f"working tree / {args.ref}: {ratio:.3f} (median of {args.rounds} paired ratios)")


if __name__ == "__main__":
    main()
