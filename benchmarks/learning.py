"""Learning benchmark: eval return against env steps and wall time (compile included), via the
same code path as `wm train`. Writes the run directories under `runs/bench/` and a summary to
`benchmarks/results/learning_<task>_<kind>.{json,md,png}`.

  python benchmarks/learning.py                                   # the default task
  python benchmarks/learning.py --env inverted_double_pendulum --steps 100000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from agents.bench import machine_info
from agents.metrics import MetricsLog, plot_curve
from agents.run import run_training
from agents.train import TrainConfig

RESULTS = Path(__file__).parent / "results"


def first_reaching(rows: list[dict], threshold: float) -> dict | None:
    for r in rows:
        if r.get("eval/return") is not None and r["eval/return"] >= threshold:
            return {"env_steps": r["env_steps"], "wall_s": r["wall_s"]}
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default=TrainConfig.agent, choices=["tdmpc2", "dreamer"])
    parser.add_argument("--env", default=TrainConfig.env)
    parser.add_argument(
        "--updates-per-step", type=int, default=None, help="default: the agent's own"
    )
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--obs", default="state", choices=["state", "pixels"])
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument(
        "--threshold", type=float, default=950.0, help="report when eval return reaches it"
    )
    args = parser.parse_args()

    cfg = dataclasses.replace(
        TrainConfig(),
        agent=args.agent,
        env=args.env,
        steps=args.steps,
        seed=args.seed,
        eval_every=args.eval_every,
        updates_per_step=args.updates_per_step,
        obs=args.obs,
        image_size=args.image_size,
    )
    pixels = f"-pixels{args.image_size}" if args.obs == "pixels" else ""
    out = Path("runs/bench") / f"{args.agent}-{args.env}{pixels}-seed{args.seed}"
    if out.exists():
        shutil.rmtree(out)
    start = time.time()
    run_training(cfg, out)
    total = time.time() - start
    rows = MetricsLog(out).rows()
    evals = [
        {"env_steps": r["env_steps"], "wall_s": r["wall_s"], "eval/return": r["eval/return"]}
        for r in rows
        if r.get("eval/return") is not None
    ]
    info = machine_info()
    result = {
        "task": args.env,
        "agent": cfg.agent,
        "seed": args.seed,
        "steps": args.steps,
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
        "total_wall_s": round(total, 1),
        "threshold": args.threshold,
        "reached": first_reaching(rows, args.threshold),
        "final_eval_return": evals[-1]["eval/return"] if evals else None,
        "evals": evals,
        "obs": args.obs,
        "command": f"python benchmarks/learning.py --agent {args.agent} --env {args.env} "
        f"--steps {args.steps} --eval-every {args.eval_every}"
        + (f" --updates-per-step {args.updates_per_step}" if args.updates_per_step else "")
        + (f" --obs pixels --image-size {args.image_size}" if pixels else ""),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = "learning" if args.agent == "tdmpc2" else f"learning_{args.agent}"
    stem = RESULTS / f"{prefix}_{args.env}{pixels}_cpu_{info['kind'].lower().replace('-', '')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    name = {"tdmpc2": "TD-MPC2", "dreamer": "Dreamer"}[args.agent]
    plot_curve(rows, stem.with_suffix(".png"), f"{name} on {args.env} ({info['cpu']}, 2 cores)")
    reached = result["reached"]
    lines = [
        f"# Learning: {name} on {args.env} ({info['cpu']}, {info['kind']}, {info['cores']} cores)",
        "",
        f"`{result['command']}` ({result['date']}): `wm train` defaults otherwise. Wall time "
        "includes compilation and evaluation.",
        "",
        f"- eval return >= {args.threshold:g}: "
        + (
            f"at **{reached['env_steps']:,} env steps, {reached['wall_s']:.0f} s**"
            if reached
            else "not reached"
        ),
        f"- final eval return {result['final_eval_return']}, whole run {total:.0f} s",
        "",
        "| env steps | wall s | eval return |",
        "|---|---|---|",
        *[f"| {e['env_steps']:,} | {e['wall_s']:.0f} | {e['eval/return']:.1f} |" for e in evals],
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
