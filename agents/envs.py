"""Brax environments, wrapped for training: episodes, action repeat, NaN guard, batched auto-reset.

`make_env(name, ...)` builds one of Brax's eleven locomotion/control envs and wraps it with our own
wrappers (Brax's `brax.envs.training.wrap` breaks on typed `jax.random.key`s, and
`brax.training` does not import on jax 0.10). The result has the Brax `Env` interface,
`reset(key) -> State` and `step(state, action) -> State`, on a batch of `num_envs` envs (every
leaf `[N, ...]`); `wrap_env` applies the same wrappers to any single (unbatched) Brax-style env.

What the wrapped `step` guarantees:
  * Action repeat: the action is applied `action_repeat` times; rewards are summed, and once an
    env is done within the repeat its state freezes and later rewards are not added.
  * Episodes: `episode_length` counts env steps of the underlying Brax env, as Brax's own
    `EpisodeWrapper` does (so one agent step counts `action_repeat`); an episode is truncated
    once the count reaches `episode_length`, i.e. after `ceil(episode_length / action_repeat)`
    agent steps (`EnvSpec.episode_length`).
  * NaN guard: a physics step that yields a non-finite observation or reward ends the episode as
    *terminated*; that step's reward counts 0 and the state (so `final_obs`) stays at the last
    finite one; the env is then auto-reset like any other finished episode.
  * Auto-reset: envs that are done are reset in the same call with a fresh key of their own
    (split from `info['key']`), never by replaying a cached first state. The reset runs only when
    some env in the batch is done (a `lax.cond` over the batch).
  * Strong dtypes: every leaf of the output has exactly the dtype (and no weak type) of the input
    state, so a jitted step or a `lax.scan` over steps compiles once.

`State.info` fields added (each `[N]` unless noted; `done` itself stays float32 as in Brax):
  * `final_obs` `[N, O]`: the observation the step ended on, before any auto-reset; equals `obs`
    unless the env was done and reset. Use it as `next_obs`.
  * `terminated` float32: 1 where the episode ended by failure (the env's own `done`, or the
    NaN guard): no bootstrapping.
  * `truncated` float32: 1 where it ended only by the time limit. `done = terminated | truncated`.
  * `steps` int32: underlying env steps taken in the current episode (0 right after a reset).
  * `episode_return` float32, `episode_length` int32 (agent steps): running totals of the current
    episode; on a done step they hold the totals of the episode that just ended.
  * `key` `[N]` typed key: the per-env key that the next auto-reset splits.
`reward` is the reward of the step just taken (of the finished episode's last step when done).

Pixels: `make_env(..., obs="pixels")` makes `obs` and `final_obs` `uint8 [N, S, S, 3]` frames,
drawn on device by `agents.render` (a JAX rasteriser of the system's geoms) once per agent step,
so collection stays inside the caller's `lax.scan`.

Backend: `positional` by default (2-2.6x faster than `generalized` on CPU, and
`inverted_pendulum` on `generalized` produces NaN); `swimmer` exists only on `generalized`.
Swimmer compatibility: `brax.fluid` calls `jnp.clip(x, a_min=...)`, which jax 0.10 removed; on
such a jax, `make_env` points `brax.fluid.jp` at a thin `jax.numpy` proxy whose `clip` still takes
`a_min`/`a_max` (`_patch_brax_fluid_clip`). Nothing else in Brax or jax is changed.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import warnings
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

# mujoco (imported by brax) prints "Failed to import warp" to stdout when the optional GPU
# package is absent; keep stdout clean for the `wm` command's JSON output.
with contextlib.redirect_stdout(io.StringIO()):
    from brax.envs import get_environment
    from brax.envs.base import Env, State

from agents import dmc
from agents.render import CAMERAS, make_renderer
from agents.types import EnvSpec, Transition
from agents.wrappers import ActionRepeatWrapper, AutoResetWrapper, EpisodeWrapper, PixelObsWrapper

ENV_NAMES = (
    "ant",
    "halfcheetah",
    "hopper",
    "humanoid",
    "humanoidstandup",
    "inverted_double_pendulum",
    "inverted_pendulum",
    "pusher",
    "reacher",
    "swimmer",
    "walker2d",
)
_GENERALIZED_ONLY = frozenset({"swimmer"})


def check_env_name(name: str) -> None:
    """ValueError unless `name` is one of `ENV_NAMES` or a DM Control task (`dmc:cheetah-run`)."""
    if dmc.is_dmc(name):
        dmc.playground_name(name)
    elif name not in ENV_NAMES:
        raise ValueError(
            f"unknown env {name!r}; valid names: {', '.join(ENV_NAMES)}, or a DM Control task "
            f"such as dmc:cheetah-run ({len(dmc.DMC_TASKS)} tasks, `agents.dmc.DMC_TASKS`)"
        )


def make_env(
    name: str,
    *,
    num_envs: int = 1,
    action_repeat: int = 1,
    episode_length: int = 1000,
    backend: str | None = None,
    obs: Literal["state", "pixels"] = "state",
    image_size: int = 64,
) -> tuple[Env, EnvSpec]:
    """Builds a batched, auto-resetting Brax env and its spec.

    Args:
      name: one of `ENV_NAMES`, or `dmc:<domain>-<task>` for a DM Control Suite task on MJX
        physics (`agents.dmc`; needs the `dmc` extra).
      num_envs: envs stepped together; every state leaf is `[num_envs, ...]`.
      action_repeat: underlying env steps per agent step.
      episode_length: time limit in underlying env steps (Brax's convention); the spec's
        `episode_length` is in agent steps, `ceil(episode_length / action_repeat)`.
      backend: Brax physics pipeline; None picks `positional`, or `generalized` for swimmer.
      obs: `"state"` (Brax's observation vector) or `"pixels"`: `uint8 [N, S, S, 3]` frames
        drawn on device by `agents.render` from the env's camera in `agents.render.CAMERAS`,
        once per agent step (after the action repeat); `info['final_obs']` is a frame too.
      image_size: `S`, the frame height and width, with `obs="pixels"`.

    Returns:
      `(env, spec)`: `env.reset(key) -> State` with `obs [N, O]` (or `[N, S, S, 3]`);
      `env.step(state, action [N, A]) -> State` with `reward, done [N]` float32 and the info
      fields listed in the module docstring.

    Raises:
      ValueError: unknown `name` (the message lists the valid ones), a non-positive size, or
        an unknown `obs`.

    Example:
      >>> env, spec = make_env("inverted_pendulum", num_envs=8)
      >>> state = jax.jit(env.reset)(jax.random.key(0))
      >>> state = jax.jit(env.step)(state, jnp.zeros((8, spec.action_size)))
    """
    check_env_name(name)
    _check_positive(num_envs=num_envs, action_repeat=action_repeat, episode_length=episode_length)
    if obs not in ("state", "pixels"):
        raise ValueError(f"obs must be 'state' or 'pixels', got {obs!r}")
    if dmc.is_dmc(name):
        if backend is not None:
            raise ValueError(f"env {name!r} runs on MJX only; got backend={backend!r}")
        if obs != "state":
            raise ValueError(f"env {name!r}: obs='pixels' is drawn for Brax systems only")
        core = dmc.load(name)
    else:
        if backend is None:
            backend = "generalized" if name in _GENERALIZED_ONLY else "positional"
        _patch_brax_fluid_clip()
        with warnings.catch_warnings():
            # Brax's notice that it is unmaintained, raised once per system load.
            warnings.filterwarnings("ignore", message="Brax System", category=UserWarning)
            core = get_environment(name, backend=backend)
    render = None
    if obs == "pixels":
        render = make_renderer(core.sys, CAMERAS[name], image_size)
    env = wrap_env(
        core,
        num_envs=num_envs,
        action_repeat=action_repeat,
        episode_length=episode_length,
        render=render,
    )
    obs_shape = jax.eval_shape(env.reset, jax.random.key(0)).obs.shape[1:]
    spec = EnvSpec(
        name=name,
        obs_size=math.prod(obs_shape),
        action_size=core.action_size,
        num_envs=num_envs,
        episode_length=-(-episode_length // action_repeat),
        action_repeat=action_repeat,
        image_shape=tuple(obs_shape) if render is not None else None,
    )
    return env, spec


def wrap_env(
    env: Env,
    *,
    num_envs: int,
    action_repeat: int,
    episode_length: int,
    render: Callable[[Any], jax.Array] | None = None,
) -> Env:
    """Wraps a single (unbatched) Brax-style env: action repeat, episodes, batched auto-reset.

    Args:
      env: `reset(key) -> State`, `step(state, action [A]) -> State` for one env; `done` marks
        termination by failure.
      num_envs, action_repeat, episode_length: as in `make_env`.
      render: `(pipeline_state) -> image`; when given, the observation is that image
        (`PixelObsWrapper`), rendered before any auto-reset so `final_obs` is the true last frame.

    Returns:
      The batched env described in the module docstring.
    """
    _check_positive(num_envs=num_envs, action_repeat=action_repeat, episode_length=episode_length)
    env = ActionRepeatWrapper(env, action_repeat)
    env = EpisodeWrapper(env, episode_length, action_repeat)
    if render is not None:
        env = PixelObsWrapper(env, render)
    return AutoResetWrapper(env, num_envs)


def step_transition(env: Env, state: State, action: jax.Array) -> tuple[State, Transition]:
    """Steps a wrapped env and packs the transition to store.

    Args:
      env: a wrapped env from `make_env`/`wrap_env`.
      state: its current State (leaves `[N, ...]`).
      action: `[N, A]`.

    Returns:
      `(new_state, Transition)` with leaves `[N, ...]`: `next_obs` is the true final observation
      where the episode ended (not the reset one), `reward` float32, `terminated`/`done` bool.
    """
    new_state = env.step(state, action)
    transition = Transition(
        obs=state.obs,
        action=action,
        reward=new_state.reward.astype(jnp.float32),
        next_obs=new_state.info["final_obs"],
        terminated=new_state.info["terminated"] > 0,
        done=new_state.done > 0,
    )
    return new_state, transition


def _check_positive(**sizes: int) -> None:
    for field, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")


class _ClipCompatNumpy:
    """`jax.numpy`, except that `clip` still accepts the `a_min`/`a_max` names `brax.fluid` uses."""

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def clip(x, min=None, max=None, *, a_min=None, a_max=None):  # jnp.clip's own names
        return jnp.clip(x, a_min if min is None else min, a_max if max is None else max)


def _patch_brax_fluid_clip() -> None:
    """Lets `brax.fluid` (swimmer's drag) run on a jax whose `jnp.clip` lost `a_min`/`a_max`.

    Only the module-level `jp` name inside `brax.fluid` is replaced; idempotent.
    """
    import brax.fluid

    if "a_min" in inspect.signature(jnp.clip).parameters:
        return
    if not isinstance(brax.fluid.jp, _ClipCompatNumpy):
        brax.fluid.jp = _ClipCompatNumpy()
