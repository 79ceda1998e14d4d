"""DreamerV3's recurrent state-space model (RSSM) world model as pure functions.

Latent state: a deterministic `deter` vector from a block-diagonal GRU and a stochastic state of
`groups` categoricals with `classes` classes each (one-hot samples with 1% uniform mix and
straight-through gradients). The posterior (`observe`) conditions on an observation embedding, the
prior (`imagine`) on `deter` alone. Heads read `feat = concat(deter, stoch)`: reward (two-hot over
symlog bins), continue (Bernoulli), and either an observation decoder (symlog MSE) or, in the
decoder-free variant, an inverse-dynamics head that predicts `a_t` from `(z_t, z_{t+1})`. The loss
adds KL balancing (dynamics 0.5, representation 0.1, each clipped below at 1 free nat).

Observations are vectors `[..., O]` (`make_rssm(cfg, O, A)`: symlog, then an MLP encoder and
decoder) or uint8 images `[..., H, W, C]` (`make_rssm(cfg, (H, W, C), A)`): as DreamerV3, pixels
become `x / 255 - 0.5`, a CNN (`nets.conv_encoder`) embeds them into a flat vector for the
posterior, and the decoder (`nets.conv_decoder`, then `sigmoid - 0.5`) is trained with the squared
error summed over pixels against `x / 255 - 0.5`.

This module holds the latent and its steps; the observation side is `worldmodels.rssm_obs`, the
loss `worldmodels.rssm_loss` (`kl_balance` is re-exported here).

Example:
  >>> import jax, jax.numpy as jnp
  >>> cfg = RSSMConfig(deter=32, hidden=16, groups=4, classes=4, units=16, blocks=4)
  >>> model = make_rssm(cfg, obs_shape=5, action_size=2)
  >>> params = model.init(jax.random.key(0))
  >>> latent = model.initial(params, 8)
  >>> latent, out = model.observe(params, latent, jnp.zeros((8, 2)), jnp.zeros((8, 5)),
  ...                             jnp.ones(8, bool), jax.random.key(1))
  >>> out.extras["logits"].shape
  (8, 4, 4)
  >>> latent, out = model.imagine(params, latent, jnp.zeros((8, 2)), jax.random.key(2))
  >>> model.feat(latent).shape, out.reward.shape, out.cont.shape
  ((8, 48), (8,), (8,))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from worldmodels import dists
from worldmodels.nets import block_gru, norm_mlp
from worldmodels.rssm_config import RSSMConfig
from worldmodels.rssm_loss import kl_balance, make_model_loss
from worldmodels.rssm_obs import check_last, check_sizes, obs_input, obs_nets
from worldmodels.scan import hoisted_scan
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

__all__ = ["RSSMConfig", "RSSMModel", "RSSMState", "kl_balance", "make_rssm"]

sg = jax.lax.stop_gradient


@struct.dataclass
class RSSMState:
    """The RSSM latent for any leading batch axes `[...]`.

    Attributes:
      deter: `[..., deter]` the GRU state.
      stoch: `[..., groups, classes]` one-hot samples (straight-through gradients).
    """

    deter: jax.Array
    stoch: jax.Array


class RSSMModel(NamedTuple):
    """The RSSM: the `WorldModel` functions (its leading fields), then the parts agents need.

    `init/initial/observe/imagine/transition/predict/loss` follow `worldmodels.types.WorldModel`;
    latents are `RSSMState`s. `observe` and `imagine` return `StepOutput`s whose `reward` and
    `cont` are the heads on the new latent and whose `extras["logits"]` are the posterior
    (`observe`) or prior (`imagine`, `predict`) logits `[..., groups, classes]` before unimix;
    `transition` is `prior_step` without its logits, and `predict` reads `next_latent` alone. The
    rest work on any leading axes `[...]`:
      model_loss(params, batch, key, start=None, start_first=None) -> (loss, (metrics, post)):
        `post` the posterior latents `[T, B, ...]` after each transition, the agent's
        imagination starts (`loss` is it without `post`)
      feat(latent) -> [..., feat_size]: `concat(deter, stoch)`, the actor/critic input
      encode(params, obs [..., O] or uint8 [..., H, W, C]) -> tokens [..., E]: `E = units` for
        vectors, `nets.conv_embed_size(...)` (`minres**2 * depth * mults[-1]`) for images
      core(params, latent, action [..., A]) -> deter [..., deter]: the GRU step
      prior_logits(params, deter) -> [..., groups, classes] (before unimix)
      prior_step(params, latent, action, key) -> (latent, prior logits)
      post_logits(params, deter, tokens) -> [..., groups, classes] (before unimix)
      reward(params, latent) -> [...];  cont(params, latent) -> [...] probability of continuing
      decode(params, latent) -> [..., O] symlog-space reconstruction, or [..., H, W, C] in
        `(-0.5, 0.5)`, the space of `x / 255 - 0.5` (decoder variant only)
      inverse(params, z, z_next) -> [..., A] predicted action (inverse-dynamics variant only)
      feat_size: `deter + groups * classes`; obs_shape: `O` or `(H, W, C)`; action_size: `A`.
    """

    init: InitFn
    initial: InitialFn
    observe: ObserveFn
    imagine: ImagineFn
    transition: TransitionFn
    predict: PredictFn
    loss: LossFn
    model_loss: Callable[..., tuple[Array, tuple[dict, RSSMState]]]
    feat: Callable[[RSSMState], Array]
    encode: Callable[[Params, Array], Array]
    core: Callable[[Params, RSSMState, Array], Array]
    prior_logits: Callable[[Params, Array], Array]
    prior_step: Callable[[Params, RSSMState, Array, PRNGKey], tuple[RSSMState, Array]]
    post_logits: Callable[[Params, Array, Array], Array]
    reward: Callable[[Params, RSSMState], Array]
    cont: Callable[[Params, RSSMState], Array]
    decode: Callable[[Params, RSSMState], Array]
    inverse: Callable[[Params, Array, Array], Array]
    feat_size: int
    obs_shape: int | tuple[int, int, int]
    action_size: int
    config: RSSMConfig

    @property
    def world_model(self) -> WorldModel:
        """The `WorldModel` contract alone."""
        return as_world_model(self)


def _where(mask: jax.Array, a, b):
    """`where(mask, a, b)` over pytrees whose leaves extend `mask [...]` by trailing axes."""

    def pick(x, y):
        m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
        return jnp.where(m, x, y)

    return jax.tree.map(pick, a, b)


def make_rssm(cfg: RSSMConfig, obs_shape: int | tuple[int, ...], action_size: int) -> RSSMModel:
    """Build the RSSM functions for `cfg` and the given observation and action sizes.

    Args:
      cfg: the model's sizes and loss weights.
      obs_shape: length `O` of vector observations (or `(O,)`), or `(H, W, C)` of uint8 image
        observations (square, `H = minres * 2**k` with `k >= 1`; see `nets.check_image_shape`),
        which selects the CNN encoder and decoder.
      action_size: length `A` of actions.

    Returns:
      The `RSSMModel` (see the module docstring for an example).

    Raises:
      ValueError: for sizes below 1 or an image shape the CNN cannot take (before anything
        traces or compiles).
    """
    c = cfg
    obs_shape, action_size = check_sizes(obs_shape, action_size, c.minres)
    stoch_size, feat_size = c.groups * c.classes, c.deter + c.groups * c.classes
    bins = dict(num_bins=c.num_bins, vmin=c.vmin, vmax=c.vmax)
    use_decoder = c.objective == "decoder"

    mk = functools.partial(norm_mlp, norm=c.norm, act=c.act)
    encoder, embed, decoder = obs_nets(c, obs_shape, feat_size, use_decoder)
    post_in = embed if c.absolute else c.deter + embed
    core_net = block_gru(
        c.deter,
        (stoch_size, action_size),
        c.hidden,
        c.blocks,
        norm=c.norm,
        act=c.act,
        layers=c.dyn_layers,
    )
    nets = {
        "encoder": encoder,
        "core": core_net,
        "post": mk(post_in, (c.hidden,) * c.obs_layers, stoch_size),
        "prior": mk(c.deter, (c.hidden,) * c.img_layers, stoch_size),
        "reward": mk(feat_size, (c.units,) * c.reward_layers, c.num_bins, out_scale=0.0),
        "cont": mk(feat_size, (c.units,) * c.cont_layers, 1),
    }
    if use_decoder:
        nets["decoder"] = decoder
    else:
        nets["inverse"] = mk(2 * stoch_size, (c.units,) * c.inv_layers, action_size)

    def apply(params: dict, name: str, x: jax.Array) -> jax.Array:
        return nets[name].apply(params[name], x)

    def init(key: jax.Array) -> dict:
        """Fresh parameters: a plain nested dict of arrays."""
        keys = jax.random.split(key, len(nets))
        params = {name: net.init(k) for (name, net), k in zip(nets.items(), keys, strict=True)}
        params["initial"] = jnp.zeros((c.deter,))  # learned initial deter, through tanh
        return params

    def feat(latent: RSSMState) -> jax.Array:
        stoch = latent.stoch.reshape(*latent.stoch.shape[:-2], stoch_size)
        return jnp.concatenate([latent.deter, stoch], axis=-1)

    def encode(params, obs):
        return apply(params, "encoder", obs_input(obs, obs_shape))

    def group(x):
        return x.reshape(*x.shape[:-1], c.groups, c.classes)

    def prior_logits(params, deter):
        return group(apply(params, "prior", deter))

    def post_logits(params, deter, tokens):
        x = tokens if c.absolute else jnp.concatenate([deter, tokens], axis=-1)
        return group(apply(params, "post", x))

    def sample(logits, key):
        return dists.categorical_sample_st(logits, key, c.unimix)

    def core(params, latent, action):
        check_last(action, action_size, "action")
        action = action / sg(jnp.maximum(1.0, jnp.abs(action)))  # DreamerV3's action clip
        stoch = latent.stoch.reshape(*latent.stoch.shape[:-2], stoch_size)
        return apply(params, "core", jnp.concatenate([latent.deter, stoch, action], axis=-1))

    def initial_state(params, shape: tuple[int, ...]) -> RSSMState:
        deter = jnp.tanh(params["initial"])
        stoch = dists.categorical_mode_st(prior_logits(params, deter))
        return RSSMState(
            deter=jnp.broadcast_to(deter, (*shape, c.deter)),
            stoch=jnp.broadcast_to(stoch, (*shape, c.groups, c.classes)),
        )

    def initial(params, batch_size: int) -> RSSMState:
        return initial_state(params, (batch_size,))

    def reward(params, latent):
        return dists.two_hot_inv(apply(params, "reward", feat(latent)), **bins)

    def cont(params, latent):
        return jax.nn.sigmoid(apply(params, "cont", feat(latent))[..., 0])

    def heads(params, latent, logits) -> StepOutput:
        return StepOutput(reward(params, latent), cont(params, latent), {"logits": logits})

    def observe(params, latent, action, obs, is_first, key):
        start = initial_state(params, is_first.shape)
        latent = _where(is_first, start, latent)
        action = _where(is_first, jnp.zeros_like(action), action)
        deter = core(params, latent, action)
        logits = post_logits(params, deter, encode(params, obs))
        latent = RSSMState(deter, sample(logits, key))
        return latent, heads(params, latent, logits)

    def prior_step(params, latent, action, key):
        deter = core(params, latent, action)
        logits = prior_logits(params, deter)
        return RSSMState(deter, sample(logits, key)), logits

    def transition(params, latent, action, key):
        return prior_step(params, latent, action, key)[0]

    def predict(params, latent, action, next_latent):
        # The heads read the new latent alone; the prior logits are recomputed from its `deter`
        # (dead code, removed by XLA, unless a caller reads `extras["logits"]`).
        return heads(params, next_latent, prior_logits(params, next_latent.deter))

    def imagine(params, latent, action, key):
        latent, logits = prior_step(params, latent, action, key)
        return latent, heads(params, latent, logits)

    def decode(params, latent):
        if not use_decoder:
            raise ValueError("RSSM: decode needs RSSMConfig.objective='decoder'")
        out = apply(params, "decoder", feat(latent))
        # Images: DreamerV3's sigmoid output, shifted to the encoder's `x / 255 - 0.5` range.
        return jax.nn.sigmoid(out) - 0.5 if isinstance(obs_shape, tuple) else out

    def inverse(params, z, z_next):
        if use_decoder:
            raise ValueError("RSSM: inverse needs RSSMConfig.objective='inverse_dynamics'")
        flat = lambda s: s.reshape(*s.shape[:-2], stoch_size)
        return jnp.tanh(apply(params, "inverse", jnp.concatenate([flat(z), flat(z_next)], -1)))

    def reset_states(params, tokens, key) -> RSSMState:
        """Posteriors `[T, B]` of each observation as the first of an episode (as `observe`)."""
        start = initial_state(params, ())
        deter = core(params, start, jnp.zeros((action_size,)))  # the same for every reset
        deter = jnp.broadcast_to(deter, (*tokens.shape[:-1], c.deter))
        return RSSMState(deter, sample(post_logits(params, deter, tokens), key))

    def posterior_sequence(params, batch, key, start=None, start_first=None):
        """Posterior after each transition, `(z_t [T, B, G, C], post [T, B], logits)`."""
        k_reset, k_scan = jax.random.split(key)
        resets = reset_states(params, encode(params, batch.obs), k_reset)
        first0 = jnp.ones_like(batch.done[:1]) if start is None else start_first[None]
        first = jnp.concatenate([first0.astype(batch.done.dtype), batch.done[:-1]], axis=0)
        tokens = encode(params, batch.next_obs)

        def step(p, prev, inputs):
            reset, is_first, action, token, uniform = inputs
            prev = _where(is_first, reset, prev)
            deter = core(p, prev, action)
            logits = post_logits(p, deter, token)
            post = RSSMState(
                deter, dists.categorical_sample_st_from_uniform(logits, uniform, c.unimix)
            )
            return post, (prev.stoch, post, logits)

        carry = jax.tree.map(lambda x: x[0], resets) if start is None else sg(start)
        # Every step's uniform drawn before the loop: one random-bits op, not one per step.
        uniforms = jax.random.uniform(k_scan, (*tokens.shape[:-1], c.groups, 1))
        inputs = (resets, first, batch.action, tokens, uniforms)
        # The weights' gradient is taken after the loop, batched over all T steps (`hoisted_scan`):
        # inside it, B (16) is too small a batch for per-step weight gradients to be efficient.
        _, outs = hoisted_scan(step, params, carry, inputs)
        return outs

    model = RSSMModel(
        init=init,
        initial=initial,
        observe=observe,
        imagine=imagine,
        transition=transition,
        predict=predict,
        loss=None,  # both losses are built below from the model's own functions
        model_loss=None,
        feat=feat,
        encode=encode,
        core=core,
        prior_logits=prior_logits,
        prior_step=prior_step,
        post_logits=post_logits,
        reward=reward,
        cont=cont,
        decode=decode,
        inverse=inverse,
        feat_size=feat_size,
        obs_shape=obs_shape,
        action_size=action_size,
        config=cfg,
    )
    model_loss = make_model_loss(model, posterior_sequence, apply)

    def loss(params, batch, key):
        total, (metrics, _) = model_loss(params, batch, key)
        return total, metrics

    return model._replace(loss=loss, model_loss=model_loss)
