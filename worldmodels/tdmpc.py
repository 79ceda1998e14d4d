"""TD-MPC2's implicit (decoder-free) latent world model as pure functions.

Networks (Hansen et al., 2024): encoder `obs -> z` (SimNorm output), latent dynamics
`(z, a) -> z'` (SimNorm), reward `(z, a) -> two-hot logits`, termination `z' -> logit` (for episodic
tasks), an ensemble of `num_q` Q-functions `(z, a) -> two-hot logits`, and a tanh-Gaussian policy
prior `z -> a`. Rewards and values are predicted as two-hot distributions over `num_bins` bins in
symlog space. As a `WorldModel`, a step's `StepOutput` has the reward of `(z, a)` and
`cont = 1 - termination(z')` (1 without `episodic`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> cfg = TDMPCConfig(latent_dim=32, mlp_dim=32, enc_dim=32, num_q=2)
  >>> model = make_tdmpc_model(cfg, obs_size=4, action_size=1)
  >>> params = model.init(jax.random.key(0))
  >>> z = model.encode(params, jnp.zeros((8, 4)))
  >>> z2, out = model.imagine(params, z, jnp.zeros((8, 1)), jax.random.key(1))
  >>> z2.shape, out.reward.shape, out.cont.shape
  ((8, 32), (8,), (8,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from numbers import Integral
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from worldmodels import dists
from worldmodels.checks import Range, check_config, check_order
from worldmodels.nets import ensemble, mlp
from worldmodels.shapes import check_batch
from worldmodels.types import (
    Array,
    ImagineFn,
    InitFn,
    InitialFn,
    LossFn,
    ObserveFn,
    Params,
    PredictFn,
    PRNGKey,
    StepOutput,
    TransitionFn,
    WorldModel,
    as_world_model,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TDMPCConfig:
    """TD-MPC2 model and loss hyper-parameters; `TDMPCConfig()` is the official 5M-parameter config.

    Attributes:
      latent_dim: latent state size (multiple of `simnorm_dim`).
      mlp_dim: hidden width of dynamics, reward, Q and policy MLPs.
      enc_dim: hidden width of the encoder.
      num_enc_layers: encoder depth (hidden layers + output layer).
      num_q: Q-functions in the ensemble (two random ones are used for targets).
      num_bins: two-hot bins of rewards and values, in symlog space.
      vmin: the lowest bin (symlog space; `vmin < vmax`).
      vmax: the highest bin (symlog space).
      simnorm_dim: SimNorm group size.
      log_std_min: the policy's lowest log-std (`< log_std_max`).
      log_std_max: the policy's highest log-std.
      rho: temporal weight decay over the horizon in every loss, in (0, 1].
      consistency_coef: weight of the latent consistency loss, >= 0.
      reward_coef: weight of the reward loss, >= 0.
      value_coef: weight of the Q loss, >= 0.
      termination_coef: weight of the termination loss, >= 0.
      entropy_coef: policy entropy bonus, >= 0.
      discount: TD discount in (0, 1] (the agent derives it from the episode length, as TD-MPC2
        does).
      episodic: learn a termination head (tasks whose episodes end on failure).
      act: hidden activation.

    Every float must be finite (`worldmodels.checks`); a bad value raises ValueError naming it.
    """

    latent_dim: int = 512
    mlp_dim: int = 512
    enc_dim: int = 256
    num_enc_layers: int = 2
    num_q: int = 5
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    simnorm_dim: int = 8
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    rho: float = 0.5
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    termination_coef: float = 1.0
    entropy_coef: float = 1e-4
    discount: float = 0.99
    episodic: bool = True
    act: Literal["mish", "silu", "relu", "elu"] = "mish"

    def __post_init__(self):
        sizes = ("latent_dim", "mlp_dim", "enc_dim", "num_enc_layers", "simnorm_dim")
        coefs = ("consistency_coef", "reward_coef", "value_coef", "termination_coef")
        check_config(
            self,
            {name: Range(ge=1, integer=True) for name in sizes}
            | {"num_q": Range(ge=2, integer=True), "num_bins": Range(ge=2, integer=True)}
            | {name: Range(ge=0) for name in (*coefs, "entropy_coef")}
            | {"rho": Range(gt=0, le=1), "discount": Range(gt=0, le=1)},
        )
        if self.latent_dim % self.simnorm_dim:
            raise ValueError(
                f"TDMPCConfig.latent_dim ({self.latent_dim}) must be a multiple of "
                f"simnorm_dim ({self.simnorm_dim})"
            )
        check_order(self, "vmin", "vmax")
        check_order(self, "log_std_min", "log_std_max")


class TDMPCModel(NamedTuple):
    """The TD-MPC2 model: the `WorldModel` functions (its leading fields), then the parts agents
    need.

    `init/initial/observe/imagine/transition/predict/loss` follow `worldmodels.types.WorldModel`;
    latents are `z [..., L]`. `observe` encodes `obs` (no recurrent state) and predicts the step
    from the carry `(z, a)` to it; `transition` is `next`; `predict(params, z, a, z')` is
    `StepOutput(reward(z, a), 1 - termination(z'), {})` (`cont` 1 without `episodic`). The rest
    take `params` from `init` and work on any leading batch axes:
      encode(params, obs [..., O]) -> z [..., L]
      next(params, z, a [..., A]) -> z' [..., L]
      reward(params, z, a) -> [...];  reward_logits -> [..., num_bins]
      termination(params, z') -> [...] probability that `z'` is terminal
      pi(params, z, key) -> (action [..., A], log_prob [...], mode [..., A])
      q(params, z, a, key, kind) -> [...]: 'min' or 'avg' of two random ensemble members
      q_logits(params, z, a) -> [num_q, ..., num_bins]
      model_loss(params, batch, key, target_q) -> (loss, (metrics, latents [H+1, B, L]))
      pi_loss(params, latents, key, scale) -> (loss, (metrics, q [T, B]))
      obs_size: `O`; action_size: `A`.
    """

    init: InitFn
    initial: InitialFn
    observe: ObserveFn
    imagine: ImagineFn
    transition: TransitionFn
    predict: PredictFn
    loss: LossFn
    encode: Callable[[Params, Array], Array]
    next: Callable[[Params, Array, Array], Array]
    reward: Callable[[Params, Array, Array], Array]
    reward_logits: Callable[[Params, Array, Array], Array]
    termination: Callable[[Params, Array], Array]
    pi: Callable[[Params, Array, PRNGKey], tuple[Array, Array, Array]]
    q: Callable[..., Array]
    q_logits: Callable[[Params, Array, Array], Array]
    model_loss: Callable[..., tuple[Array, tuple[dict, Array]]]
    pi_loss: Callable[..., tuple[Array, tuple[dict, Array]]]
    obs_size: int
    action_size: int
    config: TDMPCConfig

    @property
    def world_model(self) -> WorldModel:
        """The `WorldModel` contract alone."""
        return as_world_model(self)


def _check_last(x: jax.Array, expected: int, what: str) -> None:
    if x.shape[-1] != expected:
        raise ValueError(f"TD-MPC2 model: {what} must have shape [..., {expected}], got {x.shape}")


def same_episode(done: jax.Array) -> jax.Array:
    """`[H, B]` float mask: 1 where step `t` is in the episode of step 0 (no `done` before it)."""
    ended = jnp.cumsum(done.astype(jnp.int32), axis=0) - done.astype(jnp.int32)
    return (ended == 0).astype(jnp.float32)


def make_tdmpc_model(cfg: TDMPCConfig, obs_size: int, action_size: int) -> TDMPCModel:
    """Build the TD-MPC2 model functions for `cfg` and the given sizes.

    Args:
      cfg: the model's sizes and loss weights.
      obs_size: length `O` of the (vector) observations.
      action_size: length `A` of actions.

    Returns:
      The `TDMPCModel` (see the module docstring for an example).

    Raises:
      ValueError: for sizes that are not ints >= 1.
    """
    c = cfg
    for name, size in (("obs_size", obs_size), ("action_size", action_size)):
        if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
            raise ValueError(f"make_tdmpc_model: {name} must be an int >= 1, got {size!r}")
    obs_size, action_size = int(obs_size), int(action_size)
    two_hot = dict(num_bins=c.num_bins, vmin=c.vmin, vmax=c.vmax)
    za_size, hid = c.latent_dim + action_size, (c.mlp_dim, c.mlp_dim)
    enc_hidden = (c.enc_dim,) * max(c.num_enc_layers - 1, 0)
    simnorm = dict(act=c.act, out_act="simnorm", simnorm_dim=c.simnorm_dim)
    nets = {
        "encoder": mlp(obs_size, enc_hidden, c.latent_dim, **simnorm),
        "dynamics": mlp(za_size, hid, c.latent_dim, **simnorm),
        "reward": mlp(za_size, hid, c.num_bins, act=c.act, zero_last=True),
        "termination": mlp(c.latent_dim, hid, 1, act=c.act),
        "pi": mlp(c.latent_dim, hid, 2 * action_size, act=c.act),
        "q": ensemble(mlp(za_size, hid, c.num_bins, act=c.act, zero_last=True), c.num_q),
    }

    def apply(params: dict, name: str, x: jax.Array) -> jax.Array:
        return nets[name].apply(params[name], x)

    def init(key: jax.Array) -> dict:
        keys = jax.random.split(key, len(nets))
        return {name: net.init(k) for (name, net), k in zip(nets.items(), keys, strict=True)}

    def encode(params, obs):
        _check_last(obs, obs_size, "observation")
        return apply(params, "encoder", obs)

    def za(params, z, a):
        _check_last(z, c.latent_dim, "latent")
        _check_last(a, action_size, "action")
        return jnp.concatenate([z, a], axis=-1)

    def next_(params, z, a):
        return apply(params, "dynamics", za(params, z, a))

    def reward_logits(params, z, a):
        return apply(params, "reward", za(params, z, a))

    def reward(params, z, a):
        return dists.two_hot_inv(reward_logits(params, z, a), **two_hot)

    def termination(params, z):
        return jax.nn.sigmoid(apply(params, "termination", z)[..., 0])

    def pi(params, z, key):
        out = apply(params, "pi", z)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        log_std = dists.squash_log_std(raw_log_std, c.log_std_min, c.log_std_max)
        return dists.tanh_gaussian_sample(mean, log_std, key)

    def q_logits(params, z, a):
        return apply(params, "q", za(params, z, a))

    def q(params, z, a, key, kind: Literal["min", "avg"] = "min"):
        idx = jax.random.choice(key, c.num_q, (2,), replace=False)
        # Gather the two members' weights first: evaluates 2 Q-functions, not num_q.
        two = dict(params, q=jax.tree.map(lambda w: w[idx], params["q"]))
        values = dists.two_hot_inv(q_logits(two, z, a), **two_hot)
        return jnp.min(values, axis=0) if kind == "min" else jnp.mean(values, axis=0)

    def initial(params, batch_size: int):
        return jnp.zeros((batch_size, c.latent_dim))

    def predict(params, latent, action, next_latent):
        r = reward(params, latent, action)
        # Without a termination head (a task whose episodes only end by time limit), always on.
        cont = 1.0 - termination(params, next_latent) if c.episodic else jnp.ones_like(r)
        return StepOutput(reward=r, cont=cont)

    def observe(params, latent, action, obs, is_first, key):
        # TD-MPC2 has no recurrent state: the posterior latent is the encoding of `obs`.
        z = encode(params, obs)
        return z, predict(params, latent, action, z)

    def transition(params, latent, action, key):
        return next_(params, latent, action)

    def imagine(params, latent, action, key):
        z = next_(params, latent, action)
        return z, predict(params, latent, action, z)

    def model_loss(params, batch, key, target_q=None, discount=None):
        """Latent consistency + reward + TD value (+ termination) over a `[H, B]` sequence batch.

        A sequence may end its episode before its last step: with a `done [H, B]` field, the
        steps after the first `done` (another episode's data) are masked out of every loss, so
        a sampler may start sequences anywhere, and an episode's last (terminal) step is learnt
        at every position of the rollout, the encoder's latent at position 0 included. Without
        `done`, every sequence must lie within one episode.

        Args:
          params: model parameters.
          batch: fields `obs [H, B, O]`, `action [H, B, A]`, `reward [H, B]`,
            `next_obs [H, B, O]`, `terminated [H, B]`, optionally `done [H, B]` (e.g.
            `worldmodels.Transition`).
          key: PRNG key.
          target_q: EMA copy of `params['q']` for TD targets (defaults to the online Q).
          discount: the TD targets' discount, a float or a traced `[]` array (an agent that
            chooses it from data); None: `cfg.discount`.

        Returns:
          `(loss, (metrics, latents [H+1, B, L]))`; latents are the model rollout from `obs[0]`.

        Raises:
          TypeError: `batch` is not such an object (a dict, say) or lacks a field.
          ValueError: a field's shape is wrong, e.g.
            `batch.reward must have shape [H, B] = (3, 16), got (16,)`.
        """
        fields = [("obs", ("H", "B", "O")), ("action", ("H", "B", "A"))]
        fields += [("reward", ("H", "B")), ("next_obs", ("H", "B", "O"))]
        fields += [("terminated", ("H", "B"))]
        fields += [("done", ("H", "B"))] if hasattr(batch, "done") else []
        check_batch(batch, fields, "TDMPCModel.model_loss", {"O": obs_size, "A": action_size})
        horizon = batch.action.shape[0]
        live = same_episode(batch.done) if hasattr(batch, "done") else jnp.ones(batch.reward.shape)
        k_pi, k_q = jax.random.split(key)
        sg = jax.lax.stop_gradient
        next_z = sg(encode(params, batch.next_obs))
        pi_next, _, _ = pi(sg(params), next_z, k_pi)
        q_params = sg(dict(params, q=params["q"] if target_q is None else target_q))
        alive = 1.0 - batch.terminated.astype(jnp.float32)
        gamma = c.discount if discount is None else discount
        td = sg(batch.reward + gamma * alive * q(q_params, next_z, pi_next, k_q, "min"))

        def step(z, inputs):
            action, target_z = inputs
            z_next = next_(params, z, action)
            return z_next, (z_next, jnp.mean((z_next - target_z) ** 2, axis=-1))

        z0 = encode(params, batch.obs[0])
        _, (zs_next, consistency) = jax.lax.scan(step, z0, (batch.action, next_z))
        zs = jnp.concatenate([z0[None], zs_next[:-1]], axis=0)  # [H, B, L]: z_t for each action
        rho = c.rho ** jnp.arange(horizon, dtype=jnp.float32)
        reward_ce = dists.soft_ce(reward_logits(params, zs, batch.action), batch.reward, **two_hot)
        value_ce = dists.soft_ce(q_logits(params, zs, batch.action), td[None], **two_hot)
        losses = {
            "consistency": jnp.sum(rho * (live * consistency).mean(-1)) / horizon,
            "reward": jnp.sum(rho * (live * reward_ce).mean(-1)) / horizon,
            "value": jnp.sum(rho * (live[None] * value_ce).mean(-1).sum(0)) / (horizon * c.num_q),
        }
        total = (
            c.consistency_coef * losses["consistency"]
            + c.reward_coef * losses["reward"]
            + c.value_coef * losses["value"]
        )
        if c.episodic:
            logit = apply(params, "termination", zs_next)[..., 0]
            bce = jnp.mean(
                live
                * optax.sigmoid_binary_cross_entropy(logit, batch.terminated.astype(jnp.float32))
            )
            losses["termination"] = bce
            total = total + c.termination_coef * bce
        metrics = {f"loss/{k}": v for k, v in losses.items()}
        metrics.update({"loss/model": total, "td_target": jnp.sum(live * td) / jnp.sum(live)})
        return total, (metrics, jnp.concatenate([z0[None], zs_next], axis=0))

    def loss(params, batch, key, target_q=None):
        total, (metrics, _) = model_loss(params, batch, key, target_q)
        return total, metrics

    def pi_loss(params, latents, key, scale, mask=None):
        """Policy loss on detached latents `[T, B, L]`: maximise scaled Q plus entropy.

        `scale` is the running 5th-95th percentile range of Q (TD-MPC2's `RunningScale`); only
        `params['pi']` receives gradients. `mask [T, B]` (optional) zeroes latents that lie past
        the end of their episode (`same_episode`).
        """
        k_pi, k_q = jax.random.split(key)
        latents = jax.lax.stop_gradient(latents)
        action, log_prob, _ = pi(params, latents, k_pi)
        frozen = jax.lax.stop_gradient(params)
        qs = q(frozen, latents, action, k_q, "avg")  # [T, B]
        rho = c.rho ** jnp.arange(latents.shape[0], dtype=jnp.float32)
        objective = c.entropy_coef * -log_prob + qs / scale
        per_t = -(objective if mask is None else mask * objective).mean(-1)
        total = jnp.mean(rho * per_t)
        return total, ({"loss/pi": total, "pi/entropy": -log_prob.mean()}, qs)

    return TDMPCModel(
        init=init,
        initial=initial,
        observe=observe,
        imagine=imagine,
        transition=transition,
        predict=predict,
        loss=loss,
        encode=encode,
        next=next_,
        reward=reward,
        reward_logits=reward_logits,
        termination=termination,
        pi=pi,
        q=q,
        q_logits=q_logits,
        model_loss=model_loss,
        pi_loss=pi_loss,
        obs_size=obs_size,
        action_size=action_size,
        config=cfg,
    )
