"""The `wm` command: `wm train | eval | bench`, built by tyro from the config dataclasses.

wm train                                   # TD-MPC2 on inverted_pendulum, CPU-sized defaults
wm train --env hopper --steps 200000 --out runs/hopper --num-envs 8 --seed 1
wm train --tdmpc2.model.latent-dim 128 --tdmpc2.planner.num-samples 256
wm train --resume runs/hopper              # continue from the last checkpoint
wm eval runs/hopper                        # evaluate the trained agent alone
wm bench                                   # plan/update latency and env steps/s of a config
wm bench --agent dreamer                   # Dreamer: act, imagination and update speed
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import tyro

from agents.hostmem import tune_host_allocator
from agents.train import TrainConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train(TrainConfig):
    """Train an agent in a Brax environment; writes a run directory.

    Attributes:
      out: run directory (default runs/<env>-<agent>-seed<seed>); never overwritten silently.
      resume: continue the run in this directory from its last checkpoint (its saved config is
        used; only --steps, --eval-every and --checkpoint-every may change).
      overwrite: replace an existing run directory.
      progress: show a progress bar.
    """

    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    progress: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class Eval:
    """Evaluate the latest checkpoint of a run (writes <run>/eval.json).

    Attributes:
      run: run directory.
      episodes: evaluation episodes (default: the run's eval_episodes).
      seed: evaluation seed.
    """

    run: Annotated[str, tyro.conf.Positional]
    episodes: int | None = None
    seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bench(TrainConfig):
    """Measure the agent's speed (plan or act, imagination, update), env steps/s, train chunks.

    Attributes:
      repeats: timed calls per measurement (median reported).
      json_out: also write the results to this JSON file.
    """

    repeats: int = 10
    json_out: str | None = None


def _resume_dir(argv: list[str]) -> str | None:
    """The run directory of `wm train --resume DIR` (or `--resume=DIR`), else None."""
    if not argv or argv[0] != "train":
        return None
    for i, arg in enumerate(argv):
        if arg == "--resume" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--resume="):
            return arg.split("=", 1)[1]
    return None


def _from_saved(saved: dict) -> dict:
    """TrainConfig kwargs from a saved config dict (nested configs rebuilt)."""
    from agents.run import config_from_dict

    cfg = config_from_dict(TrainConfig, saved)
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}


def _train(cmd: Train) -> None:
    from agents.run import run_training

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: getattr(cmd, k) for k in fields})
    if cmd.resume:
        out = Path(cmd.resume)
    else:
        out = Path(cmd.out or f"runs/{cfg.env}-{cfg.agent}-seed{cfg.seed}")
    print(f"run directory: {out}", file=sys.stderr)
    last = run_training(
        cfg, out, resume=bool(cmd.resume), overwrite=cmd.overwrite, progress=cmd.progress
    )
    print(json.dumps(last))


def _eval(cmd: Eval) -> None:
    from agents.run import evaluate_run

    print(json.dumps(evaluate_run(cmd.run, episodes=cmd.episodes, seed=cmd.seed)))


def _bench(cmd: Bench) -> None:
    from agents.bench import bench_config

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: getattr(cmd, k) for k in fields})
    result = bench_config(cfg, repeats=cmd.repeats)
    text = json.dumps(result, indent=2)
    if cmd.json_out:
        Path(cmd.json_out).write_text(text + "\n")
    print(text)


def _enable_compile_cache() -> None:
    """Reuse XLA compilations across runs of the same config (set WM_JAX_CACHE="" to disable)."""
    path = os.environ.get("WM_JAX_CACHE", os.path.expanduser("~/.cache/worldmodels/jax"))
    if path:
        import jax

        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def parse(argv: list[str]) -> Train | Eval | Bench:
    """Parse `wm` arguments into a command; raises ValueError/FileNotFoundError on bad input."""
    resume = _resume_dir(argv)
    if resume is None:
        commands = {"train": Train, "eval": Eval, "bench": Bench}
        return tyro.extras.subcommand_cli_from_dict(
            commands, args=argv, description="worldmodels: model-based RL on Brax, on device."
        )
    # Flags not given keep the saved run's values, not the CLI defaults.
    from agents.run import load_config

    saved = dataclasses.asdict(load_config(resume))
    default = Train(**{**_from_saved(saved), "resume": resume})
    return tyro.cli(Train, args=argv[1:], default=default, prog="wm train")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `wm` command."""
    tune_host_allocator()  # before JAX starts its CPU threads (see agents.hostmem)
    try:
        cmd = parse(sys.argv[1:] if argv is None else list(argv))
    except (ValueError, FileNotFoundError) as e:  # config validation, or no run to resume
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    _enable_compile_cache()
    try:
        {Train: _train, Eval: _eval, Bench: _bench}[type(cmd)](cmd)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
