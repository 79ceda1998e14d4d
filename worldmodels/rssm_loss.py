"""How the RSSM learns (DreamerV3): KL balancing, the reward and continue heads, reconstruction.

On a `[T, B]` batch of sequences, the posterior latents after each transition (`post`) give
  * KL balancing (`kl_balance`): `KL(sg(post) || prior)` (`dyn_scale`) trains the prior towards
    the posterior, `KL(post || sg(prior))` (`rep_scale`) regularises the posterior, each summed
    over the groups and clipped below at `free_nats`;
  * the reward head's two-hot cross-entropy over symlog bins (`reward_scale`) and the continue
    head's Bernoulli NLL of `1 - terminated` (`cont_scale`);
  * reconstruction (`rec_scale`): the decoder's squared error summed over the observation's axes
    in encoder space (`rssm_obs.obs_input`), or, decoder-free, the inverse-dynamics head's squared
    error on `a_t` predicted from `(z_t, z_{t+1})`.
`worldmodels.rssm.make_rssm` builds the model; `make_model_loss` is its `model_loss`.

Example (the same logits: no KL, so both terms sit at the free nats):
  >>> import jax.numpy as jnp
  >>> logits = jnp.zeros((2, 3, 4))                             # [B, groups, classes]
  >>> dyn, rep, dyn_raw, rep_raw = kl_balance(logits, logits, unimix=0.01, free_nats=1.0)
  >>> dyn.tolist(), dyn_raw.tolist()
  ([1.0, 1.0], [0.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from worldmodels import dists
from worldmodels.rssm_obs import ObsSize, obs_input
from worldmodels.shapes import check_batch, describe

if TYPE_CHECKING:  # the model is built in worldmodels.rssm, which imports this module
    from worldmodels.rssm import RSSMModel

__all__ = ["kl_balance", "make_model_loss"]

sg = jax.lax.stop_gradient


def kl_balance(
    post_logits: jax.Array, prior_logits: jax.Array, unimix: float, free_nats: float
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """DreamerV3's KL balancing terms between posterior and prior latents.

    Both distributions get `unimix` first. `dyn = KL(sg(post) || prior)` trains the prior towards
    the posterior, `rep = KL(post || sg(prior))` regularises the posterior; each is summed over
    the groups, then clipped below at `free_nats` (no gradient while under it).

    Args:
      post_logits, prior_logits: `[..., groups, classes]`.
      unimix: uniform mix in `[0, 1)`.
      free_nats: the clipping floor.

    Returns:
      `(dyn, rep, dyn_raw, rep_raw)`, each `[...]`: clipped terms and the raw KLs.
    """
    post = dists.unimix_logits(post_logits, unimix)
    prior = dists.unimix_logits(prior_logits, unimix)
    dyn = dists.categorical_kl(sg(post), prior).sum(-1)
    rep = dists.categorical_kl(post, sg(prior)).sum(-1)
    return jnp.maximum(dyn, free_nats), jnp.maximum(rep, free_nats), dyn, rep


def _check_batch(batch: Any, obs_size: ObsSize, action_size: int) -> dict[str, int]:
    """Checks the fields `RSSMModel.model_loss` reads (static shapes); returns the axis sizes."""
    image = isinstance(obs_size, tuple)
    obs_axes = ("T", "B", "H", "W", "C") if image else ("T", "B", "O")
    known = dict(zip(("H", "W", "C"), obs_size, strict=True)) if image else {"O": obs_size}
    fields = [("obs", obs_axes), ("action", ("T", "B", "A")), ("reward", ("T", "B"))]
    fields += [("next_obs", obs_axes), ("terminated", ("T", "B")), ("done", ("T", "B"))]
    return check_batch(batch, fields, "RSSM.model_loss", known | {"A": action_size})


def make_model_loss(
    model: RSSMModel,
    posterior_sequence: Callable[..., tuple[jax.Array, Any, jax.Array]],
    head_logits: Callable[[dict, str, jax.Array], jax.Array],
) -> Callable[..., tuple[jax.Array, tuple[dict, Any]]]:
    """`RSSMModel.model_loss` for `model` (its own `model_loss` and `loss` are not read).

    Args:
      model: the RSSM's `feat`, `prior_logits`, `decode`, `inverse`, sizes and config.
      posterior_sequence: `(params, batch, key, start, start_first) -> (z_prev, post, logits)`:
        the stochastic state before each transition `[T, B, groups, classes]`, the posterior
        `RSSMState` after it `[T, B, ...]` and its logits `[T, B, groups, classes]`.
      head_logits: `(params, name, feat [..., F]) -> logits` of the `"reward"` (`[..., bins]`)
        and `"cont"` (`[..., 1]`) heads.
    """
    c, obs_shape, action_size = model.config, model.obs_shape, model.action_size
    bins = dict(num_bins=c.num_bins, vmin=c.vmin, vmax=c.vmax)
    use_decoder = c.objective == "decoder"

    def reconstruction(params, batch, z_prev, post, f):
        if use_decoder:  # squared error summed over the observation's axes, in encoder space
            target = obs_input(batch.next_obs, obs_shape)
            axes = tuple(range(f.ndim - 1, target.ndim))
            return jnp.sum((model.decode(params, post) - target) ** 2, axis=axes)
        return jnp.sum((model.inverse(params, z_prev, post.stoch) - batch.action) ** 2, axis=-1)

    def model_loss(params, batch, key, start=None, start_first=None):
        """World-model loss on a `[T, B]` sequence batch.

        Args:
          params: model parameters.
          batch: fields `obs [T, B, O]`, `action [T, B, A]`, `reward [T, B]`,
            `next_obs [T, B, O]`, `terminated [T, B]`, `done [T, B]` (e.g.
            `worldmodels.Transition`); image observations are uint8 `[T, B, H, W, C]`. Step `t`
            starts an episode at `t = 0` (unless `start` is given) and after `done`.
          key: PRNG key.
          start: optional `RSSMState` `[B, ...]`, the latent of `obs[0]` to continue from
            (replay context; no gradient flows into it). Default: every sequence starts an
            episode at `t = 0`.
          start_first: `[B]` bool, with `start`: where true, `obs[0]` starts from scratch anyway.

        Returns:
          `(loss, (metrics, post))`; `post` is the posterior `RSSMState` `[T, B, ...]` after
          each transition (of `next_obs`).

        Raises:
          TypeError: `batch` is not such an object (a dict, say) or lacks a field.
          ValueError: a field's shape is wrong, e.g.
            `batch.reward must have shape [T, B] = (8, 4), got (4,)`; or `start_first` is not
            `[B]`, or only one of `start` and `start_first` is given.
        """
        if (start is None) != (start_first is None):
            raise ValueError("RSSM.model_loss: pass start and start_first together")
        dims = _check_batch(batch, obs_shape, action_size)
        if start_first is not None and jnp.shape(start_first) != (dims["B"],):
            raise ValueError(
                f"RSSM.model_loss: start_first must have shape [B] = ({dims['B']},), "
                f"got {describe(start_first)}"
            )
        z_prev, post, logits = posterior_sequence(params, batch, key, start, start_first)
        prior = model.prior_logits(params, post.deter)
        dyn, rep, dyn_raw, rep_raw = kl_balance(logits, prior, c.unimix, c.free_nats)
        f = model.feat(post)
        reward_ce = dists.soft_ce(head_logits(params, "reward", f), batch.reward, **bins)
        alive = 1.0 - batch.terminated.astype(f.dtype)
        cont_nll = -dists.bernoulli_log_prob(head_logits(params, "cont", f)[..., 0], alive)
        rec = reconstruction(params, batch, z_prev, post, f)
        total = jnp.mean(
            c.dyn_scale * dyn
            + c.rep_scale * rep
            + c.rec_scale * rec
            + c.reward_scale * reward_ce
            + c.cont_scale * cont_nll
        )
        metrics = {
            "loss/model": total,
            "loss/dyn": dyn_raw.mean(),
            "loss/rep": rep_raw.mean(),
            "loss/reward": reward_ce.mean(),
            "loss/cont": cont_nll.mean(),
            "loss/decoder" if use_decoder else "loss/inverse": rec.mean(),
            "ent/post": dists.categorical_entropy(logits).sum(-1).mean(),
            "ent/prior": dists.categorical_entropy(prior).sum(-1).mean(),
        }
        return total, (metrics, post)

    return model_loss
