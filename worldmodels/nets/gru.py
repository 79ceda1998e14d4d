"""DreamerV3's block-diagonal GRU core as a pure `(init, apply)` pair.

Example:
  >>> import jax, jax.numpy as jnp
  >>> gru = block_gru(8, (2,), 4, 2)
  >>> gru.apply(gru.init(jax.random.key(0)), jnp.zeros((3, 8 + 2))).shape
  (3, 8)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from worldmodels import backend
from worldmodels.nets.core import (
    _ACTIVATIONS,
    Activation,
    Net,
    Norm,
    _check_norm_act,
    _fan_in_init,
    _norm,
    _pure,
)


class _BlockLinear(nnx.Module):
    """`blocks` independent linear maps on consecutive slices: kernel `[blocks, in/g, out/g]`."""

    def __init__(self, in_size, out_size, blocks, *, rngs):
        self.blocks = blocks
        shape = (blocks, in_size // blocks, out_size // blocks)
        self.kernel = nnx.Param(_fan_in_init(1.0)(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_size,)))

    def __call__(self, x):
        x = x.reshape(*x.shape[:-1], self.blocks, x.shape[-1] // self.blocks)
        y = jnp.einsum("...gi,gio->...go", x, self.kernel[...])
        y = y.reshape(*y.shape[:-2], -1)
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


class _BlockGRU(nnx.Module):
    """DreamerV3's recurrent core: embed each input, then a GRU whose weights are block-diagonal."""

    def __init__(self, deter, inputs, hidden, blocks, *, norm, act, layers, rngs):
        self.sizes, self.blocks, self.act = (deter, *inputs), blocks, act
        init = _fan_in_init(1.0)
        self.embeds = nnx.List(
            [nnx.Linear(i, hidden, kernel_init=init, rngs=rngs) for i in self.sizes]
        )
        self.embed_norms = nnx.List([_norm(norm, hidden, rngs) for _ in self.sizes])
        width = deter + blocks * hidden * len(self.sizes)
        self.layers = nnx.List(
            [
                _BlockLinear(width if k == 0 else deter, deter, blocks, rngs=rngs)
                for k in range(layers)
            ]
        )
        self.norms = nnx.List([_norm(norm, deter, rngs) for _ in range(layers)])
        self.gates = _BlockLinear(deter if layers else width, 3 * deter, blocks, rngs=rngs)

    def __call__(self, x):
        act = _ACTIVATIONS[self.act]
        offsets = [sum(self.sizes[:k]) for k in range(1, len(self.sizes))]
        parts = jnp.split(x, offsets, axis=-1)
        deter = parts[0]
        embeds = [
            act(norm(lin(p)))
            for lin, norm, p in zip(self.embeds, self.embed_norms, parts, strict=True)
        ]
        emb = jnp.concatenate(embeds, axis=-1)
        cell = self._cell_cpu if backend.cpu_rewrites() else self._cell
        return cell(deter, emb)

    def _cell(self, deter, emb):
        """`deter [..., deter], emb [..., E] -> [..., deter]` in DreamerV3's layout: each block's
        input is its slice of the state and the whole embedding, through `_BlockLinear`s."""
        act, g, lead = _ACTIVATIONS[self.act], self.blocks, deter.shape[:-1]
        shared = jnp.broadcast_to(emb[..., None, :], (*lead, g, emb.shape[-1]))
        h = jnp.concatenate([deter.reshape(*lead, g, -1), shared], -1).reshape(*lead, -1)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = act(norm(layer(h)))
        gates = self.gates(h).reshape(*lead, g, -1)  # each block's reset, candidate, update
        reset, cand, update = (p.reshape(*lead, -1) for p in jnp.split(gates, 3, axis=-1))
        cand = jnp.tanh(jax.nn.sigmoid(reset) * cand)
        update = jax.nn.sigmoid(update - 1.0)  # biased towards keeping the old state
        return update * cand + (1.0 - update) * deter

    def _cell_cpu(self, deter, emb):
        """`_cell` in the layouts XLA:CPU runs fast (`backend.cpu_rewrites()`); same maths."""
        act, g, lead = _ACTIVATIONS[self.act], self.blocks, deter.shape[:-1]
        # The embedding is the same for every block, so its rows of each block's kernel make one
        # dense `[E, blocks * out]` matmul (no `blocks`-fold broadcast of the embedding); the state
        # slices go through the block-diagonal part. Same maths as `_BlockLinear` on the concat.
        d, bias = deter.shape[-1] // g, lambda b: b[...].reshape((1,) * len(lead) + (-1,))

        def first(kernel):  # kernel [g, d + E, o] on concat(deter slice, emb) in each block
            dense = jnp.moveaxis(kernel[:, d:], 0, 1).reshape(emb.shape[-1], -1)
            return self._block_matmul(deter, kernel[:, :d]) + emb @ dense

        h = None
        for layer, norm in zip(self.layers, self.norms, strict=True):
            kernel = layer.kernel[...]
            y = first(kernel) if h is None else self._block_matmul(h, kernel)
            h = act(norm(y + bias(layer.bias)))
        kernel = self.gates.kernel[...]
        gates = first(kernel) if h is None else self._block_matmul(h, kernel)
        gates_bias = self.gates.bias[...].reshape((1,) * len(lead) + (g, -1))
        gates = gates.reshape(*lead, g, -1) + gates_bias
        # The gate maths stays in the `[..., blocks, d]` layout: flattening each gate to
        # `[..., deter]` first makes XLA:CPU emit this fusion unvectorised (6x slower).
        reset, cand, update = jnp.split(gates, 3, axis=-1)
        cand = jnp.tanh(jax.nn.sigmoid(reset) * cand)
        update = jax.nn.sigmoid(update - 1.0)
        out = update * cand + (1.0 - update) * deter.reshape(*lead, g, d)
        return out.reshape(*lead, -1)

    def _block_matmul(self, x, kernel):
        """`x [..., blocks * i] -> [..., blocks * o]` by `kernel [blocks, i, o]`, block by block.

        The blocks axis is moved to the front for the batched matmul: XLA:CPU runs a dot whose
        batch axis leads several times faster than one with it between the batch and features.
        """
        g, lead = self.blocks, x.shape[:-1]
        x = jnp.moveaxis(x.reshape(*lead, g, -1), -2, 0)
        y = jnp.einsum("g...i,gio->g...o", x, kernel)
        return jnp.moveaxis(y, 0, -2).reshape(*lead, -1)


