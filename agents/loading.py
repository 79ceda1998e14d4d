"""A trained run, loaded to act: `load_run(run_dir)` restores its agent from the latest checkpoint.

The run directory holds everything needed (`config.json`, `checkpoints/`); what comes back is the
config, a fresh env of the run's kind, the agent (its pure functions) and the agent's state (its
parameters), so the trained policy can be run in your own loop:

    run = load_run("runs/inverted_pendulum-tdmpc2-seed0", num_envs=4)
    act = jax.jit(functools.partial(run.agent.act, eval=True))
    env_state = jax.jit(run.env.reset)(jax.random.key(0))
    carry = run.agent.initial_carry(run.agent_state, 4)
    carry, action, _ = act(run.agent_state, carry, env_state.obs, jnp.ones(4, bool), key)

A run trained with `--num-seeds N` holds N agents: `seed=k` picks the k-th (default 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax

from agents.checkpoint import Checkpointer
from agents.config import TrainConfig, make_agent
from agents.envs import make_env
from agents.rundir import RESUMABLE_FIELDS, config_to_dict, load_config
from agents.train import make_train, seed_keys
from agents.types import Agent, EnvSpec


class LoadedRun(NamedTuple):
    """A run restored to act (see the module docstring)."""

    cfg: TrainConfig
    env: Any  # a Brax-style env of `num_envs` parallel copies (`reset(key)`, `step(state, a)`)
    spec: EnvSpec
    agent: Agent
    agent_state: Any  # the agent's state (parameters, optimiser, ...) of the chosen seed
    env_steps: int  # env steps the checkpoint was trained for


def env_kwargs(cfg: TrainConfig) -> dict:
    """`make_env` keywords of a run's config (episode length, action repeat, backend, pixels)."""
    kw = dict(
        action_repeat=cfg.action_repeat, episode_length=cfg.episode_length, backend=cfg.backend
    )
    if cfg.obs == "pixels":
        kw.update(obs="pixels", image_size=cfg.image_size)
    return kw


def load_run(run_dir: str | Path, *, num_envs: int = 1, seed: int = 0) -> LoadedRun:
    """The latest checkpoint of `run_dir`, with an env of `num_envs` copies to act in.

    Raises FileNotFoundError when the directory has no config or no checkpoint, and
    `agents.rundir.RunDirError` for a directory of another format.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if not 0 <= seed < cfg.num_seeds:
        raise ValueError(f"seed={seed}: {run_dir} holds seeds 0..{cfg.num_seeds - 1}")
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        raise FileNotFoundError(f"{run_dir} has no checkpoint to load")
    env, spec = make_env(cfg.env, num_envs=cfg.num_envs, **env_kwargs(cfg))
    agent = make_agent(cfg.agent, spec)
    trainer = make_train(cfg, env, spec, agent)
    ckpt = Checkpointer(ckpt_dir, config=config_to_dict(cfg), ignore=RESUMABLE_FIELDS)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint to load")
        state, meta = ckpt.restore(jax.eval_shape(trainer.init, seed_keys(cfg)))
    finally:
        ckpt.close()
    agent_state = state.agent
    if cfg.num_seeds > 1:
        agent_state = jax.tree.map(lambda x: x[seed], agent_state)
    act_env, _ = make_env(cfg.env, num_envs=num_envs, **env_kwargs(cfg))
    return LoadedRun(cfg, act_env, spec, agent, agent_state, int(meta["env_steps"]))
