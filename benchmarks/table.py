"""The learning table: our multi-seed results beside the published anchors, at equal env steps.

Reads every `benchmarks/results/learning_*.json` written by `learning.py` with at least
`--min-seeds` seeds, a recorded eval protocol and no agent overrides (`wm train`'s defaults), and
`benchmarks/anchors/dmc_published.json`, and writes one table per machine kind,
`benchmarks/results/learning_table_cpu_<kind>.{md,json}`. `--readme` also puts the tables into
the README between its `learning-table` markers; a test checks that the README holds exactly
what this script makes of the committed files.

  python benchmarks/table.py --readme

Each row compares at one env-step count, counted as the anchor counts it (physics/control steps,
action repeat included; `benchmarks/anchors/README.md`): `--at` (100k) or, for a run shorter than
that, its last evaluation. An anchor appears only where it has that exact step: no row compares
steps counted two ways.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).parent
RESULTS = ROOT / "results"
ANCHORS = ROOT / "anchors" / "dmc_published.json"
README = ROOT.parent / "README.md"
MARK_START, MARK_END = "<!-- learning-table:start -->", "<!-- learning-table:end -->"
ANCHOR_NAMES = {"tdmpc2": "official TD-MPC2", "dreamerv3": "DreamerV3 (own runs)"}


def load_results(results: Path = RESULTS, min_seeds: int = 3) -> list[dict]:
    """The learning results with `min_seeds`+ seeds and an eval protocol, sorted by task."""
    found = []
    for path in sorted(results.glob("learning_*.json")):
        if path.name.startswith("learning_table"):
            continue
        r = json.loads(path.read_text())
        if "eval_protocol" in r and len(r.get("seeds", {})) >= min_seeds:
            found.append(dict(r, file=path.name))
    return sorted(found, key=lambda r: (r["task"], r["agent"], r["file"]))


def anchor_at(anchors: dict, task: str, env_steps: int) -> dict:
    """`{anchor name: {"mean", "seeds"}}` for a `dmc:<task>` at exactly `env_steps` (else {})."""
    if not task.startswith("dmc:"):
        return {}
    out = {}
    for name, a in anchors.items():
        if name.startswith("_"):
            continue
        at = a.get("returns", {}).get(task.removeprefix("dmc:"), {}).get(str(env_steps), {})
        if "mean" in at and at.get("x_used", env_steps) == env_steps:
            out[name] = {"mean": at["mean"], "seeds": at["seeds"]}
    return out


def row_of(result: dict, anchors: dict, at: int) -> dict:
    """One table row: ours at `at` env steps (or the run's last common evaluation before it)."""
    steps = [r for r in result["by_step"] if r["env_steps"] <= at]
    if not steps:
        raise ValueError(f"{result['file']}: no evaluation at or before {at} env steps")
    ours = steps[-1]
    step = ours["env_steps"]
    seeds = result["seeds"]
    return {
        "task": result["task"],
        "agent": result["agent"],
        "file": result["file"],
        "env_steps": step,
        "num_seeds": len(seeds),
        "mean": ours["mean"],
        "ci": [ours["ci_lo"], ours["ci_hi"]],
        "min": ours["lo"],
        "max": ours["hi"],
        "last3_mean": sum(s["last3_mean"] for s in seeds.values()) / len(seeds),
        "eval_episodes": result["eval_protocol"]["episodes"],
        "overrides": result.get("overrides") or {},
        "commit": result["commit"],
        "anchors": anchor_at(anchors, result["task"], step),
    }


def verdict(row: dict, name: str) -> str:
    """How ours stands against an anchor: above/below by how much, and whether the anchor's mean
    lies inside our 95% CI."""
    a = row["anchors"][name]["mean"]
    diff = row["mean"] - a
    lo, hi = row["ci"]
    inside = "inside" if lo <= a <= hi else "outside"
    side = "above" if diff > 0 else "below" if diff < 0 else "level with"
    return f"{side} by {abs(diff):.0f} ({inside} our CI)"


def machine_name(machine: dict) -> str:
    """ "AMD EPYC family 25 model 1 (AVX2)": the CPU model numbers where the results hold them."""
    cpu = machine.get("cpu_id")
    ids = f" family {cpu['family']} model {cpu['model']}" if cpu else ""
    return f"{machine['cpu']}{ids} ({machine['kind']})"


def markdown(kind: str, machine: dict, rows: list[dict], at: int) -> str:
    lines = [
        f"### Learning, {machine_name(machine)}, {machine['cores']} cores",
        "",
        f"Return at {at:,} env steps (or the run's last evaluation, for shorter runs), mean over "
        "seeds trained together, [95% percentile-bootstrap CI], min-max. Env steps count physics "
        "(DMC: control) steps, action repeat included, as every anchor counts them "
        "(`benchmarks/anchors/README.md`). Ours: `wm train`'s CPU preset (`TDMPC2Config.cpu()`, "
        "a model far smaller than the official 5M config), evaluated without exploration noise "
        "over the episodes the row gives (the planner still samples, as the official TD-MPC2's "
        "eval_mode does). Anchors at exactly the same env steps: the official "
        "TD-MPC2's `results/tdmpc2/*.csv` (3 seeds, 10 eval episodes without exploration noise) "
        "and DreamerV3's own `scores/dmc_proprio-dreamerv3.json.gz` (5 seeds, training-episode "
        "returns of its sampled policy).",
        "",
        "| task | agent | env steps | ours: mean [CI] (min-max) | seeds x episodes | last-3 mean |"
        " anchors at these env steps | results file |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        anchors = "; ".join(
            f"{ANCHOR_NAMES.get(n, n)} {v['mean']:.0f}: {verdict(r, n)}"
            for n, v in r["anchors"].items()
        )
        agent = r["agent"] + "".join(f", {k}={v}" for k, v in r["overrides"].items())
        lines.append(
            f"| {r['task']} | {agent} | {r['env_steps']:,} | **{r['mean']:.0f}** "
            f"[{r['ci'][0]:.0f}, {r['ci'][1]:.0f}] ({r['min']:.0f}-{r['max']:.0f}) | "
            f"{r['num_seeds']} x {r['eval_episodes']} | {r['last3_mean']:.0f} | {anchors or '-'} | "
            f"`{r['file'].removesuffix('.json')}` |"
        )
    return "\n".join(lines) + "\n"


def build(results: Path = RESULTS, anchors_path: Path = ANCHORS, at: int = 100_000,
          min_seeds: int = 3) -> dict[str, dict]:  # fmt: skip
    """`{kind: {"rows", "machine", "markdown"}}`, one table per machine kind."""
    anchors = json.loads(anchors_path.read_text())
    tables: dict[str, dict] = {}
    for result in load_results(results, min_seeds):
        if result.get("overrides") or result.get("variant"):  # an experiment, not the defaults
            continue
        machine = result["machine"]
        kind = machine["kind"]
        t = tables.setdefault(kind, {"machine": machine, "rows": []})
        t["rows"].append(row_of(result, anchors, at))
    for kind, t in tables.items():
        t["markdown"] = markdown(kind, t["machine"], t["rows"], at)
    return tables


def readme_block(tables: dict[str, dict]) -> str:
    """What the README holds between its markers."""
    body = "\n".join(t["markdown"] for _, t in sorted(tables.items()))
    return f"{MARK_START}\n{body}{MARK_END}"


def replace_block(text: str, block: str) -> str:
    """`text` with the marked block replaced (ValueError if the markers are missing)."""
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {MARK_START} ... {MARK_END} block")
    return text[:start] + block + text[end + len(MARK_END) :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", type=int, default=100_000, help="env steps to compare at")
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--readme", action="store_true", help="also update README.md's block")
    args = parser.parse_args()
    tables = build(at=args.at, min_seeds=args.min_seeds)
    for kind, t in tables.items():
        stem = RESULTS / f"learning_table_cpu_{kind.lower().replace('-', '')}"
        stem.with_suffix(".json").write_text(
            json.dumps({"at": args.at, "machine": t["machine"], "rows": t["rows"]}, indent=2) + "\n"
        )
        stem.with_suffix(".md").write_text(t["markdown"])
        print(t["markdown"])
    if args.readme:
        README.write_text(replace_block(README.read_text(), readme_block(tables)))


if __name__ == "__main__":
    main()
