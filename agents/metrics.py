"""Run metrics on disk: `metrics.jsonl` (source of truth), `metrics.csv` and `curve.png`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402


class MetricsLog:
    """Appends one JSON object a line; rewrites the CSV and plot from it on demand.

    Every row has `env_steps` and `wall_s`. On resume, rows newer than the checkpoint are dropped so
    the log continues exactly where the restored state is.
    """

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.jsonl = self.dir / "metrics.jsonl"

    def rows(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by an interruption
                continue
        return rows

    def truncate(self, env_steps: int | None) -> None:
        """Keep only rows at or before `env_steps` (resuming from a checkpoint); None keeps none
        (a run starting over: rows of an attempt killed before its first checkpoint go)."""
        if env_steps is None and not self.jsonl.exists():
            return
        kept = [r for r in self.rows() if env_steps is not None and r["env_steps"] <= env_steps]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, env_steps: int, wall_s: float, metrics: dict) -> dict:
        """Appends one row; a non-finite metric is written as JSON's NaN/Infinity, never hidden."""
        row = {"env_steps": int(env_steps), "wall_s": round(float(wall_s), 3)}
        row.update({k: np.asarray(v).item() for k, v in metrics.items()})  # ints stay ints
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def export(self, title: str = "") -> None:
        """Write `metrics.csv` (union of columns) and `curve.png` (eval return vs env steps)."""
        rows = self.rows()
        if not rows:
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with (self.dir / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        plot_curve(rows, self.dir / "curve.png", title)


def plot_curve(rows: list[dict], path: Path, title: str = "") -> None:
    """Eval return (and train return, if logged) against env steps."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key, style in (("eval/return", "o-"), ("train/return", "-")):
        pts = [(r["env_steps"], r[key]) for r in rows if r.get(key) is not None]
        if key == "train/return":
            pts = [(s, v) for (s, v), r in zip(pts, rows, strict=False) if v]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, style, label=key, alpha=1.0 if key.startswith("eval") else 0.4)
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
