"""Dreamer's behaviour: an actor and a critic learned in the RSSM's imagination.

`make_actor_critic(cfg, model, action_size)` builds both networks on the model's features
`model.feat(latent)` and `gradients`, steps 2-5 of a Dreamer update (`agents.dreamer`): imagine
`cfg.horizon` prior steps under the actor from every start latent, take the lambda-returns of the
predicted rewards bootstrapped with the critic (`worldmodels.returns`), and return the actor's and
the critic's gradients. The actor is a Gaussian (`tanh`ed mean, std in `[min_std, max_std]`),
trained by one of (`DreamerConfig.actor_grad`):
  * `"reinforce"` (DreamerV3): REINFORCE with advantages `(R - v) / max(1, P95 - P5)`, the
    percentiles an EMA over updates; no gradient flows through the imagination;
  * `"dynamics"` (Dreamer v1): the normalised returns maximised by backpropagation through the
    imagined rollout;
both with an entropy bonus. The critic is two-hot over the model's symlog bins, trained by
cross-entropy towards the lambda-returns plus the same towards the slow critic's values (the
regulariser). Every loss weights imagined state `t` by `discount_weights` (the discount and the
predicted probability that the episode is still going).

Example:
  >>> import jax
  >>> from agents.dreamer import DreamerConfig
  >>> from worldmodels.rssm import make_rssm
  >>> cfg = DreamerConfig.tiny()
  >>> model = make_rssm(cfg.model, obs_shape=4, action_size=1)
  >>> ac = make_actor_critic(cfg, model, action_size=1)
  >>> latent = model.initial(model.init(jax.random.key(0)), 3)
  >>> mean, std = ac.policy(ac.actor.init(jax.random.key(1)), latent)
  >>> mean.shape, std.shape, ac.value(ac.critic.init(jax.random.key(2)), model.feat(latent)).shape
  ((3, 1), (3, 1), (3,))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from worldmodels import dists
from worldmodels.nets import Net, norm_mlp
from worldmodels.returns import discount_weights, lambda_returns, return_scale, update_retnorm
from worldmodels.sequence import imagine

if TYPE_CHECKING:  # the config stays beside the agent it configures
    from agents.dreamer import DreamerConfig
    from worldmodels.rssm import RSSMModel

sg = jax.lax.stop_gradient
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class ActorCritic(NamedTuple):
    """Dreamer's actor and critic as pure functions (`make_actor_critic`).

    Attributes:
      actor, critic: the networks' `init/apply` on features `[..., F]`; the actor outputs the
        Gaussian's `2 * A` parameters, the critic `num_bins` two-hot logits.
      policy: `(actor_params, latent [...]) -> (mean [..., A], std [..., A])`;
        `policy.on_feat(actor_params, feat [..., F])` is the same on features.
      value: `(critic_params, feat [..., F]) -> [...]` the critic's value.
      policy_fn: `(actor_params) -> ((latent [N], key) -> action [N, A])`, the actor as
        `worldmodels.sequence.imagine` samples it.
      gradients: `(params, model_params, slow_critic, retnorm, start, cont0, key) ->
        (actor_grads, critic_grads, retnorm, metrics)`: with `params` holding `"actor"` and
        `"critic"`, `retnorm [2]` the EMA of the return percentiles, `start` the `RSSMState`
        `[N, ...]` imagination starts and `cont0 [N]` their `1 - terminated`.
    """

    actor: Net
    critic: Net
    policy: Callable
    value: Callable
    policy_fn: Callable
    gradients: Callable


def make_actor_critic(cfg: DreamerConfig, model: RSSMModel, action_size: int) -> ActorCritic:
    """Build the actor, the critic and their gradients for `cfg` on `model`'s features."""
    m = cfg.model
    mlp = dict(norm=m.norm, act=m.act)
    hidden = (cfg.units,) * cfg.layers
    actor = norm_mlp(model.feat_size, hidden, 2 * action_size, out_scale=0.01, **mlp)
    critic = norm_mlp(model.feat_size, hidden, m.num_bins, out_scale=0.0, **mlp)
    bins = dict(num_bins=m.num_bins, vmin=m.vmin, vmax=m.vmax)

    def on_feat(actor_params, feat):
        mean, std = jnp.split(actor.apply(actor_params, feat), 2, axis=-1)
        return jnp.tanh(mean), (cfg.max_std - cfg.min_std) * jax.nn.sigmoid(std + 2.0) + cfg.min_std

    def policy(actor_params, latent):
        """`(mean [..., A], std [..., A])` of the actor's Gaussian at `latent`."""
        return on_feat(actor_params, model.feat(latent))

    policy.on_feat = on_feat

    def value(critic_params, feat):
        return dists.two_hot_inv(critic.apply(critic_params, feat), **bins)

    policy_fn = _make_policy_fn(cfg, policy)
    gradients = _make_gradients(cfg, model, policy, policy_fn, critic, value)
    return ActorCritic(actor, critic, policy, value, policy_fn, gradients)


