"""Core network building blocks as pure `(init, apply)` pairs: MLPs, ensembles, SimNorm.

`Net` and `_pure` (an NNX module constructor into a pure pair) live here, with the DreamerV3-style
`norm_mlp` and the helpers the other nets modules share (norms, fan-in init, activations).

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

from worldmodels import backend

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


# --- DreamerV3-style layers: RMSNorm/LayerNorm, fan-in init ----------------------------------

Norm = Literal["rms", "layer"]
_NORM_EPS = 1e-4  # DreamerV3's norm epsilon


def _fan_in_init(scale: float):
    """Truncated normal with variance `scale**2 / fan_in` (DreamerV3's `trunc_normal_in`)."""
    if scale == 0.0:
        return nnx.initializers.zeros_init()
    return nnx.initializers.variance_scaling(scale**2, "fan_in", "truncated_normal")


def _norm(kind: str, size: int, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "rms":
        return nnx.RMSNorm(size, epsilon=_NORM_EPS, rngs=rngs)
    return nnx.LayerNorm(size, epsilon=_NORM_EPS, rngs=rngs)


def _check_norm_act(where: str, norm: str, act: str) -> None:
    if norm not in ("rms", "layer"):
        raise ValueError(f"{where}: norm must be 'rms' or 'layer', got {norm!r}")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{where}: act must be one of {sorted(_ACTIVATIONS)}, got {act!r}")


class _NormMLP(nnx.Module):
    """Linear → norm → act per hidden layer, then an optional plain output layer."""

    def __init__(self, sizes, out_size, *, norm, act, out_scale, rngs):
        self.act = act
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        init = _fan_in_init(1.0)
        self.layers = nnx.List([nnx.Linear(i, o, kernel_init=init, rngs=rngs) for i, o in pairs])
        self.norms = nnx.List([_norm(norm, o, rngs) for _, o in pairs])
        last_init = _fan_in_init(out_scale)
        self.out = (
            None
            if out_size is None
            else nnx.Linear(sizes[-1], out_size, kernel_init=last_init, rngs=rngs)
        )

    def __call__(self, x):
        act = _ACTIVATIONS[self.act]
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = act(self._normalize(norm, layer(x)))
        return x if self.out is None else self.out(x)

    @staticmethod
    def _normalize(norm, x):
        """`norm(x)`; with `backend.cpu_rewrites()`, RMSNorm as `x * rsqrt(mean(x**2) + eps) *
        scale`: `nnx.RMSNorm` forms `rsqrt(...) * scale` first, a `[..., features]` array that
        XLA:CPU materialises on large batches (the actor and critic on all imagined states: 2-3%
        of a Dreamer update)."""
        if not (isinstance(norm, nnx.RMSNorm) and backend.cpu_rewrites()):
            return norm(x)
        scale = norm.scale[...].reshape((1,) * (x.ndim - 1) + (-1,))
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + norm.epsilon) * scale


def norm_mlp(
    in_size: int,
    hidden: Sequence[int],
    out_size: int | None,
    *,
    norm: Norm = "rms",
    act: Activation = "silu",
    out_scale: float = 1.0,
) -> Net:
    """A DreamerV3-style MLP: Linear → RMSNorm (or LayerNorm) → SiLU per hidden layer.

    Weights use a fan-in scaled truncated normal; the output layer's scale is `out_scale`
    (0 gives a zero-initialised output, DreamerV3's reward and value heads).

    Args:
      in_size: input features.
      hidden: hidden layer widths.
      out_size: output features of a final plain linear layer, or `None` for no output layer
        (the output is then the last hidden activation; `hidden` must not be empty).
      norm: `"rms"` or `"layer"`.
      act: hidden activation.
      out_scale: standard-deviation multiplier of the output layer's init.

    Returns:
      `Net` mapping `[..., in_size] -> [..., out_size or hidden[-1]]`.

    Example:
      >>> net = norm_mlp(4, (32,), 2)
      >>> net.apply(net.init(jax.random.key(0)), jnp.ones((8, 4))).shape
      (8, 2)
    """
    sizes = (in_size, *hidden)
    for value in (*sizes, *(() if out_size is None else (out_size,))):
        if value < 1:
            raise ValueError(f"norm_mlp: sizes must be >= 1, got {(*sizes, out_size)}")
    if out_size is None and not hidden:
        raise ValueError("norm_mlp: out_size=None needs at least one hidden layer")
    _check_norm_act("norm_mlp", norm, act)
    if out_scale < 0:
        raise ValueError(f"norm_mlp: out_scale must be >= 0, got {out_scale}")
    return _pure(
        lambda rngs: _NormMLP(sizes, out_size, norm=norm, act=act, out_scale=out_scale, rngs=rngs)
    )
