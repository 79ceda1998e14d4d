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

__all__ = ["Agent", "AgentState", "Context", "EnvSpec", "Transition", "check_spec_sizes"]

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


def check_spec_sizes(env_spec: EnvSpec, built_for: EnvSpec) -> None:
    """Raises unless `env_spec` has the observation and action sizes an agent was built for.

    An agent's model is sized when `make_<agent>(cfg, spec)` builds it; `Agent.init` still takes
    the spec (the loop passes it) and checks it with this.
    """
    got = (env_spec.obs_shape, env_spec.action_size)
    want = (built_for.obs_shape, built_for.action_size)
    if got != want:
        raise ValueError(
            f"Agent.init: env_spec has (obs_shape, action_size) {got}, but the agent was built "
            f"for {want}: build it with make_<agent>(cfg, env_spec)"
        )


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
