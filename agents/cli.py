"""The `wm` command: `wm train | eval | bench`, built by tyro from the config dataclasses.

wm train                                   # TD-MPC2 on inverted_pendulum, CPU-sized defaults
wm train --env hopper --steps 200000 --out runs/hopper --num-envs 8 --seed 1
wm train tdmpc2 --model.latent-dim 128 --planner.num-samples 256   # the agent's own flags
wm train dreamer --env inverted_pendulum   # another agent: a subcommand, with its flags only
wm train --resume runs/hopper              # continue from the last checkpoint
wm eval runs/hopper                        # evaluate the trained agent alone
wm eval runs/hopper --video hopper.gif     # a video of it acting (.gif, or .mp4 with ffmpeg)
wm bench                                   # act/update latency and env steps/s of a config
wm bench dreamer                           # the same for Dreamer

The agent is a subcommand of `train` and `bench` (default: tdmpc2), made from the agent config
types (`agents.config.AgentConfig`); each starts from its `cpu()` preset. Run-level flags may come
before or after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Union

import tyro

from agents.compile_cache import enable_compile_cache
from agents.config import AGENT_CONFIGS, TrainConfig
from agents.hostmem import tune_host_allocator


def _summary(cls) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


# One subcommand per agent, named by its label, starting from its CPU preset.
AgentChoice = Union[  # noqa: UP007 (a Union built from a tuple)
    tuple(
        Annotated[
            c,
            tyro.conf.subcommand(
                c.name,
                default=c.cpu(),
                description=f"{_summary(c)} Starts from `{c.__name__}.cpu()`.",
            ),
        ]
        for c in AGENT_CONFIGS
    )
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train(TrainConfig):
    """Train an agent in a Brax environment; writes a run directory.

    Attributes:
      agent: the agent, a subcommand whose flags start from its CPU preset (`cpu()`).
      out: run directory (default runs/<env>-<agent>-seed<seed>, or -seeds<first>-<last>);
        never overwritten silently.
      resume: continue the run in this directory from its last checkpoint (its saved config is
        used; only --steps, --eval-every and --checkpoint-every may change).
      overwrite: replace an existing run directory.
      progress: show a progress bar (on stderr).
      tensorboard: also write TensorBoard event files of the metrics into the run directory
        (`tensorboard --logdir runs`).
    """

    agent: AgentChoice = dataclasses.field(default_factory=AGENT_CONFIGS[0].cpu)
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    progress: bool = True
    tensorboard: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Eval:
    """Evaluate the latest checkpoint of a run (writes <run>/eval.json), or record a video of it.

    Attributes:
      run: run directory.
      episodes: evaluation episodes (default: the run's eval_episodes).
      seed: evaluation seed (also the video's).
      video: instead of evaluating, write a video of the policy acting to this .gif or .mp4
        file (drawn on device by agents.render; .mp4 needs the ffmpeg program).
      video_steps: agent steps in the video, one frame each.
      video_size: video frame height and width in pixels.
    """

    run: Annotated[str, tyro.conf.Positional]
    episodes: int | None = None
    seed: int = 0
    video: str | None = None
    video_steps: int = 200
    video_size: int = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bench(TrainConfig):
    """Measure the agent's speed (act, update), env steps/s and train chunks of a config.

    The run's flags are those that shape what is measured (env, envs, schedule, replay, ...).

    Attributes:
      agent: the agent, a subcommand whose flags start from its CPU preset (`cpu()`).
      repeats: timed calls per measurement (median reported).
      json_out: also write the results to this JSON file.
    """

    agent: AgentChoice = dataclasses.field(default_factory=AGENT_CONFIGS[0].cpu)
    repeats: int = 10
    json_out: str | None = None
    # A run's length, evaluations and checkpoints: no flags, `wm bench` measures none of them.
    steps: tyro.conf.Suppress[int] = TrainConfig.steps
    eval_every: tyro.conf.Suppress[int] = TrainConfig.eval_every
    eval_episodes: tyro.conf.Suppress[int] = TrainConfig.eval_episodes
    checkpoint_every: tyro.conf.Suppress[int] = TrainConfig.checkpoint_every


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


def _check_old_flags(argv: list[str]) -> None:
    """Names the new form of flags that earlier releases took (`--agent NAME`, `--tdmpc2.*`)."""
    labels = [c.name for c in AGENT_CONFIGS]
    for arg in argv[1:]:
        if arg == "--agent" or arg.startswith("--agent="):
            raise ValueError(
                f"{arg}: the agent is a subcommand now: `wm {argv[0]} <agent> [flags]` with "
                f"<agent> one of {', '.join(labels)} (e.g. `wm {argv[0]} dreamer --horizon 10`)"
            )
        prefix = arg[2:].split(".", 1)[0]
        if arg.startswith("--") and "." in arg and prefix in labels:
            raise ValueError(
                f"{arg}: agent flags have no prefix now and follow the agent's subcommand: "
                f"`wm {argv[0]} {prefix} --{arg[2:].split('.', 1)[1]} ...`"
            )


def _train(cmd: Train) -> None:
    from agents.metrics import MetricsLog, summarize
    from agents.run import run_training

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: getattr(cmd, k) for k in fields})
    if cmd.resume:
        if cmd.out is not None and Path(cmd.out).resolve() != Path(cmd.resume).resolve():
            raise ValueError(
                f"--out {cmd.out} and --resume {cmd.resume} name different directories: a resumed "
                "run stays in its own directory (drop --out)"
            )
        if cmd.overwrite:
            raise ValueError("--overwrite and --resume exclude each other")
        out = Path(cmd.resume)
    else:
        env = cfg.env.replace(":", "-")
        seeds = f"seed{cfg.seed}"
        if cfg.num_seeds > 1:
            seeds = f"seeds{cfg.seed}-{cfg.seed + cfg.num_seeds - 1}"
        out = Path(cmd.out or f"runs/{env}-{cfg.agent.name}-{seeds}")
    print(f"run directory: {out}", file=sys.stderr)
    run_training(
        cfg,
        out,
        resume=bool(cmd.resume),
        overwrite=cmd.overwrite,
        progress=cmd.progress,
        tensorboard=cmd.tensorboard,
    )
    print(summarize(MetricsLog(out).rows(), out, title=f"{cfg.agent.name} on {cfg.env}"))


def _eval(cmd: Eval) -> None:
    from agents.run import evaluate_run

    if cmd.video is not None:
        from agents.video import record_video

        v = record_video(
            cmd.run, cmd.video, steps=cmd.video_steps, size=cmd.video_size, seed=cmd.seed
        )
        print(
            f"wrote {v['video']}: {v['frames']} frames at {v['fps']:g} fps; return over the "
            f"video {v['return']:.1f} ({v['episodes']} episodes ended)"
        )
        return
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


COMMANDS = {"train": Train, "eval": Eval, "bench": Bench}
DESCRIPTION = (
    "worldmodels: model-based RL on Brax, on device. Errors are one line; --debug (anywhere on "
    "the line) or WM_DEBUG=1 also prints the traceback."
)


def parse(argv: list[str]) -> Train | Eval | Bench:
    """Parse `wm` arguments into a command; raises ValueError/FileNotFoundError on bad input."""
    if not argv or argv[0] not in COMMANDS:  # --help, or a missing or unknown subcommand
        return tyro.extras.subcommand_cli_from_dict(
            COMMANDS, args=argv, description=DESCRIPTION, prog="wm"
        )
    name, rest = argv[0], argv[1:]
    default = None
    resume = _resume_dir(argv)
    if resume is not None:  # flags not given keep the saved run's values, not the CLI defaults
        from agents.run import load_config

        saved = load_config(resume)
        fields = {f.name: getattr(saved, f.name) for f in dataclasses.fields(TrainConfig)}
        default = Train(**fields, resume=resume)
    # One subcommand parsed alone: tyro's subcommand wrapper would name nested fields in its
    # errors with an internal prefix (`__tyro-dummy-inner__.tdmpc2`).
    _check_old_flags(argv)
    config = (tyro.conf.OmitSubcommandPrefixes, tyro.conf.CascadeSubcommandArgs)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(
                COMMANDS[name], args=rest, default=default, prog=f"wm {name}", config=config
            )
    finally:
        sys.stderr.write(_point_hints_at(name, err.getvalue()))


def _point_hints_at(name: str, text: str) -> str:
    """tyro's error boxes with their "in wm <agent> --help" hints naming the command used
    (`wm train <agent> --help`): tyro keeps only the first word of the prog for them."""
    out = []
    for line in text.splitlines(keepends=True):
        fixed = re.sub(rf"\bin wm (?!{name}\b)", f"in wm {name} ", line)
        grown = len(fixed) - len(line)
        head, bar, tail = fixed.rpartition("│")  # keep a box's right edge where it was
        if grown and bar and head.endswith(" " * (grown + 1)):
            fixed = head[:-grown] + bar + tail
        out.append(fixed)
    return "".join(out)


# Exit codes: 2 for a bad command line, config or directory (nothing was run), 1 for a failure
# while running, 130 / 143 for SIGINT / SIGTERM (after the checkpoint was saved).
_USAGE_ERRORS = (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError)


def _error_message(error: BaseException) -> str:
    from agents.run import root_cause

    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    return text if text else root_cause(error)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `wm` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("WM_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    _setup_logging(debug)
    try:
        cmd = parse(argv)
        # Before JAX starts its CPU threads (parsing starts none), for agents it pays for.
        if getattr(getattr(cmd, "agent", None), "tune_host_allocator", False):
            tune_host_allocator()
        enable_compile_cache()  # agents.compile_cache, as run_training does
        {Train: _train, Eval: _eval, Bench: _bench}[type(cmd)](cmd)
    except SystemExit:
        raise
    except KeyboardInterrupt as e:
        from agents.run import Interrupted

        if isinstance(e, Interrupted):
            print("\n".join([str(e), *getattr(e, "__notes__", ())]), file=sys.stderr)
            raise SystemExit(128 + e.signum) from None
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:
        if debug:
            traceback.print_exc()
        usage = isinstance(e, _USAGE_ERRORS) and not _is_runtime_os_error(e)
        hint = "" if debug or usage else " (--debug shows the traceback)"
        notes = [f"  {note}" for note in getattr(e, "__notes__", ())]
        print("\n".join([f"error: {_error_message(e)}{hint}", *notes]), file=sys.stderr)
        raise SystemExit(2 if usage else 1) from None


def _setup_logging(debug: bool) -> None:
    """Warnings as one `warning:` line each; orbax's and absl's own chatter only with --debug.

    A checkpoint write that fails (a full disk) leaves orbax's other writes in flight: they fail
    after orbax closed its event loop, and Python would print each (hundreds of "Event loop is
    closed" tracebacks, "Task exception was never retrieved", "coroutine ... was never awaited")
    around the one error the user needs. Without --debug those echoes are dropped."""
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    if debug:
        return
    logging.getLogger("absl").setLevel(logging.CRITICAL)  # orbax logs failures with tracebacks
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
    default_hook = sys.unraisablehook
    if getattr(default_hook, "drops_closed_loop_echoes", False):
        return  # installed by an earlier call (main called twice in one process)

    def unraisable(info):
        if isinstance(info.exc_value, RuntimeError) and "Event loop is closed" in str(
            info.exc_value
        ):
            return
        default_hook(info)

    unraisable.drops_closed_loop_echoes = True
    sys.unraisablehook = unraisable


def _is_runtime_os_error(error: BaseException) -> bool:
    """An OSError from the disk (full, read-only) rather than a missing or existing path."""
    return isinstance(error, OSError) and not isinstance(
        error, FileExistsError | FileNotFoundError | NotADirectoryError
    )


if __name__ == "__main__":
    main()
