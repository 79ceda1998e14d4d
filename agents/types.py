"""Agent-side containers: the `Agent` contract, the environment spec, and a stored transition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import struct

Array = jax.Array
AgentState = Any  # each agent defines its own `flax.struct.dataclass`


@struct.dataclass
class EnvSpec:
    """Static facts about a (wrapped, vectorised) environment.

    Attributes:
      name: Brax env name.
      obs_size: length of the flat observation vector.
      action_size: length of the action vector; actions live in [-1, 1].
      num_envs: number of environments stepped together.
      episode_length: maximum episode length in agent steps (after action repeat).
      action_repeat: physics steps per agent step.
    """

    name: str = struct.field(pytree_node=False)
    obs_size: int = struct.field(pytree_node=False)
    action_size: int = struct.field(pytree_node=False)
    num_envs: int = struct.field(pytree_node=False)
    episode_length: int = struct.field(pytree_node=False)
    action_repeat: int = struct.field(pytree_node=False)


@struct.dataclass
class Transition:
    """One agent step for a batch of envs (`[N, ...]`), or a sampled sequence (`[T, B, ...]`).

    Attributes:
      obs: `[..., O]` the observation the action was taken from.
      action: `[..., A]`.
      reward: `[...]` summed over the action repeat.
      next_obs: `[..., O]` the observation after the step, the true final one when the episode
        ended (never the auto-reset observation).
      terminated: `[...]` bool: the episode ended by failure (no bootstrap).
      done: `[...]` bool: the episode ended (terminated or truncated by the time limit).
    """

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array
    done: Array


class Agent(NamedTuple):
    """An agent as pure functions.

    Attributes:
      init: `(key, env_spec) -> AgentState`.
      initial_carry: `(state, num_envs) -> carry`: the per-env acting carry (RNN latent, warm-start
        plan, ...).
      act: `(state, carry, obs [N, O], is_first [N], key, eval) -> (carry, action [N, A], info)`;
        `eval` is a static Python bool.
      update: `(state, batch, key) -> (AgentState, metrics)`.
    """

    init: Callable[..., AgentState]
    initial_carry: Callable[..., Any]
    act: Callable[..., tuple[Any, Array, dict]]
    update: Callable[..., tuple[AgentState, dict]]