def block_gru(
    deter: int,
    inputs: Sequence[int],
    hidden: int,
    blocks: int,
    *,
    norm: Norm = "rms",
    act: Activation = "silu",
    layers: int = 1,
) -> Net:
    """DreamerV3's block-diagonal GRU core as a pure `(init, apply)` pair.

    The state and each input are embedded separately (Linear → norm → act, `hidden` wide); each of
    `blocks` blocks then sees its `deter // blocks` slice of the state plus all embeddings, runs
    `layers` block-diagonal hidden layers (normed over the full state) and emits its own reset,
    candidate and update gates (update biased by -1). Blocks cut the GRU's weights by `blocks`x.

    Args:
      deter: recurrent state size, divisible by `blocks`.
      inputs: sizes of the inputs, in the order they are concatenated after the state.
      hidden: embedding width of each input.
      blocks: number of diagonal blocks.
      norm, act: normalisation and activation.
      layers: block-diagonal hidden layers before the gates (DreamerV3: 1).

    Returns:
      `Net` whose apply maps `concat([h [..., deter], *inputs], -1) -> h' [..., deter]`.

    Example:
      >>> gru = block_gru(16, (3, 2), 8, 4)
      >>> gru.apply(gru.init(jax.random.key(0)), jnp.zeros((5, 16 + 3 + 2))).shape
      (5, 16)
    """
    for name, value in (("deter", deter), ("hidden", hidden), ("blocks", blocks)):
        if value < 1:
            raise ValueError(f"block_gru: {name} must be >= 1, got {value}")
    if any(i < 1 for i in inputs):
        raise ValueError(f"block_gru: inputs must be >= 1, got {tuple(inputs)}")
    if deter % blocks:
        raise ValueError(f"block_gru: deter ({deter}) must be divisible by blocks ({blocks})")
    if layers < 0:
        raise ValueError(f"block_gru: layers must be >= 0, got {layers}")
    _check_norm_act("block_gru", norm, act)
    return _pure(
        lambda rngs: _BlockGRU(
            deter, tuple(inputs), hidden, blocks, norm=norm, act=act, layers=layers, rngs=rngs
        )
    )
