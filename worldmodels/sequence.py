"""Sequences through a `WorldModel`: posterior over observed steps, prior under a policy.

Each is one `lax.scan` over time (time-major `[T, B, ...]`) and works with any model that follows
`worldmodels.types.WorldModel` (RSSM, TD-MPC2, ...): the model is the first argument.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from worldmodels.rssm import RSSMConfig, make_rssm
  >>> model = make_rssm(RSSMConfig(deter=32, hidden=16, groups=4, classes=4, units=16, blocks=4))
  >>> params = model.init(jax.random.key(0), obs_size=5, action_size=2)
  >>> T, B = 6, 3
  >>> post, _ = observe_sequence(model, params, model.initial(params, B), jnp.zeros((T, B, 2)),
  ...                            jnp.zeros((T, B, 5)), jnp.zeros((T, B), bool), jax.random.key(1))
  >>> start = jax.tree.map(lambda x: x[-1], post)
  >>> policy = lambda latent, key: jnp.tanh(jax.random.normal(key, (B, 2)))
  >>> latents, actions, outs = imagine(model, params, start, policy, 4, jax.random.key(2))
  >>> latents.deter.shape, actions.shape, outs["reward"].shape
  ((4, 3, 32), (4, 3, 2), (4, 3))
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from worldmodels.types import Array, Latent, Params, PRNGKey, WorldModel


def observe_sequence(
    model: WorldModel,
    params: Params,
    latent: Latent,
    actions: Array,
    obs: Array,
    is_first: Array,
    key: PRNGKey,
) -> tuple[Latent, dict]:
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
      carry for the next chunk), and the per-step `out` dicts stacked `[T, ...]`.
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
) -> tuple[Latent, Array, dict]:
    """Prior rollout under a policy: `policy_fn` then `model.imagine`, `horizon` times in a scan.

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
      the model's `out` dicts stacked `[H, ...]` (`out['reward'] [H, B]`).
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"imagine: horizon must be an int >= 1, got {horizon!r}")

    def body(latent, step_key):
        policy_key, model_key = jax.random.split(step_key)
        action = policy_fn(latent, policy_key)
        latent, out = model.imagine(params, latent, action, model_key)
        return latent, (latent, action, out)

    _, (latents, actions, outs) = jax.lax.scan(body, latent, jax.random.split(key, horizon))
    return latents, actions, outs
