"""What the RSSM sees: vector or image observations, their encoder and decoder, and size checks.

Vectors `[..., O]` go through `symlog` into an MLP encoder; the decoder reconstructs them in
symlog space. uint8 images `[..., H, W, C]` become `x / 255 - 0.5` (DreamerV3), a CNN
(`nets.conv_encoder`) embeds them into a flat vector, and the CNN decoder (`nets.conv_decoder`)
reconstructs them in that same space. `worldmodels.rssm.make_rssm` picks one by its `obs_shape`.

Example:
  >>> import jax.numpy as jnp
  >>> [round(x, 4) for x in obs_input(jnp.array([0.0, 3.0]), 2).tolist()]  # symlog: log(1 + 3)
  [0.0, 1.3863]
  >>> float(obs_input(jnp.full((8, 8, 3), 255, jnp.uint8), (8, 8, 3)).max())
  0.5
"""

from __future__ import annotations

import functools
from numbers import Integral
from typing import Any

import jax
import jax.numpy as jnp

from worldmodels import dists
from worldmodels.nets import (
    Net,
    check_image_shape,
    conv_decoder,
    conv_embed_size,
    conv_encoder,
    norm_mlp,
)
from worldmodels.rssm_config import RSSMConfig

__all__ = ["ObsSize", "check_last", "check_sizes", "obs_input", "obs_nets"]

ObsSize = int | tuple[int, int, int]  # a vector's length or an image's (H, W, C)


def check_last(x: jax.Array, expected: ObsSize, what: str) -> None:
    """ValueError unless `x` is `[..., *expected]` (`what` names it in the message)."""
    shape = expected if isinstance(expected, tuple) else (expected,)
    if x.shape[max(x.ndim - len(shape), 0) :] != shape:
        dims = ", ".join(map(str, shape))
        raise ValueError(f"RSSM: {what} must have shape [..., {dims}], got {x.shape}")


def check_sizes(obs_shape: Any, action_size: Any, minres: int) -> tuple[ObsSize, int]:
    """`(O or (H, W, C), A)` from `make_rssm`'s arguments, or a ValueError naming the bad one."""
    if isinstance(obs_shape, tuple | list) and len(obs_shape) == 1:
        obs_shape = obs_shape[0]  # `(O,)`, as `EnvSpec.obs_shape` gives vectors
    if isinstance(obs_shape, tuple | list):
        try:
            check_image_shape(obs_shape, minres)
        except ValueError as err:
            raise ValueError(f"make_rssm: obs_shape: {err}") from None
        obs_shape = tuple(int(s) for s in obs_shape)
    elif isinstance(obs_shape, bool) or not isinstance(obs_shape, Integral) or obs_shape < 1:
        raise ValueError(
            f"make_rssm: obs_shape must be an int >= 1 or (H, W, C), got {obs_shape!r}"
        )
    if isinstance(action_size, bool) or not isinstance(action_size, Integral) or action_size < 1:
        raise ValueError(f"make_rssm: action_size must be an int >= 1, got {action_size!r}")
    return int(obs_shape) if isinstance(obs_shape, Integral) else obs_shape, int(action_size)


def obs_nets(
    c: RSSMConfig, obs_size: ObsSize, feat_size: int, decoder: bool
) -> tuple[Net, int, Net | None]:
    """Observation encoder, its embedding size, decoder: MLPs for vectors, CNNs for images.

    Args:
      c: the model's sizes (`units`, `enc_layers`, `dec_layers`; `depth`, `mults`, `kernel`,
        `minres` for images).
      obs_size: `O` or `(H, W, C)`.
      feat_size: the decoder's input size (`deter + groups * classes`).
      decoder: whether to build the decoder (else `None`).

    Returns:
      `(encoder, E, decoder)`: the encoder maps `obs_input(obs)` to `[..., E]`, the decoder maps
      features `[..., feat_size]` back to `[..., O]` or `[..., H, W, C]` (before any squashing).
    """
    if isinstance(obs_size, tuple):
        conv = dict(mults=c.mults, kernel=c.kernel, minres=c.minres, norm=c.norm, act=c.act)
        size = conv_embed_size(obs_size, c.depth, mults=c.mults, minres=c.minres)
        dec = conv_decoder(feat_size, obs_size, c.depth, **conv) if decoder else None
        return conv_encoder(obs_size, c.depth, **conv), size, dec
    mk = functools.partial(norm_mlp, norm=c.norm, act=c.act)
    dec = mk(feat_size, (c.units,) * c.dec_layers, obs_size) if decoder else None
    return mk(obs_size, (c.units,) * c.enc_layers, None), c.units, dec


def obs_input(obs: jax.Array, obs_size: ObsSize) -> jax.Array:
    """Encoder input and reconstruction target: `symlog(obs)`, or `obs / 255 - 0.5` for images.

    Raises:
      ValueError: `obs` is not `[..., O]` or `[..., H, W, C]`, or an image is not uint8.
    """
    check_last(obs, obs_size, "observation")
    if not isinstance(obs_size, tuple):
        return dists.symlog(obs)
    if obs.dtype != jnp.uint8:
        raise ValueError(f"RSSM: image observations must be uint8, got {obs.dtype} {obs.shape}")
    return obs.astype(jnp.float32) / 255.0 - 0.5
