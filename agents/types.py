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
      image_shape: `(H, W, C)` when observations are uint8 images (`obs_size` is then
        `H * W * C`); None for flat vector observations.
      alive_bonus: the reward pays a fixed bonus for every step before a failure ends the
        episode, beside a progress term (Brax's ant, hopper, humanoid, walker2d): how long an
        episode lasts then trades against how fast the agent moves, which the discount decides
        (`agents.tdmpc2.episode_discount`).
    """

    name: str = struct.field(pytree_node=False)
    obs_size: int = struct.field(pytree_node=False)
    action_size: int = struct.field(pytree_node=False)
    num_envs: int = struct.field(pytree_node=False)
    episode_length: int = struct.field(pytree_node=False)
    action_repeat: int = struct.field(pytree_node=False)
    image_shape: tuple[int, int, int] | None = struct.field(pytree_node=False, default=None)
    alive_bonus: bool = struct.field(pytree_node=False, default=False)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation: `image_shape`, or `(obs_size,)` for vectors."""
        return self.image_shape or (self.obs_size,)


@struct.dataclass
class Transition:
    """One agent step for a batch of envs (`[N, ...]`), or a sampled sequence (`[T, B, ...]`).

    Attributes:
      obs: `[..., O]` the observation the action was taken from (`[..., H, W, C]` uint8 for
        pixel observations; `next_obs` likewise).
      action: `[..., A]`.
      reward: `[...]` summed over the action repeat.
      next_obs: `[..., O]` the observation after the step, the true final one when the episode
        ended (never the auto-reset observation).
      terminated: `[...]` bool: the episode ended by failure (no bootstrap).
      done: `[...]` bool: the episode ended (terminated or truncated by the time limit).
      context: None, or (for agents with `Agent.context`) a `Context` stored with the step: the
        agent's recurrent state at `obs`, refreshed by training (DreamerV3's replay context).
    """

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array
    done: Array
    context: Any = None


@struct.dataclass
class Context:
    """An agent's recurrent state at a stored step, `[...]` like the Transition it rides in.

    Attributes:
      value: pytree from `Agent.context` (e.g. the RSSM posterior latent of `obs`).
      first: bool: `value` is not to be trusted as a continuation (the step starts an episode, or
        it was collected with random actions, before the agent acted): start from scratch there.
    """

    value: Any
    first: Array


class Agent(NamedTuple):
    """An agent as pure functions.

    Attributes:
      init: `(key, env_spec) -> AgentState`.
      initial_carry: `(state, num_envs) -> carry`: the per-env acting carry (RNN latent, warm-start
        plan, ...).
      act: `(state, carry, obs [N, O], is_first [N], key, eval) -> (carry, action [N, A], info)`;
        `eval` is a static Python bool.
      update: `(state, batch, key) -> (AgentState, metrics)`; with `context`, it returns
        `(AgentState, metrics, new_value)`, `new_value` leaves `[T, B, ...]`: the refreshed
        `Context.value` of the step *after* each of the batch's steps (of its `next_obs`), which
        the train loop writes back into replay where that step continues the same episode.
      context: optional `(carry) -> value [N, ...]`: the recurrent state to store in replay with
        each step (`Transition.context`) so training can start a sequence from it (DreamerV3's
        replay context). None: nothing is stored.
    """

    init: Callable[..., AgentState]
    initial_carry: Callable[..., Any]
    act: Callable[..., tuple[Any, Array, dict]]
    update: Callable[..., tuple[AgentState, dict]]
    context: Callable[..., Any] | None = None
