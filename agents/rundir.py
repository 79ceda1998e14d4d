"""A run directory on disk: its saved config, the checks before anything is written, replacement.

Nothing here deletes a directory a user owns. A directory counts as a run directory only if it
holds a `config.json` of a `wm` run (a JSON object with `env` and `agent`); only such a directory
is ever replaced, never the working directory, one of its parents, the home directory or `/`, and
the old run is moved aside first and deleted only once the new run has saved its first checkpoint
(`replace_run` / `ReplacedRun`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import typing
from pathlib import Path

from agents.checkpoint import diff_configs
from agents.config import TrainConfig, agent_config_class

# Config fields that may change between a run and its resume.
RESUMABLE_FIELDS = ("steps", "eval_every", "checkpoint_every")
CONFIG_FILE = "config.json"


class RunDirError(ValueError):
    """A run directory that cannot be used: not a run, not writable, or protected."""


def config_to_dict(cfg: TrainConfig) -> dict:
    """A config as JSON-able nested dicts; the agent's config is tagged with its agent's name
    (`{"agent": {"dreamer": {...}}}`), so that `config_from_dict` knows which one it was."""
    out = dataclasses.asdict(cfg)
    out["agent"] = {cfg.agent.name: out["agent"]}
    return out


def _agent_from_dict(data, where: str):
    """The agent config of a `{"<agent name>": {...}}` object (see `config_to_dict`)."""
    if isinstance(data, str):  # written before agents were chosen by config type (<= e561fee)
        raise ValueError(
            f"{where} is the name {data!r}: this run was written by an earlier release of "
            "worldmodels, which saved every agent's config beside the agent's name; this release "
            "saves the chosen agent's config alone and cannot resume it. Start a new run, or "
            "resume it with that release (git commit e561fee)"
        )
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError(f"{where} must be a JSON object with one key, the agent's name")
    ((name, fields),) = data.items()
    return config_from_dict(agent_config_class(name), fields, where=f"{where}.{name}")


def config_from_dict(cls, data: dict, *, where: str = ""):
    """Rebuild a (nested) frozen config dataclass from `config_to_dict` output.

    Every field must be present: a saved config missing a section is refused rather than filled
    with defaults (a run started with one preset must not resume with another's sizes).

    Raises:
      ValueError: unknown or missing fields (named with their dotted path), a section that is not
        an object, or a value the config's own validation refuses; a run directory written by an
        earlier release, whose format this one cannot read.
    """
    name = where or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be a JSON object, got {type(data).__name__}")
    if cls is TrainConfig and isinstance(data.get("agent"), str):
        _agent_from_dict(data["agent"], "agent")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown, missing = sorted(set(data) - set(fields)), [f for f in fields if f not in data]
    if unknown:
        raise ValueError(f"{name}: unknown config fields {unknown}")
    if missing:
        raise ValueError(f"{name}: missing config fields {missing}")
    kwargs = {}
    for key in fields:
        kind, value = hints[key], data[key]
        if cls is TrainConfig and key == "agent":
            value = _agent_from_dict(value, f"{where}{'.' if where else ''}{key}")
        elif dataclasses.is_dataclass(kind):
            value = config_from_dict(kind, value, where=f"{where}{'.' if where else ''}{key}")
        elif isinstance(value, list):  # JSON has no tuples; config sequences are tuples
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def load_config(run_dir: str | Path) -> TrainConfig:
    """The `TrainConfig` saved in `run_dir/config.json`.

    Raises:
      FileNotFoundError: no such file. ValueError: it is not valid JSON or not a complete, valid
        config; the message names the file and the field.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {path} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    try:
        return config_from_dict(TrainConfig, data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None


def save_config(run_dir: Path, cfg: TrainConfig) -> None:
    (run_dir / CONFIG_FILE).write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds the `config.json` of a `wm` run (a JSON object with env and agent)."""
    try:
        data = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"env", "agent"} <= data.keys()


def resume_config(out: Path, cfg: TrainConfig | None) -> TrainConfig:
    """The config to resume `out` with: the saved one, or `cfg` if only schedule fields differ.

    Raises:
      ValueError: `cfg` changes a field that fixes the run; every such field is named, dotted.
    """
    saved = load_config(out)
    if cfg is None:
        return saved
    diffs = diff_configs(config_to_dict(saved), config_to_dict(cfg), ignore=RESUMABLE_FIELDS)
    if diffs:
        changed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in diffs)
        raise ValueError(
            f"cannot change {changed} when resuming {out} (only "
            f"{', '.join(RESUMABLE_FIELDS)} may change); start a new run instead"
        )
    return cfg


def check_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Every check on the run directory that can fail, before anything is built or written.

    Raises:
      FileExistsError: `out` holds a run (and neither `resume` nor `overwrite`), or holds files
        that are not a run. RunDirError: `out` is protected, is a file, or cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a directory")
    if resume:
        _check_writable(out)
        return
    if out.is_dir() and any(out.iterdir()):
        if not is_run_dir(out):
            raise FileExistsError(
                f"{out} is not empty and is not a run directory (no {CONFIG_FILE} of a wm run "
                "in it); choose a new or empty directory for --out"
            )
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a run; pass --resume {out} to continue it or --overwrite "
                "to replace it"
            )
        protected = _protected(out)
        if protected:
            raise RunDirError(f"refusing to replace {out}: it is {protected}")
    _check_writable(out)


def _protected(path: Path) -> str | None:
    """Why `path` must never be replaced (None if it may be)."""
    path, cwd = path.resolve(), Path.cwd().resolve()
    if path == Path(path.anchor):
        return "the filesystem root"
    if path == Path.home().resolve():
        return "the home directory"
    if path == cwd or path in cwd.parents:
        return "the working directory or one of its parents"
    return None


def _check_writable(out: Path) -> None:
    """Creates (and removes) a probe file in `out`, or in its nearest existing parent."""
    target = out
    while not target.exists():
        target = target.parent
    if not target.is_dir():
        raise RunDirError(f"cannot create {out}: {target} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=target, prefix=".wm-write-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise RunDirError(f"cannot write to {target}: {e.strerror or e}") from None


@dataclasses.dataclass
class ReplacedRun:
    """An old run moved aside by `replace_run`: `discard` once the new run saved a checkpoint;
    `restore` puts it back if the new run failed before that."""

    out: Path
    aside: Path

    def discard(self) -> None:
        if self.aside.exists():
            shutil.rmtree(self.aside)

    def restore(self) -> None:
        if self.aside.exists():
            shutil.rmtree(self.out, ignore_errors=True)
            self.aside.rename(self.out)


def create_run(out: Path, cfg: TrainConfig, *, log=print) -> ReplacedRun | None:
    """Creates the run directory `out` with its config (after `check_out`).

    An existing run there (only with --overwrite; `check_out` refused anything else) is renamed
    to a hidden sibling; the returned `ReplacedRun` says where.
    """
    replaced = None
    if out.is_dir() and any(out.iterdir()):
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside = out.with_name(f".{out.name}.replaced-{stamp}")
        out.rename(aside)
        replaced = ReplacedRun(out=out, aside=aside)
        log(f"moved the old run to {aside}; it is deleted once this run saves a checkpoint")
    out.mkdir(parents=True, exist_ok=True)
    save_config(out, cfg)
    return replaced
