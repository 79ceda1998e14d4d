"""TD-MPC2's discount rule, before and after, from the learning results files.

Three variants of the same runs (same seeds, same commands otherwise):
  * heuristic: TD-MPC2's discount from the episode length on every task, the official rule
    (`--set alive_discount_max=None`);
  * failures-only: the rule as first written (commit 9ca707f): the whole-episode discount from
    the first batch that holds a failure (results carry `"variant": "failures-only"`);
  * rule: `wm train`'s default now: the whole-episode discount once the data show a failure and
    a reward that varies between steps (`TDMPC2Config`).
On a task that never ends by failure (halfcheetah, DM Control) all three are one program; on a
task whose every step pays the same (inverted_pendulum) the rule is the heuristic's program
(`tests/agents/test_tdmpc2.py` checks both). Results files may carry a `note` saying which.

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
ORDER = ("heuristic", "failures-only", "rule")


def variant(result: dict) -> str | None:
    """Which of the three a result is (None: another experiment)."""
    if result.get("variant"):
        return result["variant"]
    overrides = result.get("overrides") or {}
    return "heuristic" if overrides == BEFORE else "rule" if not overrides else None


def groups(results: list[dict]) -> list[list[dict]]:
    """Results of the same task, agent, steps and machine kind in two or more variants."""
    by_key: dict[tuple, dict] = {}
    for r in results:
        v = variant(r)
        if v in ORDER:
            key = (r["task"], r["agent"], r["steps"], r["machine"]["kind"])
            by_key.setdefault(key, {})[v] = r
    return [
        [dict(found[v], variant_label=v) for v in ORDER if v in found]
        for _, found in sorted(by_key.items())
        if len(found) > 1
    ]


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
        f"# TD-MPC2's discount rule, before and after ({table.machine_name(machine)}, "
        f"{machine['cores']} cores)",
        "",
        "heuristic: TD-MPC2's discount from the episode length on every task (official). "
        "failures-only: the whole-episode discount (1 - 1/T up to 0.998) from the first failure "
        "seen (commit 9ca707f). rule: `wm train`'s default, the whole-episode discount once the "
        "data show a failure and a reward that varies between steps. Same seeds trained together, "
        "same commands otherwise. Return of the last evaluation (mean [95% bootstrap CI] over "
        "seeds), mean of the seeds' last-3 means, seeds that reached the threshold, and seeds that "
        "fell below half of it after first reaching it.",
        "",
        "| task | variant | env steps | threshold | final [CI] | last-3 | reached | fell back |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        x = r["summary"]
        lines.append(
            f"| {r['task']} | {r['variant']} | {x['env_steps']:,} | {r['threshold']:g} | "
            f"{x['final_mean']:.0f} [{x['final_ci'][0]:.0f}, {x['final_ci'][1]:.0f}] | "
            f"{x['last3_mean']:.0f} | {x['seeds_reaching']}/{x['num_seeds']} | "
            f"{x['seeds_falling_back']}/{x['num_seeds']} |"
        )
    lines += [""] + [f"- `{r['summary']['file']}`" + (f": {r['note']}" if r.get("note") else "")
                     for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    by_kind: dict[str, list] = {}
    machines = {}
    for group in groups(table.load_results()):
        for r in group:
            kind = r["machine"]["kind"]
            machines[kind] = r["machine"]
            by_kind.setdefault(kind, []).append({
                "task": r["task"], "variant": r["variant_label"], "threshold": r["threshold"],
                "summary": summary(r, r["threshold"]), "note": r.get("note"),
            })  # fmt: skip
    for kind, rows in by_kind.items():
        stem = RESULTS / f"discount_rule_cpu_{kind.lower().replace('-', '')}"
        stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
        text = markdown(rows, machines[kind])
        stem.with_suffix(".md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
