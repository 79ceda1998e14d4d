"""The wrappers behind `agents.envs.wrap_env`, innermost first, each a Brax `Wrapper`.

  * `ActionRepeatWrapper` (single env): the action `action_repeat` times, rewards summed until
    done, then the state frozen; the NaN guard (a non-finite observation or reward terminates
    the episode, keeping the last finite state).
  * `EpisodeWrapper` (single env): step counts, truncation at `episode_length` underlying env
    steps, the running episode return and length.
  * `PixelObsWrapper` (single env, optional): the observation replaced by a rendered frame.
  * `AutoResetWrapper`: the batch of `num_envs`, and done envs reset in the same call with fresh
    per-env keys (a `lax.cond`: only when some env is done), the finished step's outputs kept.
Every wrapper keeps each leaf's dtype strong and fixed, so a jitted step compiles once. The
guarantees of the composed `step` and the `State.info` fields it adds are listed in
`agents.envs`.

Example:
  >>> from agents.envs import make_env
  >>> env, _ = make_env("inverted_pendulum", num_envs=2)
  >>> type(env).__name__, type(env.env).__name__, env.num_envs
  ('AutoResetWrapper', 'EpisodeWrapper', 2)
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# mujoco (imported by brax) prints "Failed to import warp" to stdout when the optional GPU
# package is absent; keep stdout clean for the `wm` command's JSON output.
with contextlib.redirect_stdout(io.StringIO()):
    from brax.envs.base import Env, State, Wrapper

__all__ = ["ActionRepeatWrapper", "AutoResetWrapper", "EpisodeWrapper", "PixelObsWrapper"]

# Info fields describing the step just taken: an auto-reset keeps them from the finished episode.
_STEP_INFO = ("final_obs", "terminated", "truncated", "episode_return", "episode_length")


class ActionRepeatWrapper(Wrapper):
    """Single env: repeats the action, sums rewards until done, and guards against NaN physics.

    Adds `info['terminated']` (float32 `[]`): the env's own `done` or the NaN guard fired.
    """

    def __init__(self, env: Env, action_repeat: int):
        super().__init__(env)
        self.action_repeat = action_repeat

    def reset(self, rng: jax.Array) -> State:
        with _brax_numpy():
            state = _strong(self.env.reset(rng))
        return state.replace(info={**state.info, "terminated": jnp.zeros((), jnp.float32)})

    def step(self, state: State, action: jax.Array) -> State:
        def substep(carry, _):
            state, reward, stopped = carry
            # Fresh dicts: some Brax envs update `state.metrics` in place.
            given = state.replace(metrics=dict(state.metrics), info=dict(state.info))
            with _brax_numpy():
                new = _cast_like(self.env.step(given, action), state)
            finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new.obs)]
            bad = ~jnp.all(jnp.stack([*finite, jnp.isfinite(new.reward)]))
            # Once done (or broken) the state freezes, so the last good observation survives.
            freeze = stopped | bad
            state = jax.tree.map(lambda old, x: jnp.where(freeze, old, x), state, new)
            reward = reward + jnp.where(freeze, 0.0, new.reward)
            return (state, reward, stopped | bad | (new.done > 0)), None

        # Some envs (swimmer) never set `done` and would pass on the one from an auto-reset.
        state = state.replace(done=jnp.zeros_like(state.done))
        init = (state, jnp.zeros((), jnp.float32), jnp.zeros((), bool))
        (state, reward, stopped), _ = jax.lax.scan(substep, init, length=self.action_repeat)
        done = stopped.astype(jnp.float32)
        return state.replace(reward=reward, done=done, info={**state.info, "terminated": done})


class EpisodeWrapper(Wrapper):
    """Single env: counts steps, truncates at `episode_length`, tracks the episode's totals.

    Adds `info['steps']` (int32, underlying env steps), `info['truncated']` (float32),
    `info['episode_return']` (float32) and `info['episode_length']` (int32, agent steps).
    Expects `info['terminated']` from the env it wraps.
    """

    def __init__(self, env: Env, episode_length: int, action_repeat: int):
        super().__init__(env)
        self.episode_length = episode_length
        self.action_repeat = action_repeat

    def reset(self, rng: jax.Array) -> State:
        state = self.env.reset(rng)
        zero_i, zero_f = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        info = dict(steps=zero_i, truncated=zero_f, episode_return=zero_f, episode_length=zero_i)
        return state.replace(info={**state.info, **info})

    def step(self, state: State, action: jax.Array) -> State:
        fresh = state.info["steps"] == 0  # first step since a reset: restart the totals
        ret = jnp.where(fresh, 0.0, state.info["episode_return"])
        length = jnp.where(fresh, 0, state.info["episode_length"])
        state = self.env.step(state, action)
        steps = state.info["steps"] + self.action_repeat
        terminated = state.info["terminated"] > 0
        truncated = (steps >= self.episode_length) & ~terminated
        info = dict(
            steps=steps,
            truncated=truncated.astype(jnp.float32),
            episode_return=ret + state.reward,
            episode_length=length + 1,
        )
        done = (terminated | truncated).astype(jnp.float32)
        return state.replace(done=done, info={**state.info, **info})


class PixelObsWrapper(Wrapper):
    """Single env: replaces the observation by `render(state.pipeline_state)`.

    The env's own observation vector moves to `info['state_obs']`.

    Sits outside the action repeat (one frame per agent step; the NaN guard still checks the
    physics observation, whose last finite state the frame then shows) and inside the auto-reset
    (so a finished episode's `final_obs` is its own last frame).
    """

    def __init__(self, env: Env, render: Callable[[Any], jax.Array]):
        super().__init__(env)
        self.render = render

    def reset(self, rng: jax.Array) -> State:
        return self._show(self.env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        inner = state.replace(obs=state.info["state_obs"])  # the env below steps on its own obs
        return self._show(self.env.step(inner, action))

    def _show(self, state: State) -> State:
        info = {**state.info, "state_obs": state.obs}
        return state.replace(obs=self.render(state.pipeline_state), info=info)


class AutoResetWrapper(Wrapper):
    """Batches a single env over `num_envs` and resets done envs with fresh per-env keys.

    Adds `info['key']` (`[N]` typed keys) and `info['final_obs']` (`[N, O]`); keeps the
    `_STEP_INFO` fields, `reward`, `done` and `metrics` of the finished episode on reset envs.
    """

    def __init__(self, env: Env, num_envs: int):
        super().__init__(env)
        self.num_envs = num_envs

    @functools.cached_property
    def observation_size(self) -> int:
        # Brax's property runs a reset eagerly; tracing one is enough.
        return math.prod(jax.eval_shape(self.env.reset, jax.random.key(0)).obs.shape)

    def reset(self, rng: jax.Array) -> State:
        keys = jax.vmap(jax.random.split)(jax.random.split(rng, self.num_envs))  # [N, 2]
        state = jax.vmap(self.env.reset)(keys[:, 1])
        info = {**state.info, "key": keys[:, 0], "final_obs": state.obs}
        return _strong(state.replace(info=info))

    def step(self, state: State, action: jax.Array) -> State:
        stepped = jax.vmap(self.env.step)(state, action)
        stepped = stepped.replace(info={**stepped.info, "final_obs": stepped.obs})
        done = stepped.done > 0
        new = jax.lax.cond(
            jnp.any(done), functools.partial(self._reset_done, done), lambda s: s, stepped
        )
        return _cast_like(new, state)

    def _reset_done(self, done: jax.Array, state: State) -> State:
        """Replaces the envs where `done [N]` by fresh episodes, keeping the step's outputs."""
        keys = jax.vmap(jax.random.split)(state.info["key"])  # [N, 2]
        fresh = jax.vmap(self.env.reset)(keys[:, 1])
        kept = {name: state.info[name] for name in _STEP_INFO}
        fresh = fresh.replace(
            reward=state.reward,
            done=state.done,
            metrics=state.metrics,
            info={**fresh.info, **kept, "key": keys[:, 0]},
        )

        def select(x_fresh, x_old):
            mask = done.reshape(done.shape + (1,) * (x_old.ndim - 1))
            return jnp.where(mask, x_fresh, x_old)

        return jax.tree.map(select, fresh, state)


def _brax_numpy():
    """Brax's physics relies on NumPy rank promotion: allow it even under a strict caller."""
    return jax.numpy_rank_promotion("allow")


def _is_key(x: jax.Array) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


_SCALAR_DTYPES = {bool: jnp.bool_, int: jnp.int32, float: jnp.float32}


def _strong(tree):
    """Drops weak types: Brax steps emit Python-scalar-derived leaves that resets do not, and MJX
    keeps a few leaves as Python scalars (`Data.time` after a reset), made arrays here."""

    def strong(x):
        if type(x) in _SCALAR_DTYPES:
            return jnp.asarray(x, _SCALAR_DTYPES[type(x)])
        return x if _is_key(x) else jnp.asarray(x).astype(x.dtype)

    return jax.tree.map(strong, tree)


def _cast_like(tree, like):
    """Casts every leaf of `tree` to the (strong) dtype of the matching leaf of `like`."""
    if jax.tree.structure(tree) != jax.tree.structure(like):
        return _strong(tree)
    return jax.tree.map(
        lambda x, y: x if _is_key(y) else jnp.asarray(x).astype(y.dtype), tree, like
    )
