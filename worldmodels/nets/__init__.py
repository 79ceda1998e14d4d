"""Neural network building blocks as pure `(init, apply)` pairs.

This is the one package that imports Flax. Modules are Flax NNX, but callers never see them: `init`
returns a plain nested dict of arrays and `apply` rebuilds the module inside the traced function
(`nnx.merge`, free under jit), so parameters are ordinary pytrees for `jax.grad`, optax and orbax.

Modules, one idea each:
  core: `Net`, `mlp`, `ensemble`, `simnorm`, `norm_mlp` (and the norms and inits they share).
  gru: `block_gru`, DreamerV3's block-diagonal GRU core.
  conv: `conv_encoder`, `conv_decoder`, `check_image_shape`, `conv_embed_size` (images).

Example:
  >>> import jax, jax.numpy as jnp
  >>> net = mlp(4, (32, 32), 2)
  >>> params = net.init(jax.random.key(0))
  >>> net.apply(params, jnp.ones((8, 4))).shape
  (8, 2)
"""

from worldmodels.nets.conv import check_image_shape, conv_decoder, conv_embed_size, conv_encoder
from worldmodels.nets.core import (
    Activation,
    Net,
    Norm,
    OutAct,
    ensemble,
    mlp,
    norm_mlp,
    simnorm,
)
from worldmodels.nets.gru import block_gru

__all__ = [
    "Activation",
    "Net",
    "Norm",
    "OutAct",
    "block_gru",
    "check_image_shape",
    "conv_decoder",
    "conv_embed_size",
    "conv_encoder",
    "ensemble",
    "mlp",
    "norm_mlp",
    "simnorm",
]