def _make_policy_fn(cfg: DreamerConfig, policy):
    """The actor as `sequence.imagine`'s `policy_fn(latent [N], key) -> action [N, A]`: a sample
    of its Gaussian; with REINFORCE, no gradient flows into the latents or out of the action."""
    dynamics = cfg.actor_grad == "dynamics"

    def policy_fn(actor_params):
        def sample(latent, key):
            mean, std = policy(actor_params, latent if dynamics else sg(latent))
            action = mean + std * jax.random.normal(key, mean.shape)
            return action if dynamics else sg(action)

        return sample

    return policy_fn


def _make_gradients(cfg: DreamerConfig, model, policy, policy_fn, critic: Net, value):
    """`ActorCritic.gradients` for `cfg.actor_grad`."""
    bins = dict(num_bins=cfg.model.num_bins, vmin=cfg.model.vmin, vmax=cfg.model.vmax)

    def loss_weight(cont0, cont):
        """`[H + 1, N]` weights of the imagined states (`worldmodels.returns`), no gradient."""
        return sg(discount_weights(cont0, cont, cfg.discount))

    def returns_and_scale(reward, cont, values, retnorm):
        returns = lambda_returns(reward, cont, values, cfg.discount, cfg.lam)
        retnorm = update_retnorm(
            retnorm, returns, cfg.retnorm_rate, cfg.retnorm_low, cfg.retnorm_high
        )
        return returns, retnorm, return_scale(retnorm, cfg.retnorm_limit)

    def actor_objective(actor_params, feat, actions, weight, returns, values, scale, reward):
        """The actor's loss given the imagined trajectory (`feat [H, N, F]` of the states the
        actions were taken in) and its `returns [H, N]`."""
        mean, std = policy.on_feat(actor_params, sg(feat))
        entropy = jnp.sum(0.5 + _HALF_LOG_2PI + jnp.log(std), axis=-1)
        if cfg.actor_grad == "dynamics":
            objective = returns / scale
        else:
            logp = jnp.sum(
                -0.5 * ((sg(actions) - mean) / std) ** 2 - jnp.log(std) - _HALF_LOG_2PI, -1
            )
            objective = logp * sg((returns - values[:-1]) / scale)
        loss = -jnp.mean(weight[:-1] * (objective + cfg.entropy * entropy))
        metrics = {
            "loss/actor": loss,
            "actor/entropy": entropy.mean(),
            "actor/std": std.mean(),
            "return/mean": returns.mean(),
            "return/scale": scale,
            "imag/reward": reward.mean(),
        }
        return loss, metrics

    def critic_logits_loss(logits, slow, weight, returns):
        """Two-hot CE of critic `logits [H, N, bins]` towards the returns and the slow values."""
        ce = dists.soft_ce(logits, returns, **bins) + cfg.slow_reg * dists.soft_ce(
            logits, slow, **bins
        )
        loss = jnp.mean(weight[:-1] * ce)
        return loss, {"loss/critic": loss, "value/mean": dists.two_hot_inv(logits, **bins).mean()}

    def dynamics_actor_loss(actor_params, model_params, critic_params, retnorm, start, cont0, key):
        """`actor_grad="dynamics"`: the returns backpropagate through the imagined rollout."""
        sample = policy_fn(actor_params)
        latents, actions, outs = imagine(model, model_params, start, sample, cfg.horizon, key)
        states = jax.tree.map(lambda s, x: jnp.concatenate([s[None], x]), start, latents)
        weight, reward = loss_weight(cont0, outs.cont), outs.reward
        feat = model.feat(states)
        values = value(jax.tree.map(sg, critic_params), feat)
        returns, retnorm, scale = returns_and_scale(reward, outs.cont, values, retnorm)
        loss, metrics = actor_objective(
            actor_params, feat[:-1], actions, weight, returns, values, scale, reward
        )
        traj = (sg(states), sg(weight), sg(returns))
        return loss, (traj, retnorm, metrics)

    def critic_loss(critic_params, slow_params, states, weight, returns):
        feat = model.feat(jax.tree.map(lambda x: x[:-1], states))
        logits = critic.apply(critic_params, feat)
        return critic_logits_loss(logits, value(slow_params, feat), weight, returns)

    def behaviour_dynamics(p, model_params, slow_critic, retnorm, start, cont0, key):
        """Actor and critic gradients with the actor trained through the model (Dreamer v1)."""
        grad_fn = jax.value_and_grad(dynamics_actor_loss, has_aux=True)
        (_, (traj, retnorm, actor_metrics)), actor_grads = grad_fn(
            p["actor"], model_params, p["critic"], retnorm, start, cont0, key
        )
        grad_fn = jax.value_and_grad(critic_loss, has_aux=True)
        (_, critic_metrics), critic_grads = grad_fn(p["critic"], slow_critic, *traj)
        return actor_grads, critic_grads, retnorm, {**actor_metrics, **critic_metrics}

    def behaviour_reinforce(p, model_params, slow_critic, retnorm, start, cont0, key):
        """Actor and critic gradients with REINFORCE (DreamerV3).

        No gradient flows through the imagination here, so it runs outside any `grad`, and the
        critic's forward pass on the imagined states serves twice: the values of the
        lambda-returns and (through `jax.vjp`) the critic loss, both with the same parameters.
        The features of states `0..H-1` are built once, straight from the start and the
        imagined latents, for the actor, the critic and the slow critic: each `model.feat` of a
        sliced or concatenated trajectory is a copy of `[H, N, F]` floats (40 MB at size1m).
        """
        sample = policy_fn(p["actor"])
        latents, actions, outs = imagine(model, model_params, start, sample, cfg.horizon, key)
        weight = loss_weight(cont0, outs.cont)
        taken = jax.tree.map(lambda s, x: jnp.concatenate([s[None], x[:-1]]), start, latents)
        f = model.feat(taken)  # [H, N, F]: the states the actions were taken in
        logits, critic_vjp = jax.vjp(lambda cp: critic.apply(cp, f), p["critic"])
        last = value(p["critic"], model.feat(jax.tree.map(lambda x: x[-1], latents)))
        values = jnp.concatenate([dists.two_hot_inv(logits, **bins), last[None]])  # [H + 1, N]
        reward = outs.reward
        returns, retnorm, scale = returns_and_scale(reward, outs.cont, values, retnorm)
        grad_fn = jax.value_and_grad(actor_objective, has_aux=True)
        (_, actor_metrics), actor_grads = grad_fn(
            p["actor"], f, actions, weight, returns, values, scale, reward
        )
        slow = value(slow_critic, f)
        grad_fn = jax.value_and_grad(critic_logits_loss, has_aux=True)
        (_, critic_metrics), dlogits = grad_fn(logits, slow, weight, returns)
        (critic_grads,) = critic_vjp(dlogits)
        return actor_grads, critic_grads, retnorm, {**actor_metrics, **critic_metrics}

    return behaviour_dynamics if cfg.actor_grad == "dynamics" else behaviour_reinforce
