"""A training run on disk: config, progress, metrics, evaluation, checkpoints, resume.

`run_training(cfg, out)` is what `wm train` does; `evaluate_run(run_dir)` is `wm eval`.
Layout of a run directory:
  config.json     the TrainConfig (resume reads it back)
  metrics.jsonl   one JSON object a line: env_steps, wall_s, eval/return, losses, ...
  metrics.csv     the same as a table
  curve.png       eval return against env steps
  checkpoints/    orbax checkpoints of the whole training state (verified by hashes)
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
import typing
from pathlib import Path

import jax
from tqdm import tqdm

from agents.checkpoint import Checkpointer
from agents.dreamer import make_dreamer
from agents.envs import make_env
from agents.metrics import MetricsLog
from agents.tdmpc2 import make_tdmpc2
from agents.train import TrainConfig, make_train

# Config fields that may change between a run and its resume.
RESUMABLE_FIELDS = ("steps", "eval_every", "checkpoint_every")


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(cls, data: dict):
    """Rebuild a (nested) frozen config dataclass from `config_to_dict` output."""
    hints = typing.get_type_hints(cls)
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config fields {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            value = config_from_dict(kind, value)
        elif isinstance(value, list):  # JSON has no tuples; config sequences are tuples
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def load_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {path} is missing")
    return config_from_dict(TrainConfig, json.loads(path.read_text()))


def build(cfg: TrainConfig):
    """Env, eval env, spec, agent and trainer for a config (compiles nothing)."""
    kw = dict(
        action_repeat=cfg.action_repeat, episode_length=cfg.episode_length, backend=cfg.backend
    )
    if cfg.obs == "pixels":
        kw.update(obs="pixels", image_size=cfg.image_size)
    env, spec = make_env(cfg.env, num_envs=cfg.num_envs, **kw)
    eval_env, _ = make_env(cfg.env, num_envs=cfg.eval_episodes, **kw)
    if cfg.agent == "tdmpc2":
        agent = make_tdmpc2(cfg.tdmpc2, spec)
    elif cfg.agent == "dreamer":
        agent = make_dreamer(cfg.dreamer, spec)
    else:
        raise ValueError(f"TrainConfig.agent: unknown agent {cfg.agent!r}")
    return spec, agent, make_train(cfg, env, spec, agent, eval_env)


def _prepare_dir(out: Path, cfg: TrainConfig, resume: bool, overwrite: bool) -> TrainConfig:
    if resume:
        saved = load_config(out)
        if cfg is None:
            return saved
        # Only the schedule may change on resume; anything else would not be the same run.
        fixed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in RESUMABLE_FIELDS]
        changed = [f for f in fixed if getattr(cfg, f) != getattr(saved, f)]
        if changed:
            raise ValueError(
                f"cannot change {', '.join(changed)} when resuming {out} (only "
                f"{', '.join(RESUMABLE_FIELDS)} may change); start a new run instead"
            )
        return cfg
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a run; pass --resume {out} to continue it or --overwrite "
                "to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
    return cfg


def run_training(
    cfg: TrainConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> dict:
    """Train (or resume) a run in `out`; returns the last logged row.

    Ctrl-C saves a checkpoint of the last finished chunk before exiting, so an interrupted run
    loses at most the chunk in flight; a killed one at most `checkpoint_every` env steps.
    """
    out = Path(out)
    cfg = _prepare_dir(out, cfg, resume, overwrite)
    cfg_json = config_to_dict(cfg)
    (out / "config.json").write_text(json.dumps(cfg_json, indent=2) + "\n")
    _, _, trainer = build(cfg)
    metrics = MetricsLog(out)
    ckpt = Checkpointer(
        out / "checkpoints", config=cfg_json, max_to_keep=2, ignore=RESUMABLE_FIELDS
    )
    state, wall0 = trainer.init(jax.random.key(cfg.seed)), 0.0
    if resume and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        wall0 = meta["wall_s"]
        metrics.truncate(meta["env_steps"])
        log(f"resumed {out} at env step {meta['env_steps']}")
    per = cfg.env_steps_per_agent_step
    env_steps = lambda: int(state.agent_steps) * per  # noqa: E731
    t0 = time.time() - wall0
    bar = tqdm(
        total=cfg.steps,
        initial=min(env_steps(), cfg.steps),
        unit="env step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    last, last_eval = {}, None
    saved_at = env_steps()

    def save(step_count):
        nonlocal saved_at
        ckpt.save(step_count, state, metadata={"env_steps": step_count, "wall_s": time.time() - t0})
        ckpt.wait()  # durable before the next chunk donates the state's buffers
        saved_at = step_count

    try:
        if env_steps() == 0 and cfg.seed_steps > 0:
            state, m = trainer.seed_chunk(state)
            last = metrics.write(env_steps(), time.time() - t0, jax.device_get(m))
            bar.update(env_steps())
        while env_steps() < cfg.steps:
            before, t_chunk = env_steps(), time.time()
            state, m = trainer.train_chunk(state)
            m, now = jax.device_get(m), env_steps()
            if now // cfg.eval_every > before // cfg.eval_every or now >= cfg.steps:
                key = jax.random.fold_in(jax.random.key(cfg.seed + 1), now)
                m.update(jax.device_get(trainer.evaluate(state.agent, key)))
            last = metrics.write(now, time.time() - t0, m)
            last_eval = last.get("eval/return", last_eval)
            bar.update(min(now, cfg.steps) - min(before, cfg.steps))
            sps = (now - before) / max(time.time() - t_chunk, 1e-9)  # this chunk, eval included
            shown = "-" if last_eval is None else f"{last_eval:.0f}"
            bar.set_postfix(sps=f"{sps:.0f}", eval=shown, refresh=False)
            if now // cfg.checkpoint_every > before // cfg.checkpoint_every or now >= cfg.steps:
                save(now)
    except KeyboardInterrupt:
        log(f"\ninterrupted: saving a checkpoint at env step {env_steps()}")
        if env_steps() > saved_at:
            try:
                save(env_steps())
            except RuntimeError as e:  # the state was donated to the chunk in flight
                log(f"could not save the in-flight state ({e}); last checkpoint: {saved_at}")
        raise
    finally:
        bar.close()
        ckpt.close()
        metrics.export(title=f"{cfg.agent} on {cfg.env}")
    return last


def evaluate_run(run_dir: str | Path, *, episodes: int | None = None, seed: int = 0) -> dict:
    """Load a run's latest checkpoint and evaluate its agent alone; writes `eval.json`."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if episodes is not None:
        cfg = dataclasses.replace(cfg, eval_episodes=episodes)
    _, _, trainer = build(cfg)
    ckpt = Checkpointer(
        run_dir / "checkpoints",
        config=config_to_dict(cfg),
        ignore=(*RESUMABLE_FIELDS, "eval_episodes"),
    )
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to evaluate")
    abstract = jax.eval_shape(trainer.init, jax.random.key(cfg.seed))
    state, meta = ckpt.restore(abstract)
    ckpt.close()
    result = jax.device_get(trainer.evaluate(state.agent, jax.random.key(seed)))
    result = {k: float(v) for k, v in result.items()}
    result.update(env_steps=meta["env_steps"], episodes=cfg.eval_episodes)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
