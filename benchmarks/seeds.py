"""Several seeds in one program: env steps/s per seed of `wm train --num-seeds N` against N = 1.

The point of vmapping seeds (`TrainConfig.num_seeds`) is that N seeds cost well under N times
one. Both configs (`wm train` defaults on inverted_pendulum, one with `num_seeds=N`) are compiled
in this process and their train chunks then take turns, one call each per round (the order flips
every round), so the host's drift falls on both alike. Reported: seconds per chunk of each,
env steps/s per seed and in all, and the median of the per-round cost ratios (N seeds / 1 seed;
N would mean no gain at all).

  python benchmarks/seeds.py                    # N = 4, 10 rounds
  python benchmarks/seeds.py --num-seeds 8 --rounds 6
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def measure(num_seeds: int, rounds: int, agent: str, base=None) -> dict:
    """Paired chunk timings of `base` (default: `wm train <agent>` defaults) at 1 and N seeds."""
    import jax

    from agents.bench import machine_info
    from agents.config import TrainConfig, agent_config_class
    from agents.run import build
    from agents.train import seed_keys

    base = base or TrainConfig(agent=agent_config_class(agent).cpu())
    cfgs = {1: base, num_seeds: dataclasses.replace(base, num_seeds=num_seeds)}
    compiled, states, compile_s = {}, {}, {}
    for n, cfg in cfgs.items():
        _, _, trainer = build(cfg)
        state, _ = trainer.seed_chunk(trainer.init(seed_keys(cfg)))
        t = time.perf_counter()
        compiled[n] = trainer.train_chunk.lower(state).compile()
        compile_s[n] = time.perf_counter() - t
        states[n], m = compiled[n](state)  # warm-up
        jax.block_until_ready(m)
    times = {n: [] for n in cfgs}
    for r in range(rounds):
        for n in list(cfgs) if r % 2 == 0 else list(cfgs)[::-1]:
            t = time.perf_counter()
            states[n], m = compiled[n](states[n])
            jax.block_until_ready(m)
            times[n].append(time.perf_counter() - t)
        print(f"round {r + 1}/{rounds}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    chunk = base.env_steps_per_chunk
    rows = {}
    for n, t in times.items():
        s = statistics.median(t)
        rows[n] = {
            "chunk_s": round(s, 3),
            "compile_s": round(compile_s[n], 1),
            "env_steps_per_s_per_seed": round(chunk / s, 1),
            "env_steps_per_s_all_seeds": round(n * chunk / s, 1),
        }
    ratio = statistics.median(b / a for a, b in zip(times[1], times[num_seeds], strict=True))
    return {
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
        "agent": agent,
        "config": f"wm train {agent} defaults (inverted_pendulum), train chunks only",
        "rounds": rounds,
        "num_seeds": num_seeds,
        "rows": {str(n): r for n, r in rows.items()},
        "cost_ratio": round(ratio, 3),
        "command": f"python benchmarks/seeds.py --agent {agent} --num-seeds {num_seeds} "
        f"--rounds {rounds}",
    }


def markdown(r: dict) -> str:
    m, n = r["machine"], r["num_seeds"]
    lines = [
        f"# Seeds in one program: {r['agent']}, {n} seeds against 1 "
        f"({m['cpu']}, {m['cores']} cores)",
        "",
        f"`{r['command']}` ({r['date']}): {r['config']}; paired, {r['rounds']} rounds of one "
        "chunk each, alternating.",
        "",
        "| seeds | s per chunk | env steps/s per seed | env steps/s, all seeds | compile s |",
        "|---|---|---|---|---|",
    ]
    for k, row in r["rows"].items():
        lines.append(
            f"| {k} | {row['chunk_s']} | {row['env_steps_per_s_per_seed']} | "
            f"{row['env_steps_per_s_all_seeds']} | {row['compile_s']} |"
        )
    lines += [
        "",
        f"A chunk of {n} seeds costs **{r['cost_ratio']}x** one seed's (median of paired "
        f"rounds; {n} would mean no gain from vmapping).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-seeds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--agent", default="tdmpc2", help="an agent label (default tdmpc2)")
    args = parser.parse_args()
    if args.num_seeds < 2 or args.rounds < 1:
        parser.error("--num-seeds must be >= 2 and --rounds >= 1")
    sys.path.insert(0, str(ROOT))
    from agents.hostmem import tune_host_allocator

    tune_host_allocator()
    result = measure(args.num_seeds, args.rounds, args.agent)
    kind = result["machine"]["kind"].lower().replace("-", "")
    stem = RESULTS / f"seeds_{args.agent}_{args.num_seeds}_cpu_{kind}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
