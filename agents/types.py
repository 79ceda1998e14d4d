"""Agent-side containers: the `Agent` contract and the environment spec.

`Transition` and `Context`, the batch schema the models' losses read, live in `worldmodels.types`;
they are re-exported here, so `from agents.types import Transition` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import struct

from worldmodels.types import Context, Transition

__all__ = ["Agent", "AgentState", "Context", "DataSpec", "EnvSpec", "Transition", "UpdateOutput"]

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

    Nothing here is read from the env's name but `name` itself: an env a user wraps under any
    name gets exactly the settings a built-in one with the same sizes gets.
    """

    name: str = struct.field(pytree_node=False)
    obs_size: int = struct.field(pytree_node=False)
    action_size: int = struct.field(pytree_node=False)
    num_envs: int = struct.field(pytree_node=False)
    episode_length: int = struct.field(pytree_node=False)
    action_repeat: int = struct.field(pytree_node=False)
    image_shape: tuple[int, int, int] | None = struct.field(pytree_node=False, default=None)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation: `image_shape`, or `(obs_size,)` for vectors."""
        return self.image_shape or (self.obs_size,)


class DataSpec(NamedTuple):
    """What an agent's `update` trains on, declared by the agent (the loop reads nothing else).

    Attributes:
      seq_len: `T` of the `[T, B]` replay sequences one update takes.
      batch_size: `B`.
      cross_episodes: sequences may run past an episode's end (the agent masks or resets after a
        `done` itself); False: every sequence lies inside one episode.
      updates_per_step: updates after each vectorised env step (0: collect only).
    """

    seq_len: int
    batch_size: int
    cross_episodes: bool
    updates_per_step: int


class UpdateOutput(NamedTuple):
    """What every `Agent.update` returns.

    Attributes:
      state: the new agent state.
      metrics: `{name: [] array}`; names starting with `loss` are checked for finiteness by the
        loop (an update with a non-finite loss is skipped).
      context: None, or (agents with `Agent.context`) the refreshed `Context.value` of the step
        *after* each of the batch's steps (of its `next_obs`), leaves `[T, B, ...]`, which the
        loop writes back into replay where that step continues the same episode.
    """

    state: AgentState
    metrics: dict
    context: Any = None


class Agent(NamedTuple):
    """An agent as pure functions plus its data needs; the train loop knows only this.

    Attributes:
      data: `DataSpec`, the replay sequences `update` takes and its default update rate.
      init: `(key) -> AgentState` (the env spec was given to the factory).
      initial_carry: `(state, num_envs) -> carry`: the per-env acting carry (RNN latent, warm-start
        plan, ...).
      act: `(state, carry, obs [N, O], is_first [N], key, *, eval=False) -> (carry,
        action [N, A], info)`; `eval` is keyword-only and a static Python bool (no exploration
        noise when true).
      update: `(state, batch, key) -> UpdateOutput`: one update on a `[T, B]` `Transition` batch
        with `T, B = data.seq_len, data.batch_size`.
      context: optional `(carry) -> value [N, ...]`: the recurrent state to store in replay with
        each step (`Transition.context`) so training can start a sequence from it (DreamerV3's
        replay context). None: nothing is stored.
    """

    data: DataSpec
    init: Callable[..., AgentState]
    initial_carry: Callable[..., Any]
    act: Callable[..., tuple[Any, Array, dict]]
    update: Callable[..., UpdateOutput]
    context: Callable[..., Any] | None = None
