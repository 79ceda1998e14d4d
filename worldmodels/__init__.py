"""worldmodels: world models, rollouts and planners as pure JAX functions.

Imports jax, flax and optax only (never Brax, never `agents`). Every piece works on its own:

  >>> import jax, jax.numpy as jnp
  >>> import worldmodels as wm
  >>> def step_fn(latent, action, key):           # a point mass: any model works
  ...     pos, vel = latent
  ...     vel = vel + 0.1 * action[0]
  ...     return (pos + 0.1 * vel, vel), -(pos**2)
  >>> plan = wm.mppi(jax.random.key(0), (jnp.array(1.0), jnp.array(0.0)), step_fn,
  ...                horizon=5, action_size=1)
  >>> plan.action.shape
  (1,)
  >>> cfg = wm.MPPIConfig(horizon=5, num_samples=64, num_elites=8)   # the search, checked once
  >>> wm.mppi(jax.random.key(0), (jnp.array(1.0), jnp.array(0.0)), step_fn, cfg,
  ...         action_size=1).actions.shape
  (5, 1)
"""

from worldmodels import backend, dists, nets, returns, sequence
from worldmodels.model_step import model_prior_fn, model_root, model_step_fn, model_value_fn
from worldmodels.planning import (
    CEMConfig,
    GradientShootingConfig,
    MPPIConfig,
    RandomShootingConfig,
    cem,
    gradient_shooting,
    initial_plan,
    mppi,
    random_shooting,
    reset_plan,
)
from worldmodels.rollout import discounted_return, rollout, rollout_return
from worldmodels.rssm import RSSMModel, RSSMState, make_rssm
from worldmodels.rssm_config import RSSMConfig
from worldmodels.scan import hoisted_scan
from worldmodels.sequence import imagine, observe_sequence
from worldmodels.tdmpc import TDMPCConfig, TDMPCModel, make_tdmpc_model
from worldmodels.types import (
    Context,
    ImagineFn,
    InitFn,
    InitialFn,
    LossFn,
    ObserveFn,
    PlanOutput,
    PredictFn,
    PriorFn,
    StepFn,
    StepOutput,
    Transition,
    TransitionFn,
    ValueFn,
    WorldModel,
    as_world_model,
)

__all__ = [
    "CEMConfig",
    "GradientShootingConfig",
    "MPPIConfig",
    "Context",
    "ImagineFn",
    "InitFn",
    "InitialFn",
    "LossFn",
    "ObserveFn",
    "PlanOutput",
    "PredictFn",
    "PriorFn",
    "RSSMConfig",
    "RandomShootingConfig",
    "RSSMModel",
    "RSSMState",
    "StepFn",
    "StepOutput",
    "TDMPCConfig",
    "TDMPCModel",
    "Transition",
    "TransitionFn",
    "ValueFn",
    "WorldModel",
    "as_world_model",
    "backend",
    "cem",
    "discounted_return",
    "dists",
    "gradient_shooting",
    "hoisted_scan",
    "imagine",
    "initial_plan",
    "make_rssm",
    "make_tdmpc_model",
    "model_prior_fn",
    "model_root",
    "model_step_fn",
    "model_value_fn",
    "mppi",
    "nets",
    "observe_sequence",
    "random_shooting",
    "reset_plan",
    "returns",
    "rollout",
    "rollout_return",
    "sequence",
]
