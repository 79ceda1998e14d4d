"""Learning benchmark: eval return against env steps and wall time (compile included), over seeds,
via the same code path as `wm train`. Run directories live under `runs/bench/` and are resumed
when the benchmark is started again (a long run can be stopped with Ctrl-C and continued);
`--fresh` starts them over. Writes
`benchmarks/results/learning_<agent>_<task>_cpu_<kind>.{json,md,png}`.

  python benchmarks/learning.py                                    # TD-MPC2, the default task
  python benchmarks/learning.py --env hopper --steps 100000 --seeds 0,1,2 --threshold 1000
  python benchmarks/learning.py --env dmc:cheetah-run --steps 100000 --num-seeds 3 \
      --eval-every 10000 --eval-episodes 10                         # 3 seeds in one program

`--seeds 0,1,2` trains the seeds one after another (a run directory each); `--num-seeds 3` trains
seeds `0..2` together in one vmapped program (`wm train --num-seeds 3`, one run directory), about
2x one seed's time on a CPU. `--set field=value` overrides a field of the agent's CPU preset (a
Python literal, e.g. `--set discount=0.99`), and `--tag` names the results file apart.

What is reported per seed (all from the logged evaluations):
  * `last3_mean`: the mean of the last three evaluations (what a user reads at the end);
  * `stays_above`: the first env step from which every later evaluation is >= `--threshold`;
  * `last_over_best`: the last evaluation over the best one (1.0: nothing was lost).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def display_name(label: str) -> str:
    """ "TD-MPC2" for the agent labelled "tdmpc2": the first word of its config's docstring."""
    from agents.config import agent_config_class

    try:
        return (agent_config_class(label).__doc__ or label).split()[0]
    except ValueError:
        return label


def evals_of(rows: list[dict]) -> list[dict]:
    """The rows that carry an evaluation, as `{env_steps, wall_s, eval/return}`."""
    keys = ("env_steps", "wall_s", "eval/return")
    return [{k: r[k] for k in keys} for r in rows if r.get("eval/return") is not None]


def first_reaching(evals: list[dict], threshold: float) -> dict | None:
    """The first evaluation at or above `threshold`."""
    return next((e for e in evals if e["eval/return"] >= threshold), None)


def stays_above(evals: list[dict], threshold: float) -> int | None:
    """The first env step from which every evaluation is >= `threshold` (None: never)."""
    start = None
    for e in evals:
        if e["eval/return"] >= threshold:
            start = e["env_steps"] if start is None else start
        else:
            start = None
    return start


def summarise(evals: list[dict], threshold: float) -> dict:
    """Per-seed figures of a run (see the module docstring)."""
    returns = [e["eval/return"] for e in evals]
    if not returns:
        return {"evals": 0}
    best = max(returns)
    reached = first_reaching(evals, threshold)
    return {
        "evals": len(returns),
        "final": returns[-1],
        "best": best,
        "last3_mean": statistics.fmean(returns[-3:]),
        "last_over_best": returns[-1] / best if best > 0 else None,
        "reached": reached and {"env_steps": reached["env_steps"], "wall_s": reached["wall_s"]},
        "stays_above": stays_above(evals, threshold),
    }


