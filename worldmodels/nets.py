"""Neural network building blocks as pure `(init, apply)` pairs.

This is the one module that imports Flax. Modules are Flax NNX, but callers never see them: `init`
returns a plain nested dict of arrays and `apply` rebuilds the module inside the traced function
(`nnx.merge`, free under jit), so parameters are ordinary pytrees for `jax.grad`, optax and orbax.

Example:
  >>> import jax, jax.numpy as jnp
  >>> net = mlp(4, (32, 32), 2)
  >>> params = net.init(jax.random.key(0))
  >>> net.apply(params, jnp.ones((8, 4))).shape
  (8, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

Activation = Literal["mish", "silu", "relu", "elu", "tanh"]
OutAct = Literal["none", "simnorm"]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "mish": jax.nn.mish,
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "tanh": jnp.tanh,
}


class Net(NamedTuple):
    """A network as pure functions.

    Attributes:
      init: `(key) -> params`, a nested dict of arrays.
      apply: `(params, x [..., in]) -> y [..., out]`; any leading batch axes.
    """

    init: Callable[[jax.Array], dict]
    apply: Callable[[dict, jax.Array], jax.Array]


def simnorm(x: jax.Array, group_size: int = 8) -> jax.Array:
    """Simplicial normalisation (TD-MPC2): softmax over consecutive groups of `group_size`.

    Args:
      x: `[..., D]` with `D` divisible by `group_size`.

    Returns:
      `[..., D]`, each group summing to one.
    """
    shape = x.shape
    if shape[-1] % group_size:
        raise ValueError(
            f"simnorm: last dim {shape[-1]} is not divisible by group_size {group_size}"
        )
    x = x.reshape(*shape[:-1], shape[-1] // group_size, group_size)
    return jax.nn.softmax(x, axis=-1).reshape(shape)


class _MLP(nnx.Module):
    """Linear → LayerNorm → act per hidden layer; last layer plain, or normed + SimNorm."""

    def __init__(self, sizes, *, act, out_act, simnorm_dim, zero_last, rngs):
        init = nnx.initializers.truncated_normal(stddev=0.02)  # TD-MPC2's weight init
        self.act, self.out_act, self.simnorm_dim = act, out_act, simnorm_dim
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.layers = nnx.List(
            [nnx.Linear(i, o, kernel_init=init, rngs=rngs) for i, o in pairs[:-1]]
        )
        self.norms = nnx.List([nnx.LayerNorm(o, rngs=rngs) for _, o in pairs[:-1]])
        last_init = nnx.initializers.zeros_init() if zero_last else init
        self.out = nnx.Linear(*pairs[-1], kernel_init=last_init, rngs=rngs)
        self.out_norm = nnx.LayerNorm(pairs[-1][1], rngs=rngs) if out_act == "simnorm" else None

    def __call__(self, x):
        act = _ACTIVATIONS[self.act]
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = act(norm(layer(x)))
        x = self.out(x)
        if self.out_act == "simnorm":
            x = simnorm(self.out_norm(x), self.simnorm_dim)
        return x


def _str_keys(tree):
    """Integer keys (NNX list indices) as strings, so every checkpoint format takes the params."""
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def _pure(build: Callable[[nnx.Rngs], nnx.Module]) -> Net:
    """Wrap an NNX module constructor into a pure `(init, apply)` pair."""
    abstract = nnx.eval_shape(lambda: build(nnx.Rngs(params=jax.random.key(0))))
    graphdef, abstract_state = nnx.split(abstract)

    def init(key: jax.Array) -> dict:
        return _str_keys(nnx.to_pure_dict(nnx.state(build(nnx.Rngs(params=key)))))

    def apply(params: dict, x: jax.Array) -> jax.Array:
        state = jax.tree.map(lambda a: a, abstract_state)  # a fresh copy to fill in
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)(x)

    return Net(init, apply)


def mlp(
    in_size: int,
    hidden: Sequence[int],
    out_size: int,
    *,
    act: Activation = "mish",
    out_act: OutAct = "none",
    simnorm_dim: int = 8,
    zero_last: bool = False,
) -> Net:
    """An MLP with LayerNorm and an activation after each hidden layer.

    Args:
      in_size: input features.
      hidden: hidden layer widths (may be empty: one linear layer).
      out_size: output features.
      act: hidden activation (TD-MPC2 uses Mish, DreamerV3 SiLU).
      out_act: `"simnorm"` for a LayerNorm + SimNorm output (TD-MPC2 latents), else linear.
      simnorm_dim: SimNorm group size.
      zero_last: initialise the output layer to zero (TD-MPC2's reward and Q heads).

    Returns:
      `Net` mapping `[..., in_size] -> [..., out_size]`.
    """
    for name, value in (
        ("in_size", in_size),
        ("out_size", out_size),
        *(("hidden", h) for h in hidden),
    ):
        if value < 1:
            raise ValueError(f"mlp: {name} must be >= 1, got {value}")
    if act not in _ACTIVATIONS:
        raise ValueError(f"mlp: act must be one of {sorted(_ACTIVATIONS)}, got {act!r}")
    sizes = (in_size, *hidden, out_size)
    return _pure(
        lambda rngs: _MLP(
            sizes, act=act, out_act=out_act, simnorm_dim=simnorm_dim, zero_last=zero_last, rngs=rngs
        )
    )


def ensemble(net: Net, num: int) -> Net:
    """Stack `num` independent copies of `net`; apply runs them all in one vmapped call.

    Args:
      net: the member network.
      num: ensemble size.

    Returns:
      `Net` whose params have a leading `[num]` axis and whose apply maps
      `[..., in] -> [num, ..., out]`.
    """
    if num < 1:
        raise ValueError(f"ensemble: num must be >= 1, got {num}")

    def init(key: jax.Array) -> dict:
        return jax.vmap(net.init)(jax.random.split(key, num))

    def apply(params: dict, x: jax.Array) -> jax.Array:
        return jax.vmap(net.apply, in_axes=(0, None))(params, x)

    return Net(init, apply)
