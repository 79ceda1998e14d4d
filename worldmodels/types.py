"""Shared types: the `WorldModel` contract and its `StepOutput`, the batch schema `Transition`,
planner output, and the step/value/prior protocols.

Everything here is a plain container or a protocol; behaviour lives in the `make_*` factories that
build them. A model factory (`make_rssm`, `make_tdmpc_model`) returns a NamedTuple whose leading
fields are `WorldModel`'s, in its order and with its types, followed by its own named parts (an
agent needs the TD-MPC2 Q and policy heads, the RSSM's features...): anything that takes a
`WorldModel` takes it, and `model.world_model` is the contract alone.

Shapes: `[B]` below is the leading batch axes; `imagine`, `transition` and `predict` accept any
leading axes `[...]` (none for one trajectory, as `model_step_fn` calls them; `[H, B]` for
`predict` after a scan, as `sequence.imagine` calls it).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
from flax import struct

Array = jax.Array
PRNGKey = jax.Array  # a typed key from `jax.random.key`
Params = Any  # a parameter pytree
Latent = Any  # a latent state pytree (one root, or batched with a leading axis)


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


@struct.dataclass
class Transition:
    """One agent step for a batch of envs (`[N, ...]`), or a sampled sequence (`[T, B, ...]`).

    The batch schema every model loss reads (`WorldModel.loss`); losses read the fields by
    attribute and check their shapes (`worldmodels.shapes.check_batch`), so any container with
    the fields a loss names works too.

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
    context: Context | None = None


@struct.dataclass
class StepOutput:
    """What a world model predicts for one step (for `[B]` latents; stacked `[T, B]` by scans).

    Attributes:
      reward: `[B]` the predicted reward of the step (the transition into the new latent).
      cont: `[B]` the probability that the episode goes on after the step (`1 - termination`;
        1 for a model of a task without terminations).
      extras: model-specific outputs, e.g. the RSSM's `'logits'` `[B, groups, classes]`;
        `{}` when there are none.
    """

    reward: Array
    cont: Array
    extras: dict = struct.field(default_factory=dict)


class InitFn(Protocol):
    """`(key) -> params`: fresh parameters (the sizes were given to the model's factory)."""

    def __call__(self, key: PRNGKey) -> Params: ...


class InitialFn(Protocol):
    """`(params, batch_size) -> latent [B, ...]`: the start state (`batch_size` a static int)."""

    def __call__(self, params: Params, batch_size: int) -> Latent: ...


class ObserveFn(Protocol):
    """One posterior step: `(params, latent, action, obs, is_first, key) -> (latent, out)`.

    `latent [B, ...]` the carry, `action [B, A]` the action taken from it, `obs [B, O]` (or
    `[B, H, W, C]`) what followed, `is_first [B]` bool (where true the carry restarts from the
    initial state and `action` is ignored; `out` there predicts a step that did not happen).
    Returns the posterior latent `[B, ...]` and a `StepOutput` with `[B]` fields.
    """

    def __call__(
        self, params: Params, latent: Latent, action: Array, obs: Array, is_first: Array,
        key: PRNGKey,
    ) -> tuple[Latent, StepOutput]: ...  # fmt: skip


class ImagineFn(Protocol):
    """One prior step: `(params, latent [B, ...], action [B, A], key) -> (latent, StepOutput)`.

    Equal to `transition` then `predict` on the same key.
    """

    def __call__(
        self, params: Params, latent: Latent, action: Array, key: PRNGKey
    ) -> tuple[Latent, StepOutput]: ...


class TransitionFn(Protocol):
    """The prior transition alone: `(params, latent [B, ...], action [B, A], key) -> latent`.

    No reward or continuation heads: a rollout runs this inside its scan and `predict` once on
    all steps afterwards (`sequence.imagine`), as `H`-times-larger matmuls outside the loop.
    """

    def __call__(self, params: Params, latent: Latent, action: Array, key: PRNGKey) -> Latent: ...


class PredictFn(Protocol):
    """The heads of one step: `(params, latent, action, next_latent) -> StepOutput`.

    `latent [..., ...]` before the step, `action [..., A]`, `next_latent` after it, any leading
    axes `[...]` (`[H, B]` after a scan); deterministic. Each model reads what it needs (TD-MPC2's
    reward reads `(latent, action)` and its termination `next_latent`; the RSSM's heads read
    `next_latent` alone).
    """

    def __call__(
        self, params: Params, latent: Latent, action: Array, next_latent: Latent
    ) -> StepOutput: ...


class LossFn(Protocol):
    """`(params, batch, key) -> (loss [], metrics)`: the model's training loss on a sequence batch.

    `batch` a `Transition` (or any container with the fields the model reads) with leaves
    `[T, B, ...]`; `metrics` a flat dict of `[]` floats.
    """

    def __call__(
        self, params: Params, batch: Transition, key: PRNGKey
    ) -> tuple[Array, dict[str, Array]]: ...


class WorldModel(NamedTuple):
    """A world model as a tuple of pure functions over a parameter pytree (see the module doc).

    Attributes:
      init: `InitFn`, `(key) -> params`.
      initial: `InitialFn`, `(params, batch_size) -> latent [B, ...]`.
      observe: `ObserveFn`, the posterior step `-> (latent, StepOutput)`.
      imagine: `ImagineFn`, the prior step `-> (latent, StepOutput)`; `transition` + `predict`.
      transition: `TransitionFn`, the prior step without heads `-> latent`.
      predict: `PredictFn`, the heads `(params, latent, action, next_latent) -> StepOutput`.
      loss: `LossFn`, `(params, batch: Transition, key) -> (loss [], metrics)`.
    """

    init: InitFn
    initial: InitialFn
    observe: ObserveFn
    imagine: ImagineFn
    transition: TransitionFn
    predict: PredictFn
    loss: LossFn


def as_world_model(model: Any) -> WorldModel:
    """The `WorldModel` fields of `model` (an `RSSMModel`, `TDMPCModel`, ...), alone."""
    return WorldModel(**{name: getattr(model, name) for name in WorldModel._fields})


class StepFn(Protocol):
    """One model step on one latent: `(latent, action [A], key) -> (latent, reward [])`.

    Planners `vmap` it over their samples, so write it for one trajectory. Learned or hand-written
    (`worldmodels.model_step_fn` makes one of a `WorldModel`).
    """

    def __call__(self, latent: Latent, action: Array, key: PRNGKey) -> tuple[Latent, Array]: ...


class ValueFn(Protocol):
    """Terminal value of a single latent: `(latent, key) -> value []`."""

    def __call__(self, latent: Latent, key: PRNGKey) -> Array: ...


class PriorFn(Protocol):
    """A policy prior for a single latent: `(latent, key) -> action [A]` in the action bounds."""

    def __call__(self, latent: Latent, key: PRNGKey) -> Array: ...


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
