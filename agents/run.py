"""A training run on disk: config, progress, metrics, evaluation, checkpoints, resume.

`run_training(cfg, out)` is what `wm train` does; `evaluate_run(run_dir)` is `wm eval`.
Layout of a run directory:
  config.json     the TrainConfig (resume reads it back)
  metrics.jsonl   one JSON object a line: env_steps, wall_s, eval/return, losses, ...
  metrics.csv     the same as a table        (both rewritten at every evaluation: a run in
  curve.png       eval return against env steps    progress can be watched)
  events.out.tfevents.*   TensorBoard scalars of every row (with `tensorboard=True`)
  checkpoints/    orbax checkpoints of the whole training state (verified by hashes)

Everything that can fail (the config, the directory, building the env and agent) is checked
before anything is written. SIGINT (Ctrl-C) and SIGTERM (what a cluster scheduler sends) stop the
run at the end of the chunk in flight: its metrics row and any evaluation it crosses are written
and a checkpoint is saved, so the resumed run's metrics equal an uninterrupted run's. A second
signal stops at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np

from agents.checkpoint import Checkpointer
from agents.compile_cache import enable_compile_cache
from agents.config import TrainConfig, make_agent
from agents.envs import make_env
from agents.metrics import MetricsLog, drop_absent, reduce_seeds
from agents.progress import Progress
from agents.rundir import (
    RESUMABLE_FIELDS,
    check_out,
    config_from_dict,
    config_to_dict,
    create_run,
    load_config,
    resume_config,
)
from agents.train import eval_keys, make_train, seed_keys

__all__ = [
    "RESUMABLE_FIELDS",
    "Interrupted",
    "RunError",
    "build",
    "config_from_dict",
    "config_to_dict",
    "evaluate_run",
    "load_config",
    "run_training",
]


class RunError(RuntimeError):
    """A run that cannot go on (a failed checkpoint write, every update non-finite)."""


class Interrupted(KeyboardInterrupt):
    """The run in `out` stopped on a signal (`signum`: SIGINT or SIGTERM) after saving a
    checkpoint at `env_steps` (None: stopped before anything was trained)."""

    def __init__(self, signum: int, env_steps: int | None, out: Path):
        name = signal.Signals(signum).name
        saved = (
            "before its first checkpoint"
            if env_steps is None
            else (f"with a checkpoint at env step {env_steps}")
        )
        super().__init__(f"stopped by {name} {saved}; continue with: wm train --resume {out}")
        self.signum, self.env_steps, self.out = signum, env_steps, out


def build(cfg: TrainConfig):
    """Env, eval env, spec, agent and trainer for a config (compiles nothing)."""
    kw = dict(
        action_repeat=cfg.action_repeat, episode_length=cfg.episode_length, backend=cfg.backend
    )
    if cfg.obs == "pixels":
        kw.update(obs="pixels", image_size=cfg.image_size)
    env, spec = make_env(cfg.env, num_envs=cfg.num_envs, **kw)
    eval_env, _ = make_env(cfg.env, num_envs=cfg.eval_episodes, **kw)
    agent = make_agent(cfg.agent, spec)
    return spec, agent, make_train(cfg, env, spec, agent, eval_env)


class _StopSignals:
    """While active, the first SIGINT/SIGTERM only sets `signum` (the loop stops at the end of the
    chunk); a second raises KeyboardInterrupt at once. Outside the main thread it does nothing."""

    def __init__(self, log):
        self.log, self.signum, self._old = log, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.log(
            f"\n{signal.Signals(signum).name}: stopping after the chunk in flight, with a "
            "checkpoint (send it again to stop now)"
        )


def run_training(
    cfg: TrainConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: bool = False,
    log=print,
) -> dict:
    """Train (or resume) a run in `out`; returns the last logged row.

    `progress` shows a bar on stderr (`agents.progress`); `tensorboard` also writes every
    metrics row as TensorBoard scalars into `out` (`tensorboard --logdir out`).

    Compiled programs go to the same persistent cache as `wm train`'s
    (`agents.compile_cache.enable_compile_cache`), so a second run of a config starts at once.

    Raises:
      FileExistsError, FileNotFoundError, ValueError, agents.rundir.RunDirError: a bad config or
        directory, found before anything is written or compiled.
      Interrupted: a signal stopped the run after saving a checkpoint.
      RunError: a checkpoint could not be written, or every update of a chunk was non-finite.
    """
    enable_compile_cache()  # the CLI's persistent cache (unless one is configured already)
    out = Path(out)
    cfg = resume_config(out, cfg) if resume else cfg
    check_out(out, resume=resume, overwrite=overwrite)
    _, _, trainer = build(cfg)  # may fail: nothing has been written yet
    if cfg.final_env_steps != cfg.steps:
        log(_overshoot_note(cfg))
    replaced = None if resume else create_run(out, cfg, log=log)
    try:
        on_saved = replaced.discard if replaced else lambda: None
        loop = _Loop(cfg, out, trainer, progress, log, on_saved, tensorboard=tensorboard)
        return loop.run()
    except BaseException:
        if replaced is not None and replaced.aside.exists():  # no checkpoint of the new run yet
            replaced.restore()
            log(f"the new run saved nothing; the old run is back in {out}")
        raise


def _overshoot_note(cfg: TrainConfig) -> str:
    """Says where a run whose `steps` falls inside a chunk really ends (chunks are compiled whole,
    so the last one runs to its end)."""
    seed = f"a seed phase of {cfg.seed_env_steps} and " if cfg.seed_env_steps else ""
    return (
        f"note: steps={cfg.steps} falls inside a chunk, so the run ends at "
        f"{cfg.final_env_steps} env steps ({seed}{cfg.num_chunks} chunk"
        f"{'s' * (cfg.num_chunks != 1)} of "
        f"{cfg.env_steps_per_chunk} = chunk_steps {cfg.chunk_steps} x num_envs {cfg.num_envs} x "
        f"action_repeat {cfg.action_repeat})"
    )


class _Loop:
    """The chunk loop of one process: init or restore, chunks, metrics, evals, checkpoints."""

    def __init__(self, cfg, out: Path, trainer, progress: bool, log, on_saved, tensorboard=False):
        self.cfg, self.out, self.trainer, self.log, self.on_saved = cfg, out, trainer, log, on_saved
        self.progress, self.metrics = progress, MetricsLog(out, tensorboard=tensorboard)
        self.called = set()  # the jitted pieces called once: later calls compile nothing
        self.ckpt = Checkpointer(
            out / "checkpoints", config=config_to_dict(cfg), max_to_keep=2, ignore=RESUMABLE_FIELDS
        )
        self.last, self.last_eval = {}, None

    @property
    def env_steps(self) -> int:
        steps = np.ravel(jax.device_get(self.state.agent_steps))[0]  # equal across seeds
        return int(steps) * self.cfg.env_steps_per_agent_step

    def run(self) -> dict:
        try:
            with _StopSignals(self.log) as stop:
                self._start()
                if self.env_steps >= self.cfg.steps:
                    self.log(f"{self.out} is complete: {self.env_steps} of {self.cfg.steps} env "
                             "steps (pass a larger --steps to train on)")  # fmt: skip
                else:
                    self._train(stop)
        except BaseException as e:
            for note in self._close(failed=True):  # after the error, which stays the one shown
                e.add_note(note)
            raise
        self._close(failed=False)
        return self.last

    def _start(self) -> None:
        cfg = self.cfg
        self.state, wall0 = self.trainer.init(seed_keys(cfg)), 0.0
        if self.ckpt.latest_step() is not None:
            self.state, meta = self.ckpt.restore(self.state)
            wall0 = meta["wall_s"]
            self.metrics.truncate(meta["env_steps"])
            self.log(f"resumed {self.out} at env step {meta['env_steps']}")
        else:  # rows of an attempt killed before its first checkpoint would repeat
            self.metrics.truncate(None)
        rows = self.metrics.rows()
        self.last = rows[-1] if rows else {}
        self.last_eval = next((r["eval/return"] for r in rows[::-1] if "eval/return" in r), None)
        self.t0, self.saved_at = time.time() - wall0, self.env_steps
        self.has_checkpoint = self.ckpt.latest_step() is not None
        self.bar = Progress(
            cfg.final_env_steps, self.env_steps, enabled=self.progress, file=sys.stderr
        )
        self.bar.eval = self.last_eval  # a resumed run's, until its next evaluation

    def _call(self, what: str, fn, *args):
        """`fn(*args)` and whether this was its first call here (which compiles it: the bar says
        so meanwhile). The call returns once the program is compiled and dispatched."""
        first = what not in self.called
        self.called.add(what)
        with self.bar.phase(f"compiling {what}" if first else ""):
            return fn(*args), first

    def _train(self, stop: _StopSignals) -> None:
        cfg = self.cfg
        if self.env_steps == 0 and cfg.seed_steps > 0:
            t = time.time()
            (self.state, m), _ = self._call("prefill chunk", self.trainer.seed_chunk, self.state)
            with self.bar.phase("prefill (random actions)"):
                m = reduce_seeds(drop_absent(jax.device_get(m)), cfg.num_seeds)
            self.last = self.metrics.write(self.env_steps, time.time() - self.t0, m)
            self.bar.advance(self.env_steps, time.time() - t, rate=False)  # not training's rate
        while self.env_steps < cfg.steps and stop.signum is None:
            before = self.env_steps
            self._chunk()
            now = self.env_steps
            if now // cfg.checkpoint_every > before // cfg.checkpoint_every or now >= cfg.steps:
                self._save()
        if stop.signum is not None:
            if self.env_steps > self.saved_at:
                self._save()
            raise Interrupted(stop.signum, self.saved_at if self.has_checkpoint else None, self.out)

    def _chunk(self) -> None:
        """One train chunk, its evaluation if it crosses `eval_every`, and its metrics row."""
        cfg, before, t_chunk = self.cfg, self.env_steps, time.time()
        (self.state, m), compiled = self._call("train chunk", self.trainer.train_chunk, self.state)
        m, now = drop_absent(jax.device_get(m)), self.env_steps  # before the eval's metrics
        evaluated = now // cfg.eval_every > before // cfg.eval_every or now >= cfg.steps
        if evaluated:
            keys = eval_keys(cfg, now)
            result, first = self._call("evaluation", self.trainer.evaluate, self.state.agent, keys)
            with self.bar.phase("evaluating"):
                m.update(jax.device_get(result))
            compiled |= first
        per_seed, m = m, reduce_seeds(m, cfg.num_seeds)
        self.last = self.metrics.write(now, time.time() - self.t0, m)
        self.last_eval = self.last.get("eval/return", self.last_eval)
        if evaluated:  # the table and the plot so far, to watch the run by
            self._export()
        # The rate and ETA: chunks that compiled nothing, their evaluations included.
        self.bar.advance(now - before, time.time() - t_chunk, rate=not compiled,
                         eval_return=self.last.get("eval/return"))  # fmt: skip
        self._check_updates(per_seed, now)  # after its row is written: the log shows the chunk

    def _check_updates(self, m: dict, now: int) -> None:
        """Stops the run if, for some seed, every update of the chunk was non-finite."""
        totals, bads = (np.ravel(m.get(k, 0)) for k in ("updates", "nonfinite_updates"))
        hopeless = [i for i, (t, b) in enumerate(zip(totals, bads, strict=True)) if t and b == t]
        if hopeless:
            which = "" if self.cfg.num_seeds == 1 else f" of seed {self.cfg.seed + hopeless[0]}"
            total, bad = int(totals[hopeless[0]]), int(bads[hopeless[0]])
            raise RunError(
                f"every update{which} of the chunk ending at env step {now} ({bad} of {total}) "
                f"had a non-finite loss or result and was skipped; stopped without saving it "
                f"({self._last_checkpoint()})"
            )
        total, bad = int(totals.sum()), int(bads.sum())
        if bad:
            self.log(f"\nenv step {now}: {bad} of {total} updates were non-finite and skipped")

    def _save(self) -> None:
        step = self.env_steps
        meta = {"env_steps": step, "wall_s": time.time() - self.t0}
        try:
            self.ckpt.save(step, self.state, metadata=meta)
            self.ckpt.wait()  # durable before the next chunk donates the state's buffers
        except Exception as e:
            raise RunError(
                f"could not write the checkpoint of env step {step} to {self.ckpt.directory}: "
                f"{root_cause(e)} ({self._last_checkpoint()})"
            ) from e
        self.saved_at, self.has_checkpoint = step, True
        self.on_saved()

    def _last_checkpoint(self) -> str:
        if not self.has_checkpoint:
            return "no checkpoint was saved yet"
        return f"last checkpoint: env step {self.saved_at}, in {self.ckpt.directory}"

    def _close(self, failed: bool) -> list[str]:
        """Closes the bar, checkpointer and plots. After a failure their own errors are returned
        as one line each (notes to the first error, which stays the one the user sees)."""
        if hasattr(self, "bar"):
            self.bar.close()
        title, notes = f"{self.cfg.agent.name} on {self.cfg.env}", []
        for what, close in (
            ("closing the checkpoints", self.ckpt.close),
            ("writing metrics.csv and curve.png", lambda: self.metrics.export(title=title)),
            ("closing the TensorBoard events", self.metrics.close),
        ):
            try:
                close()
            except Exception as e:
                if not failed:
                    raise
                notes.append(f"also failed: {what}: {root_cause(e)}")
        return notes

    def _export(self) -> None:
        """Rewrites metrics.csv and curve.png; a failure mid-run is a warning (metrics.jsonl,
        the source of truth, has the row) and the next evaluation tries again."""
        try:
            self.metrics.export(title=f"{self.cfg.agent.name} on {self.cfg.env}")
        except OSError as e:
            self.log(f"\nwarning: could not write metrics.csv and curve.png: {root_cause(e)}")


def root_cause(error: BaseException) -> str:
    """The innermost error of a chain, as one line (an OSError with its errno and path)."""
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    for e in seen[::-1]:
        if isinstance(e, OSError) and e.strerror:
            where = f": {e.filename}" if e.filename else ""
            return f"{e.strerror}{where}"
    last = seen[-1]
    text = str(last).strip().splitlines()
    text = text[-1] if text else ""
    code = re.search(r"os_error_code='(\d+)'", text)  # tensorstore's report of an OS error
    if code:
        path = re.search(r'local file "([^"]+)"', text)
        return os.strerror(int(code.group(1))) + (f": {path.group(1)}" if path else "")
    return f"{type(last).__name__}: {text}"


def evaluate_run(run_dir: str | Path, *, episodes: int | None = None, seed: int = 0) -> dict:
    """Load a run's latest checkpoint and evaluate its agent alone; writes `eval.json`."""
    enable_compile_cache()
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if episodes is not None:
        cfg = dataclasses.replace(cfg, eval_episodes=episodes)
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        raise FileNotFoundError(f"{run_dir} has no checkpoint to evaluate")
    _, _, trainer = build(cfg)
    ckpt = Checkpointer(
        ckpt_dir, config=config_to_dict(cfg), ignore=(*RESUMABLE_FIELDS, "eval_episodes")
    )
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint to evaluate")
        state, meta = ckpt.restore(jax.eval_shape(trainer.init, seed_keys(cfg)))
    finally:
        ckpt.close()
    keys = seed_keys(dataclasses.replace(cfg, seed=seed))  # one evaluation key per seed
    result = reduce_seeds(jax.device_get(trainer.evaluate(state.agent, keys)), cfg.num_seeds)
    result = {k: v if isinstance(v, list) else float(v) for k, v in result.items()}
    result.update(env_steps=meta["env_steps"], episodes=cfg.eval_episodes)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
