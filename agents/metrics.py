"""Run metrics on disk: `metrics.jsonl` (source of truth), `metrics.csv`, `curve.png`, and
optionally TensorBoard event files; `summarize` is what `wm train` prints at the end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402

# Per-seed values kept in a row of a several-seed run (beside their mean under the plain name).
PER_SEED = ("eval/return", "train/return")
# Summed over seeds, never absent.
COUNTS = ("updates", "nonfinite_updates", "train/episodes")


def drop_absent(metrics: dict) -> dict:
    """A chunk's metrics (scalars, or `[S]` per seed) without those of what did not happen in it.

    Absent (rather than the loop's placeholder) are `train/return` where no episode ended
    (`train/episodes == 0`; the loop reports 0 there) and, where no update ran (`updates == 0`),
    the update metrics, which the loop reports as NaN. Where updates ran, a NaN stays: it is a
    non-finite result, never hidden. With several seeds, a seed's absent value becomes NaN (which
    `reduce_seeds` skips) and a metric absent in every seed is dropped. Apply it before adding
    evaluation metrics: those always happened.
    """
    m, absent = dict(metrics), {}
    if "train/return" in m and "train/episodes" in m:
        absent["train/return"] = np.asarray(m["train/episodes"]) == 0
    if "updates" in m:
        no_updates = np.asarray(m["updates"]) == 0
        for k, v in m.items():
            v = np.asarray(v)
            if k not in COUNTS and k not in absent and np.issubdtype(v.dtype, np.floating):
                absent[k] = no_updates & np.isnan(v)
    for k, mask in absent.items():
        if mask.all():
            del m[k]
        elif mask.any():
            m[k] = np.where(mask, np.nan, np.asarray(m[k], np.float64))
    return m


def reduce_seeds(metrics: dict, num_seeds: int) -> dict:
    """One row's metrics from `[S]` per-seed values (`num_seeds = S > 1`; else unchanged).

    Every metric becomes its mean over the seeds (NaN seeds skipped); `eval/return` and
    `train/return` also keep the per-seed values (`<name>_seeds`, a list; a seed whose
    `train/return` is absent, NaN after `drop_absent`, is None there) and their spread
    (`<name>_seeds_std`, `_seeds_min`, `_seeds_max`, over the seeds that have one). Counts
    (`updates`, `nonfinite_updates`, `train/episodes`) are summed over the seeds.
    """
    if num_seeds == 1:
        return metrics
    counts = COUNTS
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v, dtype=np.float64 if k not in counts else None)
        out[k] = (
            int(v.sum())
            if k in counts
            else float(np.nanmean(v))
            if np.isfinite(v).any()
            else float("nan")
        )
        if k in PER_SEED:
            absent = k == "train/return"
            out[f"{k}_seeds"] = [None if absent and np.isnan(x) else float(x) for x in v]
            out[f"{k}_seeds_std"], out[f"{k}_seeds_min"], out[f"{k}_seeds_max"] = (
                float(f(v)) for f in (np.nanstd, np.nanmin, np.nanmax)
            )
    return out


class MetricsLog:
    """Appends one JSON object a line; rewrites the CSV and plot from it on demand.

    Every row has `env_steps` and `wall_s`. On resume, rows newer than the checkpoint are dropped so
    the log continues exactly where the restored state is. With `tensorboard`, every row written
    is also a set of TensorBoard scalars (step: env steps; its finite numbers) in event files in
    `run_dir`.
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool = False):
        self.dir = Path(run_dir)
        self.jsonl = self.dir / "metrics.jsonl"
        self.tensorboard, self._writer = tensorboard, None

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
        row.update(
            {k: v if isinstance(v, list) else np.asarray(v).item() for k, v in metrics.items()}
        )
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard:
            self._scalars(row)
        return row

    def _scalars(self, row: dict) -> None:
        if self._writer is None:
            from tensorboardX import SummaryWriter  # only for runs that ask for it

            self._writer = SummaryWriter(logdir=str(self.dir))
        for k, v in row.items():
            # Non-finite values stay in metrics.jsonl (tensorboardX prints a warning for each).
            if k not in ("env_steps", "wall_s") and isinstance(v, int | float) and math.isfinite(v):
                self._writer.add_scalar(k, v, global_step=row["env_steps"])
        self._writer.flush()  # a row at a time, so a run in progress can be watched

    def close(self) -> None:
        """Closes the TensorBoard event file, if one was opened."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

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


def plotted_rows(rows: list[dict], key: str) -> list[dict]:
    """The rows that have a finite `key` (absent, None or NaN values are not plotted)."""
    return [r for r in rows if isinstance(r.get(key), int | float) and np.isfinite(r[key])]


def plot_curve(rows: list[dict], path: Path, title: str = "") -> None:
    """Eval return (and train return, if logged) against env steps; for a several-seed run the
    mean over seeds with a band from the lowest to the highest seed, and each seed faintly."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key, style in (("eval/return", "o-"), ("train/return", "-")):
        pts = plotted_rows(rows, key)
        if not pts:
            continue
        xs = [r["env_steps"] for r in pts]
        line = ax.plot(xs, [r[key] for r in pts], style, label=key,
                       alpha=1.0 if key.startswith("eval") else 0.4)[0]  # fmt: skip
        if key.startswith("eval") and all(f"{key}_seeds" in r for r in pts):
            lo, hi = ([r[f"{key}_seeds_{b}"] for r in pts] for b in ("min", "max"))
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, label="seeds' range")
            for per_seed in zip(*(r[f"{key}_seeds"] for r in pts), strict=True):
                ax.plot(xs, per_seed, "-", color=line.get_color(), alpha=0.25, lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summarize(rows: list[dict], run_dir: Path, title: str = "") -> str:
    """A few lines on a finished (or stopped) run: final and best eval return with their env
    steps, wall time, env steps/s, and where its files are."""
    run_dir = Path(run_dir)
    if not rows:
        return f"{title or run_dir}: nothing logged yet"
    last = rows[-1]
    wall = last["wall_s"]
    hms = f"{int(wall // 3600)}:{int(wall % 3600 // 60):02d}:{wall % 60:04.1f}"
    sps = last["env_steps"] / wall if wall > 0 else float("nan")
    lines = [
        f"{title or run_dir}: {last['env_steps']:,} env steps in {hms} ({sps:,.0f} env steps/s)"
    ]
    evals = plotted_rows(rows, "eval/return")
    if evals:
        final, best = evals[-1], max(evals, key=lambda r: r["eval/return"])
        seeds = (
            f" (mean of {len(final['eval/return_seeds'])} seeds)"
            if "eval/return_seeds" in final
            else ""
        )
        lines.append(
            f"eval return{seeds}: final {final['eval/return']:.1f} at env step "
            f"{final['env_steps']:,}, best {best['eval/return']:.1f} at {best['env_steps']:,}"
        )
    else:
        lines.append("eval return: no finite evaluation yet")
    ckpt = run_dir / "checkpoints"
    steps = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()] if ckpt.is_dir() else []
    saved = f"latest env step {max(steps):,}" if steps else "none yet"
    lines.append(f"metrics: {run_dir / 'metrics.csv'} (plot: {run_dir / 'curve.png'})")
    lines.append(f"checkpoints: {ckpt} ({saved})")
    return "\n".join(lines)
