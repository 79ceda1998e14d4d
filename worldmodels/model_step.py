"""From a `WorldModel` to the planners: a `StepFn` over `(latent, alive)` and its root/value/prior.

A planner scores an action sequence by the sum of its discounted rewards. With a model that
predicts terminations, a reward after a predicted termination must not count: the planning latent
is the pair `(latent, alive)`, `alive []` the product of the predicted continuations so far
(`StepOutput.cont`), and each step's reward and the terminal value are weighted by it. Roots start
alive (`model_root`); `model_value_fn` and `model_prior_fn` lift functions of the model latent to
the pair. Everything is for ONE trajectory (the planners `vmap` over samples and roots), so the
model's `imagine` is called on latents without a batch axis.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import worldmodels as wm
  >>> model = wm.make_tdmpc_model(wm.TDMPCConfig(latent_dim=16, mlp_dim=16, enc_dim=16, num_q=2),
  ...                             obs_size=4, action_size=1)
  >>> params = model.init(jax.random.key(0))
  >>> z = model.encode(params, jnp.zeros(4))                       # one root latent [L]
  >>> value = model_value_fn(lambda z, k: model.q(params, z, model.pi(params, z, k)[0], k))
  >>> plan = wm.mppi(jax.random.key(1), model_root(z), model_step_fn(model, params),
  ...                horizon=3, action_size=1, value_fn=value, num_samples=16, num_elites=4)
  >>> plan.action.shape, plan.value.shape
  ((1,), ())
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from worldmodels.types import Array, Latent, Params, PriorFn, PRNGKey, StepFn, ValueFn, WorldModel

PlanLatent = tuple  # `(latent, alive [])`: a model latent for one trajectory and its weight


def model_root(latent: Latent) -> PlanLatent:
    """The planning root of one model latent (leaves without a batch axis): `(latent, 1.0)`."""
    return latent, jnp.ones(())


def model_step_fn(model: WorldModel, params: Params) -> StepFn:
    """The planners' `StepFn` of a world model: one `model.imagine` on `(latent, alive)`.

    Args:
      model: any `WorldModel` (or a model NamedTuple extending it: `RSSMModel`, `TDMPCModel`).
      params: its parameters, closed over.

    Returns:
      `step_fn((latent, alive), action [A], key) -> ((latent', alive * cont), alive * reward)`
      for one trajectory: the reward of a step counts with the probability that the episode was
      still going before it, and every later reward and the terminal value are weighted by the
      predicted continuation `cont` of the new latent too.
    """

    def step_fn(state: PlanLatent, action: Array, key: PRNGKey) -> tuple[PlanLatent, Array]:
        latent, alive = state
        latent, out = model.imagine(params, latent, action, key)
        return (latent, alive * out.cont), alive * out.reward

    return step_fn


def model_value_fn(value_fn: Callable[[Latent, PRNGKey], Array]) -> ValueFn:
    """`value_fn(latent, key) -> []` of one model latent, as a planners' `ValueFn` on
    `(latent, alive)`: weighted by `alive`, so a trajectory predicted to have ended has none."""

    def value(state: PlanLatent, key: PRNGKey) -> Array:
        latent, alive = state
        return alive * value_fn(latent, key)

    return value


def model_prior_fn(prior_fn: Callable[[Latent, PRNGKey], Array]) -> PriorFn:
    """`prior_fn(latent, key) -> action [A]` of one model latent, as a planners' `PriorFn` on
    `(latent, alive)`."""

    def prior(state: PlanLatent, key: PRNGKey) -> Array:
        return prior_fn(state[0], key)

    return prior