def bootstrap_ci(values: list[float], *, level: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """The percentile bootstrap confidence interval of the mean of `values` (over seeds).

    Resamples the values with replacement `resamples` times (a fixed numpy seed, so a results file
    is reproducible from its evaluations) and returns the `(1 - level) / 2` and `(1 + level) / 2`
    quantiles of the resampled means. With one value the interval is that value. With 3 seeds
    it can be no wider than [min, max] and is usually a little narrower.
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci of no values")
    means = np.random.default_rng(seed).choice(x, size=(resamples, x.size)).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def by_step(runs: dict[int, list[dict]]) -> list[dict]:
    """Mean, 95% bootstrap CI, min and max over seeds of the evaluations at each env step that
    every seed logged."""
    steps = sorted(set.intersection(*(set(e["env_steps"] for e in ev) for ev in runs.values())))
    table = []
    for s in steps:
        at = [next(e for e in ev if e["env_steps"] == s) for ev in runs.values()]
        vals = [e["eval/return"] for e in at]
        wall = statistics.fmean(e["wall_s"] for e in at)
        ci_lo, ci_hi = bootstrap_ci(vals)
        table.append(dict(env_steps=s, wall_s=wall, mean=statistics.fmean(vals), ci_lo=ci_lo,
                          ci_hi=ci_hi, lo=min(vals), hi=max(vals)))  # fmt: skip
    return table


def evals_per_seed(rows: list[dict], seeds: list[int]) -> dict[int, list[dict]]:
    """Each seed's evaluations from the rows of one run that trained `seeds` together
    (`eval/return_seeds` holds one return per seed, in seed order)."""
    runs = {seed: [] for seed in seeds}
    for r in rows:
        per_seed = r.get("eval/return_seeds")
        if per_seed is None:
            continue
        if len(per_seed) != len(seeds):
            raise ValueError(f"a row has {len(per_seed)} seeds' returns, expected {len(seeds)}")
        for seed, ret in zip(seeds, per_seed, strict=True):
            runs[seed].append({"env_steps": r["env_steps"], "wall_s": r["wall_s"],
                               "eval/return": ret})  # fmt: skip
    return runs


def plot(table: list[dict], runs: dict[int, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, x in zip(axes, ("env_steps", "wall_s"), strict=True):
        for seed, ev in runs.items():
            ax.plot([e[x] for e in ev], [e["eval/return"] for e in ev], "-", alpha=0.35,
                    label=f"seed {seed}")  # fmt: skip
        if table:
            xs = [r[x] for r in table]
            ax.plot(xs, [r["mean"] for r in table], "o-", color="k", label="mean")
            lo, hi = (
                [r.get(k, r[m]) for r in table] for k, m in (("ci_lo", "lo"), ("ci_hi", "hi"))
            )
            ax.fill_between(xs, lo, hi, alpha=0.15, label="95% CI")
        ax.set_xlabel("env steps" if x == "env_steps" else "wall seconds (compile included)")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(result: dict) -> str:
    t = result["threshold"]
    lines = [
        f"# Learning: {display_name(result['agent'])} on {result['task']} "
        f"({result['machine']['cpu']}, {result['machine']['cores']} cores)",
        "",
        f"`{result['command']}` ({result['date']}, commit {result['commit']}): `wm train` defaults "
        "otherwise. Env steps count physics steps (action repeat "
        f"{result['action_repeat']}); wall time includes compilation and evaluation."
        + _protocol(result),
        "",
        f"| seed | final | last-3 mean | best | last/best | first >= {t:g} | stays >= {t:g} from "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, s in result["seeds"].items():
        if not s.get("evals"):
            lines.append(f"| {seed} | no evaluation | | | | | | |")
            continue
        reached = f"{s['reached']['env_steps']:,}" if s["reached"] else "never"
        stays = f"{s['stays_above']:,}" if s["stays_above"] is not None else "never"
        ratio = f"{s['last_over_best']:.2f}" if s["last_over_best"] is not None else "-"
        lines.append(
            f"| {seed} | {s['final']:.0f} | {s['last3_mean']:.0f} | {s['best']:.0f} | {ratio} | "
            f"{reached} | {stays} | {result['wall_s'][seed]:.0f} |"
        )
    lines += [
        "",
        "| env steps | mean wall s | mean | 95% CI | min | max |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['env_steps']:,} | {r['wall_s']:.0f} | {r['mean']:.0f} | "
        + (f"{r['ci_lo']:.0f}-{r['ci_hi']:.0f}" if "ci_lo" in r else "-")
        + f" | {r['lo']:.0f} | {r['hi']:.0f} |"
        for r in result["by_step"]
    ]
    return "\n".join(lines) + "\n"


def _protocol(result: dict) -> str:
    """The sentence on seeds and evaluation, for results that record them."""
    p, n = result.get("eval_protocol"), result.get("num_seeds_together", 1)
    if p is None:
        return ""
    together = f" {n} seeds trained together in one program;" if n > 1 else ""
    over = f" agent config overrides {result['overrides']};" if result.get("overrides") else ""
    return (f"{together}{over} evaluation: {p['episodes']} episodes, {p['policy']}; CI: 95% "
            "percentile bootstrap of the mean over seeds.")  # fmt: skip


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_overrides(items: list[str]) -> dict:
    """`["discount=0.99", "horizon=3"]` as `{"discount": 0.99, "horizon": 3}` (Python literals).

    Raises:
      ValueError: an item is not `field=literal`.
    """
    import ast

    out = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise ValueError(f"--set takes field=value, got {item!r}")
        try:
            out[field] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(f"--set {item!r}: {value!r} is not a Python literal") from None
    return out


def main() -> None:
    from agents.bench import machine_info
    from agents.config import AGENT_CONFIGS, TrainConfig, agent_config_class
    from agents.metrics import MetricsLog
    from agents.run import run_training
    from agents.rundir import is_run_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    labels = [c.name for c in AGENT_CONFIGS]
    parser.add_argument("--agent", default=labels[0], choices=labels, help="default: %(default)s")
    parser.add_argument("--env", default=TrainConfig.env)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    seeds_help = "comma-separated seeds, run one after another (with --num-seeds: the first)"
    parser.add_argument("--seeds", default="0", help=seeds_help)
    parser.add_argument("--num-seeds", type=int, default=1,
                        help="seeds trained together in one vmapped program")  # fmt: skip
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--eval-episodes", type=int, default=TrainConfig.eval_episodes)
    parser.add_argument("--updates-per-step", type=int, default=None, help="default: the agent's")
    parser.add_argument("--obs", default="state", choices=["state", "pixels"])
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--threshold", type=float, default=950.0, help="the return to hold")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of the agent's CPU preset (repeatable)")  # fmt: skip
    parser.add_argument("--tag", default="", help="a suffix of the run directory and results file")
    parser.add_argument("--fresh", action="store_true", help="start existing run directories over")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.num_seeds > 1 and len(seeds) != 1:
        parser.error("--num-seeds trains seeds FIRST..FIRST+N-1 together: give one --seeds FIRST")
    overrides = parse_overrides(args.set)

    pixels = f"-pixels{args.image_size}" if args.obs == "pixels" else ""
    tag = f"-{args.tag}" if args.tag else ""
    runs, walls = {}, {}
    agent = agent_config_class(args.agent).cpu()  # what `wm train <agent>` starts from
    if args.updates_per_step is not None:
        overrides.setdefault("updates_per_step", args.updates_per_step)
    agent = dataclasses.replace(agent, **overrides)
    stem = f"{args.agent}-{args.env.replace(':', '-')}{pixels}"
    groups = (
        [(seeds[0], list(range(seeds[0], seeds[0] + args.num_seeds)))]
        if args.num_seeds > 1
        else [(seed, [seed]) for seed in seeds]
    )
    for first, group in groups:
        cfg = dataclasses.replace(
            TrainConfig(), agent=agent, env=args.env, steps=args.steps, seed=first,
            num_seeds=len(group), eval_every=args.eval_every, eval_episodes=args.eval_episodes,
            obs=args.obs, image_size=args.image_size,
        )  # fmt: skip
        name = f"seed{first}" if len(group) == 1 else f"seeds{group[0]}-{group[-1]}"
        out = Path("runs/bench") / f"{stem}{tag}-{name}"
        resume = is_run_dir(out) and not args.fresh
        print(f"{name}: {'continuing' if resume else 'training'} {out}", flush=True)
        run_training(None if resume else cfg, out, resume=resume, overwrite=not resume)
        rows = MetricsLog(out).rows()
        found = evals_per_seed(rows, group) if len(group) > 1 else {first: evals_of(rows)}
        for seed in group:
            runs[seed] = found[seed]
            walls[seed] = rows[-1]["wall_s"] if rows else 0.0

    from official import cpu_info  # vendor, family and model number: Zen 3 and Zen 4 differ

    cpu = cpu_info()
    info = dict(machine_info(), cpu_id={k: cpu[k] for k in ("vendor", "family", "model")})
    command = (
        f"python benchmarks/learning.py --agent {args.agent} --env {args.env} --steps {args.steps}"
        f" --seeds {args.seeds}"
        + (f" --num-seeds {args.num_seeds}" if args.num_seeds > 1 else "")
        + f" --eval-every {args.eval_every} --eval-episodes {args.eval_episodes}"
        f" --threshold {args.threshold:g}"
        + (f" --updates-per-step {args.updates_per_step}" if args.updates_per_step else "")
        + (f" --obs pixels --image-size {args.image_size}" if pixels else "")
        + "".join(f" --set {item}" for item in args.set)
        + (f" --tag {args.tag}" if args.tag else "")
    )
    table = by_step(runs)
    result = {
        "task": args.env,
        "agent": args.agent,
        "steps": args.steps,
        "action_repeat": TrainConfig().action_repeat,
        "num_seeds_together": args.num_seeds,
        "overrides": overrides,
        "eval_protocol": {
            "episodes": args.eval_episodes,
            "policy": "act(eval=True): no exploration noise (a planner still samples its "
            "candidates, as the official TD-MPC2's eval_mode does)",
            "return": "undiscounted sum of rewards over the episode, mean over the episodes",
        },
        "threshold": args.threshold,
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
        "commit": _commit(),
        "command": command,
        "seeds": {s: summarise(ev, args.threshold) for s, ev in runs.items()},
        "wall_s": walls,
        "by_step": table,
        "evals": runs,
        "obs": args.obs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = info["kind"].lower().replace("-", "")
    name = args.env.replace(":", "-") + pixels + (f"_{args.tag}" if args.tag else "")
    path = RESULTS / f"learning_{args.agent}_{name}_cpu_{kind}"
    path.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    title = f"{display_name(args.agent)} on {args.env}, seeds {sorted(runs)}"
    plot(table, runs, path.with_suffix(".png"), title)
    text = markdown(result)
    path.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
