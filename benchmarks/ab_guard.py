"""Paired A/B: an agent update alone against the same update behind the train loop's finiteness
guard (`agents.train.skip_nonfinite`), compiled side by side in one process, calls alternating.

The guard checks every floating-point leaf of the new agent state and the `loss*` metrics for
NaN/inf and selects the old state where one is found; this measures what that costs per update.
Writes `benchmarks/results/ab_guard_<machine>.{json,md}`.

  python benchmarks/ab_guard.py                 # TD-MPC2 cpu and 5M, Dreamer cpu and size1m
  python benchmarks/ab_guard.py --rounds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.hostmem import tune_host_allocator  # noqa: E402

tune_host_allocator()

import jax  # noqa: E402

from agents.bench import _sequence_batch, machine_info  # noqa: E402
from agents.dreamer import DreamerConfig, make_dreamer  # noqa: E402
from agents.envs import make_env  # noqa: E402
from agents.tdmpc2 import TDMPC2Config, make_tdmpc2  # noqa: E402
from agents.train import skip_nonfinite  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CASES = {
    "tdmpc2_cpu": lambda spec: make_tdmpc2(TDMPC2Config.cpu(), spec),
    "tdmpc2_5m": lambda spec: make_tdmpc2(TDMPC2Config(), spec),
    "dreamer_cpu": lambda spec: make_dreamer(DreamerConfig.cpu(), spec),
    "dreamer_size1m": lambda spec: make_dreamer(DreamerConfig(), spec),
}


def measure(name: str, rounds: int) -> dict:
    _, spec = make_env("hopper")
    agent = CASES[name](spec)
    state = agent.init(jax.random.key(0))
    seq, batch = agent.data.seq_len, agent.data.batch_size
    data = _sequence_batch(agent, state, spec, seq, batch)
    key = jax.random.key(1)
    fns = {
        "plain": jax.jit(agent.update).lower(state, data, key).compile(),
        "guarded": jax.jit(skip_nonfinite(agent.update)).lower(state, data, key).compile(),
    }
    for fn in fns.values():
        jax.block_until_ready(fn(state, data, key))
    times = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for k in order:
            start = time.perf_counter()
            jax.block_until_ready(fns[k](state, data, key))
            times[k].append(time.perf_counter() - start)
    ratios = [g / p for g, p in zip(times["guarded"], times["plain"], strict=True)]
    return {
        "case": name,
        "plain_ms": 1e3 * statistics.median(times["plain"]),
        "guarded_ms": 1e3 * statistics.median(times["guarded"]),
        "ratio": statistics.median(ratios),
        "rounds": rounds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    rows = []
    for name in args.cases.split(","):
        rows.append(measure(name, args.rounds))
        r = rows[-1]
        print(f"{name}: plain {r['plain_ms']:.2f} ms, guarded {r['guarded_ms']:.2f} ms, "
              f"ratio {r['ratio']:.3f}", flush=True)  # fmt: skip
    info = machine_info()
    tag = "cpu_" + info["kind"].lower().replace("-", "")
    payload = {"date": time.strftime("%Y-%m-%d"), "machine": info, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ab_guard_{tag}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# Cost of the non-finite update guard ({info['cpu']}, {info['kind']})",
        "",
        f"`python benchmarks/ab_guard.py --rounds {args.rounds}` ({payload['date']}): one update",
        "alone and behind `agents.train.skip_nonfinite`, compiled in one process, calls",
        "alternating; ratio = median of guarded / plain per round (1.00 = free).",
        "",
        "| update | plain ms | guarded ms | ratio |",
        "|---|---|---|---|",
        *[
            f"| {r['case']} | {r['plain_ms']:.2f} | {r['guarded_ms']:.2f} | {r['ratio']:.3f} |"
            for r in rows
        ],
    ]
    (RESULTS / f"ab_guard_{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
