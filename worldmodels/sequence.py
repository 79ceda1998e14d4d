"""Sequences through a `WorldModel`: posterior over observed steps, prior under a policy.

Each is one `lax.scan` over time (time-major `[T, B, ...]`) and works with any model that follows
`worldmodels.types.WorldModel` (RSSM, TD-MPC2, ...): the model is the first argument.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from worldmodels.rssm import RSSMConfig, make_rssm
  >>> cfg = RSSMConfig(deter=32, hidden=16, groups=4, classes=4, units=16, blocks=4)
  >>> model = make_rssm(cfg, obs_shape=5, action_size=2)
  >>> params = model.init(jax.random.key(0))
  >>> T, B = 6, 3
  >>> post, _ = observe_sequence(model, params, model.initial(params, B), jnp.zeros((T, B, 2)),
  ...                            jnp.zeros((T, B, 5)), jnp.zeros((T, B), bool), jax.random.key(1))
  >>> start = jax.tree.map(lambda x: x[-1], post)
  >>> policy = lambda latent, key: jnp.tanh(jax.random.normal(key, (B, 2)))
  >>> latents, actions, outs = imagine(model, params, start, policy, 4, jax.random.key(2))
  >>> latents.deter.shape, actions.shape, outs.reward.shape, outs.cont.shape
  ((4, 3, 32), (4, 3, 2), (4, 3), (4, 3))
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from worldmodels.types import Array, Latent, Params, PRNGKey, StepOutput, WorldModel


def observe_sequence(
    model: WorldModel,
    params: Params,
    latent: Latent,
    actions: Array,
    obs: Array,
    is_first: Array,
    key: PRNGKey,
) -> tuple[Latent, StepOutput]:
    """Posterior latents along an observed sequence: `model.observe` in one `lax.scan`.

    Args:
      model: any `WorldModel`.
      params: its parameters.
      latent: the carry before step 0, leaves `[B, ...]` (e.g. `model.initial(params, B)`, or
        the last latent of the previous chunk).
      actions: `[T, B, A]`, `actions[t]` the action *before* `obs[t]` (ignored where `is_first`).
      obs: `[T, B, O]`.
      is_first: `[T, B]` bool; where true the carry restarts from the model's initial state.
      key: consumed; split into one key per step.

    Returns:
      `(latents, outs)`: the posterior after each step, leaves `[T, B, ...]` (the last one is the
      carry for the next chunk), and the per-step `StepOutput`s stacked: `reward [T, B]`,
      `cont [T, B]`, extras `[T, B, ...]`.
    """

    def body(latent, inputs):
        action, ob, first, step_key = inputs
        latent, out = model.observe(params, latent, action, ob, first, step_key)
        return latent, (latent, out)

    keys = jax.random.split(key, actions.shape[0])
    _, (latents, outs) = jax.lax.scan(body, latent, (actions, obs, is_first, keys))
    return latents, outs


def imagine(
    model: WorldModel,
    params: Params,
    latent: Latent,
    policy_fn: Callable[[Latent, PRNGKey], Array],
    horizon: int,
    key: PRNGKey,
) -> tuple[Latent, Array, StepOutput]:
    """Prior rollout under a policy: `policy_fn` then `model.transition`, `horizon` times in a
    scan, then `model.predict` once on all `H * B` steps.

    Only the policy and the prior transition are sequential; the reward and continuation heads
    run after the loop as `H`-times-larger matmuls (on a CPU, Dreamer's imagination was measured
    faster so). The result equals `policy_fn` then `model.imagine` at every step, on the same
    keys: one key per step, split into `(policy key, model key)`.

    Args:
      model: any `WorldModel`.
      params: its parameters.
      latent: the start latents, leaves `[B, ...]` (e.g. flattened posteriors `[T * B, ...]`).
      policy_fn: `(latent [B, ...], key) -> action [B, A]`; stop gradients inside it if the
        policy should not backpropagate into the latents.
      horizon: number of imagined steps (a static int >= 1).
      key: consumed; one key per step, split between the policy and the model.

    Returns:
      `(latents, actions, outs)`: latents *after* each step, leaves `[H, B, ...]` (the start is
      not included); `actions [H, B, A]`, `actions[t]` taken from the latent before step `t`;
      `outs` the `StepOutput` of every step, `reward [H, B]`, `cont [H, B]`.
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"imagine: horizon must be an int >= 1, got {horizon!r}")

    def body(latent, step_key):
        policy_key, model_key = jax.random.split(step_key)
        action = policy_fn(latent, policy_key)
        latent = model.transition(params, latent, action, model_key)
        return latent, (latent, action)

    start = latent
    _, (latents, actions) = jax.lax.scan(body, start, jax.random.split(key, horizon))
    # The latents the actions were taken from; a model whose heads ignore them (the RSSM's) lets
    # XLA drop this copy.
    before = jax.tree.map(lambda s, x: jnp.concatenate([s[None], x[:-1]]), start, latents)
    return latents, actions, model.predict(params, before, actions, latents)
