"""Shared types: the `WorldModel` contract, planner output, and the step/value/prior protocols.

Everything here is a plain container; behaviour lives in the `make_*` factories that build them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
from flax import struct

Array = jax.Array
PRNGKey = jax.Array  # a typed key from `jax.random.key`
Params = Any  # a parameter pytree
Latent = Any  # a latent state pytree (one root, or batched with a leading axis)


class StepFn(Protocol):
    """One model step on one latent: `(latent, action [A], key) -> (latent, reward [])`.

    Planners `vmap` it over their samples, so write it for one trajectory. Learned or hand-written.
    """

    def __call__(self, latent: Latent, action: Array, key: PRNGKey) -> tuple[Latent, Array]: ...


class ValueFn(Protocol):
    """Terminal value of a single latent: `(latent, key) -> value []`."""

    def __call__(self, latent: Latent, key: PRNGKey) -> Array: ...


class PriorFn(Protocol):
    """A policy prior for a single latent: `(latent, key) -> action [A]` in the action bounds."""

    def __call__(self, latent: Latent, key: PRNGKey) -> Array: ...


class WorldModel(NamedTuple):
    """A world model as a tuple of pure functions over a parameter pytree.

    Attributes:
      init: `(key, obs_size, action_size) -> params`.
      initial: `(params, batch_size) -> latent`, the start state for a batch.
      observe: `(params, latent, action, obs, is_first, key) -> (latent, out)`: one posterior step;
        `action [B, A]`, `obs [B, O]`, `is_first [B]` (resets the carry where true).
      imagine: `(params, latent, action, key) -> (latent, out)`: one prior step;
        `out['reward'] [B]`.
      loss: `(params, batch, key) -> (scalar, metrics)`.
    """

    init: Callable[..., Params]
    initial: Callable[..., Latent]
    observe: Callable[..., tuple[Latent, dict]]
    imagine: Callable[..., tuple[Latent, dict]]
    loss: Callable[..., tuple[Array, dict]]


@struct.dataclass
class PlanOutput:
    """What every planner returns for one root (leading batch axes added by `vmap`).

    Attributes:
      action: `[A]` the first action of the chosen sequence (no exploration noise added).
      actions: `[H, A]` the chosen action sequence.
      mean: `[H, A]` mean of the sampling distribution after the last iteration; a later call
        warm-starts from it shifted by one step (`prev=`).
      std: `[H, A]` standard deviation of the sampling distribution after the last iteration.
      value: `[]` the planner's estimate of the chosen sequence's return.
    """

    action: Array
    actions: Array
    mean: Array
    std: Array
    value: Array
