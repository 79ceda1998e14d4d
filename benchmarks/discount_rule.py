"""TD-MPC2's discount rule, before and after, from the learning results files.

After: `wm train` defaults, the rule (`TDMPC2Config`: the heuristic discount until a replay batch
holds a failure, then `1 - 1 / episode_length` up to `alive_discount_max`). Before: the same runs
with `--set alive_discount_max=None`, TD-MPC2's heuristic on every task (the official rule). On a
task whose episodes never end by failure (halfcheetah, DM Control) the two are one program: the
flag never rises (`tests/agents/test_tdmpc2.py`), so only tasks that can fail are run twice.

  python benchmarks/learning.py --env inverted_pendulum --steps 30000 --num-seeds 3 --tag rule
  python benchmarks/learning.py --env inverted_pendulum --steps 30000 --num-seeds 3 \
      --set alive_discount_max=None --tag heuristic
  python benchmarks/discount_rule.py     # -> results/discount_rule_cpu_<kind>.{md,json}
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import table

RESULTS = Path(__file__).parent / "results"
BEFORE = {"alive_discount_max": None}


def pairs(results: list[dict]) -> list[tuple[dict, dict]]:
    """`(before, after)` results of the same task, agent, steps and machine kind."""

    def key(r):
        return (r["task"], r["agent"], r["steps"], r["machine"]["kind"])

    after = {key(r): r for r in results if not r.get("overrides")}
    before = {key(r): r for r in results if r.get("overrides") == BEFORE}
    return [(before[k], after[k]) for k in sorted(before.keys() & after.keys())]


def summary(result: dict, threshold: float) -> dict:
    """Final mean [CI], last-3 mean over seeds, and per-seed stability at `threshold`."""
    final = result["by_step"][-1]
    seeds = result["seeds"].values()
    evals = result["evals"].values()

    def fell_after_learning(ev):
        """An evaluation below half the threshold after the first one at or above it."""
        returns = [e["eval/return"] for e in ev]
        first = next((i for i, r in enumerate(returns) if r >= threshold), None)
        return first is not None and any(r < threshold / 2 for r in returns[first:])

    return {
        "file": result["file"],
        "env_steps": final["env_steps"],
        "final_mean": final["mean"],
        "final_ci": [final["ci_lo"], final["ci_hi"]],
        "last3_mean": statistics.fmean(s["last3_mean"] for s in seeds),
        "last3_per_seed": [s["last3_mean"] for s in seeds],
        "seeds_reaching": sum(s["reached"] is not None for s in seeds),
        "seeds_falling_back": sum(fell_after_learning(ev) for ev in evals),
        "num_seeds": len(result["seeds"]),
    }


def markdown(rows: list[dict], machine: dict) -> str:
    lines = [
        f"# TD-MPC2's discount rule, before and after ({machine['cpu']}, {machine['kind']}, "
        f"{machine['cores']} cores)",
        "",
        "Before: TD-MPC2's heuristic on every task (`--set alive_discount_max=None`). After: the "
        "rule, `wm train`'s default (the heuristic until a failure is seen in the data, then "
        "`1 - 1/T` up to 0.998). Same seeds, same commands otherwise; return of the last "
        "evaluation (mean [95% bootstrap CI] over seeds), last-3 mean, seeds that reached the "
        "threshold, seeds that fell below half of it after first reaching it. Tasks that never "
        "end by failure run the same program either way and are not listed.",
        "",
        "| task | env steps | threshold | before: final [CI] | after: final [CI] | before: last-3 |"
        " after: last-3 | reached (before / after) | fell back (before / after) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['task']} | {a['env_steps']:,} | {r['threshold']:g} | {b['final_mean']:.0f} "
            f"[{b['final_ci'][0]:.0f}, {b['final_ci'][1]:.0f}] | {a['final_mean']:.0f} "
            f"[{a['final_ci'][0]:.0f}, {a['final_ci'][1]:.0f}] | {b['last3_mean']:.0f} | "
            f"{a['last3_mean']:.0f} | {b['seeds_reaching']}/{b['num_seeds']} / "
            f"{a['seeds_reaching']}/{a['num_seeds']} | {b['seeds_falling_back']} / "
            f"{a['seeds_falling_back']} |"
        )
    lines += ["", "Files: " + ", ".join(
        f"`{r['before']['file']}` / `{r['after']['file']}`" for r in rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    by_kind: dict[str, list] = {}
    machines = {}
    for before, after in pairs(table.load_results()):
        threshold = after["threshold"]
        kind = after["machine"]["kind"]
        machines[kind] = after["machine"]
        by_kind.setdefault(kind, []).append({
            "task": after["task"], "threshold": threshold,
            "before": summary(before, threshold), "after": summary(after, threshold),
        })  # fmt: skip
    for kind, rows in by_kind.items():
        stem = RESULTS / f"discount_rule_cpu_{kind.lower().replace('-', '')}"
        stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
        text = markdown(rows, machines[kind])
        stem.with_suffix(".md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
