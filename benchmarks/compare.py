"""Our agents beside Brax's own SAC and PPO on one task: one table and one PNG from the results
that `benchmarks/learning.py` and `benchmarks/brax_baselines.py` wrote.

Reads `benchmarks/results/learning_<agent>_<task>_cpu_*.json` and
`benchmarks/results/brax_<algo>_<task>_<settings>.json`, and writes
`benchmarks/results/compare_<task>.{md,png}`: eval return against env steps and against wall time
(mean over seeds, min-max band), and per source the return at given env steps (the nearest
evaluation), the mean of the
last three evaluations and the wall time. Env steps are physics steps on both sides (our action
repeat is counted in; Brax's agents run at action repeat 1). The machine of each source is named:
wall times compare only within one machine and load.

  python benchmarks/compare.py --task hopper --at 50000,100000 --reach 900
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def our_curves(data: dict) -> dict[int, list[tuple[int, float, float]]]:
    """learning.py JSON -> {seed: [(env_steps, wall_s, return)]}."""
    return {
        int(seed): [(e["env_steps"], e["wall_s"], e["eval/return"]) for e in evals]
        for seed, evals in data["evals"].items()
    }


def brax_curves(data: dict) -> dict[int, list[tuple[int, float, float]]]:
    """brax_baselines.py JSON -> {seed: [(env_steps, wall_s, return)]}; the untrained eval at
    step 0 is left out, as our curves start after the first training."""
    return {
        run["seed"]: [
            (r["env_steps"], r["wall_s"], r["eval/episode_reward"])
            for r in run["rows"]
            if r["env_steps"] > 0
        ]
        for run in data["runs"]
    }


def load_sources(task: str, results: Path = RESULTS) -> list[dict]:
    """Every result file for `task`: `{name, machine, curves}`, ours first."""
    sources = []
    for path in sorted(results.glob(f"learning_*_{task}_cpu_*.json")):
        data = json.loads(path.read_text())
        if data.get("task") != task:
            continue  # e.g. "hopper" must not pick up a "hopper-hop" file
        sources.append(
            {
                "name": f"{data['agent']} (ours, {data.get('commit', '?')})",
                "machine": data["machine"],
                "curves": our_curves(data),
                "file": path.name,
            }
        )
    for path in sorted(results.glob(f"brax_*_{task}_*.json")):
        data = json.loads(path.read_text())
        if data.get("env") != task:
            continue
        sources.append(
            {
                "name": f"Brax {data['algo'].upper()} ({data['settings']})",
                "machine": data["machine"],
                "curves": brax_curves(data),
                "file": path.name,
            }
        )
    return [s for s in sources if any(s["curves"].values())]


def at_step(curve: list[tuple[int, float, float]], steps: int) -> float | None:
    """The return of the evaluation nearest to `steps` env steps, if it is within 10% of them
    (None when the run has none there: Brax's evaluations fall on its own step grid)."""
    near = [c for c in curve if abs(c[0] - steps) <= 0.1 * steps]
    return min(near, key=lambda c: (abs(c[0] - steps), c[0]))[2] if near else None


def first_reach(curve: list[tuple[int, float, float]], target: float):
    """(env_steps, wall_s) of the first evaluation at or above `target`, or None."""
    return next(((s, w) for s, w, r in curve if r >= target), None)


def summarize(source: dict, marks: list[int], reach: float | None = None) -> dict:
    """Per source: mean (min, max) over seeds at each mark, last-3 mean, final wall time and,
    with `reach`, the mean env steps and wall time of the first evaluation >= `reach` over the
    seeds that got there (with how many did)."""
    curves = list(source["curves"].values())
    out = {"name": source["name"], "seeds": len(curves), "at": {}}
    for m in marks:
        vals = [v for v in (at_step(c, m) for c in curves) if v is not None]
        out["at"][m] = (statistics.fmean(vals), min(vals), max(vals), len(vals)) if vals else None
    last3 = [statistics.fmean(r for _, _, r in c[-3:]) for c in curves if c]
    out["last3"] = statistics.fmean(last3)
    out["last_steps"] = min(c[-1][0] for c in curves if c)
    out["wall_s"] = statistics.fmean(c[-1][1] for c in curves if c)
    if reach is not None:
        hits = [h for h in (first_reach(c, reach) for c in curves) if h is not None]
        out["reach"] = (
            (statistics.fmean(s for s, _ in hits), statistics.fmean(w for _, w in hits), len(hits))
            if hits
            else None
        )
    return out


def mean_curve(curves: dict) -> list[tuple[int, float, float, float, float]]:
    """(env_steps, mean wall_s, mean, min, max) at the env steps every seed evaluated."""
    common = sorted(set.intersection(*(set(s for s, _, _ in c) for c in curves.values())))
    out = []
    for step in common:
        at = [next(x for x in c if x[0] == step) for c in curves.values()]
        rets = [r for _, _, r in at]
        out.append(
            (step, statistics.fmean(w for _, w, _ in at), statistics.fmean(rets), min(rets),
             max(rets))
        )  # fmt: skip
    return out


def markdown(task: str, sources: list[dict], marks: list[int], reach: float | None = None) -> str:
    rows = [summarize(s, marks, reach) for s in sources]
    lines = [
        f"# {task}: our agents beside Brax's SAC and PPO",
        "",
        f"`python benchmarks/compare.py --task {task} --at {','.join(map(str, marks))}"
        + ("" if reach is None else f" --reach {reach:g}")
        + "`, from "
        + ", ".join(f"`{s['file']}`" for s in sources)
        + ". Env steps are physics steps on both sides. Return at N: the evaluation nearest to "
        "N env steps (within 10%), mean (min-max) over seeds. Wall time: compile and evaluation "
        "included, on the machine named (these compare only on one machine and load).",
        "",
        "| source | seeds | "
        + " | ".join(f"return at {m:,}" for m in marks)
        + " | last-3 mean | last eval at | wall s | "
        + ("" if reach is None else f"first >= {reach:g}: env steps, wall s (seeds) | ")
        + "machine |",
        "|---|---|"
        + "---|" * len(marks)
        + "---|---|---|"
        + ("" if reach is None else "---|")
        + "---|",
    ]
    for row, src in zip(rows, sources, strict=True):
        cells = [
            "-"
            if row["at"][m] is None
            else f"{row['at'][m][0]:.0f} ({row['at'][m][1]:.0f}-{row['at'][m][2]:.0f})"
            for m in marks
        ]
        machine = f"{src['machine'].get('cpu', '?')} ({src['machine'].get('kind', '?')})"
        if reach is not None:
            r = row["reach"]
            got = "never" if r is None else f"{r[0]:,.0f}, {r[1]:.0f} ({r[2]}/{row['seeds']})"
            machine = f"{got} | {machine}"
        lines.append(
            f"| {row['name']} | {row['seeds']} | " + " | ".join(cells) + f" | {row['last3']:.0f} "
            f"| {row['last_steps']:,} | {row['wall_s']:.0f} | {machine} |"
        )
    return "\n".join(lines) + "\n"


def _label(src: dict) -> str:
    n = len(src["curves"])
    return f"{src['name']}, {n} seed{'s' if n > 1 else ''}"


def plot(task: str, sources: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for src in sources:
        curve = mean_curve(src["curves"])
        if not curve:
            continue
        steps, walls, mean, lo, hi = zip(*curve, strict=True)
        for ax, xs in zip(axes, (steps, walls), strict=True):
            (line,) = ax.plot(xs, mean, "o-", ms=3, label=_label(src))
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("env steps (physics)")
    axes[1].set_xlabel("wall seconds (compile and eval included)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{task}: mean over seeds, min-max band")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--at", default="100000", help="comma-separated env steps for the table")
    ap.add_argument("--reach", type=float, default=None, help="a return: when each first gets it")
    args = ap.parse_args(argv)
    marks = [int(x) for x in args.at.split(",") if x]
    sources = load_sources(args.task)
    if not sources:
        ap.error(f"no learning_*_{args.task}_cpu_*.json or brax_*_{args.task}_*.json in {RESULTS}")
    md = markdown(args.task, sources, marks, args.reach)
    (RESULTS / f"compare_{args.task}.md").write_text(md)
    plot(args.task, sources, RESULTS / f"compare_{args.task}.png")
    print(md)
    return md


if __name__ == "__main__":
    main()
