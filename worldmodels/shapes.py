"""Trace-time checks of what user functions return and of batch containers, by static shape.

Shapes and dtypes are static under `jit`, so these run once per trace, in Python, on the
abstract values (tracers) a traced function already produced: nothing is added to the compiled
program, and nothing is traced twice. Each error names the function or field at fault, the shape
it had and the shape it should have had.

Dtype rule: rewards and values must be floating point. Bools are refused (a reward of
`done` or `alive` is almost always a slip), and so are ints and complex numbers (the planners'
argmax, softmax weights and gradients are only meaningful on real-valued returns); cast with
`.astype(jnp.float32)` where an integer reward is meant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from worldmodels.types import Array, Latent, PRNGKey, StepFn


def describe(x: Any) -> str:
    """`'(1,) float32'` for an array, a tracer or a Python number; the type name otherwise."""
    try:
        aval = jax.typeof(x)
    except TypeError:
        return type(x).__name__
    return f"{tuple(aval.shape)} {aval.dtype}"


def _check_real_scalar(x: Any, fn: str, what: str) -> None:
    """Raises unless `x` is a floating-point `[]`: `ValueError` for a shape, `TypeError` a dtype."""
    try:
        aval = jax.typeof(x)
    except TypeError:
        raise TypeError(
            f"{fn} must return {what} as an array of shape [], got {describe(x)}"
        ) from None
    if aval.shape != ():
        raise ValueError(
            f"{fn} must return {what} of shape [] (one scalar per latent), got shape "
            f"{describe(x)}; write {fn} for one latent (planners vmap it over samples)"
        )
    if not jnp.issubdtype(aval.dtype, jnp.floating):
        raise TypeError(
            f"{fn} must return a floating-point {what} of shape [], got shape {describe(x)} "
            f"(cast it, e.g. with .astype(jnp.float32))"
        )


def check_latent(before: Latent, after: Latent) -> None:
    """Raises unless `step_fn`'s new latent `after` is shaped like the `before` it was given.

    Same pytree structure, and per leaf the same shape and dtype (a weakly typed input leaf,
    such as a Python number, may change dtype: `lax.scan` promotes it).

    Raises:
      ValueError: for a different structure or leaf shape. TypeError: for a different dtype.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(before)
    new_leaves, new_treedef = jax.tree_util.tree_flatten(after)
    if new_treedef != treedef:
        raise ValueError(
            "step_fn must return a latent with the pytree structure of the one it was given: "
            f"got {new_treedef}, expected {treedef}"
        )
    for (path, old), new in zip(leaves, new_leaves, strict=True):
        try:
            old_aval, new_aval = jax.typeof(old), jax.typeof(new)
        except TypeError:
            raise TypeError(
                f"step_fn must return a latent of arrays: leaf latent{jax.tree_util.keystr(path)} "
                f"went in as {describe(old)}, came out as {describe(new)}"
            ) from None
        if old_aval.shape == new_aval.shape and (
            old_aval.dtype == new_aval.dtype or old_aval.weak_type
        ):
            continue
        error = ValueError if old_aval.shape != new_aval.shape else TypeError
        raise error(
            f"step_fn must return a latent shaped like the one it was given: leaf "
            f"latent{jax.tree_util.keystr(path)} went in as {describe(old)}, came out as "
            f"{describe(new)}"
        )


def call_step(step_fn: StepFn, latent: Latent, action: Array, key: PRNGKey) -> tuple:
    """`step_fn(latent, action, key)`, its `(latent, reward [])` checked at trace time.

    Raises:
      ValueError: the reward is not `[]`, or the new latent's structure or shapes differ.
      TypeError: the output is not a pair, the reward is not floating point, or a latent leaf
        changed dtype.
    """
    out = step_fn(latent, action, key)
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise TypeError(f"step_fn must return a pair (latent, reward []), got {type(out).__name__}")
    _check_real_scalar(out[1], "step_fn", "reward")
    check_latent(latent, out[0])
    return tuple(out)


def call_value(value_fn: Callable, latent: Latent, key: PRNGKey) -> Array:
    """`value_fn(latent, key)`, checked at trace time to be a floating-point `[]`.

    Raises:
      ValueError: for a shape other than `[]`. TypeError: for a non-floating dtype.
    """
    value = value_fn(latent, key)
    _check_real_scalar(value, "value_fn", "value")
    return value


def call_prior(prior_fn: Callable, latent: Latent, key: PRNGKey, action_size: int) -> Array:
    """`prior_fn(latent, key)`, checked at trace time to be an action `[A]`.

    Raises:
      ValueError: for a shape other than `(action_size,)`.
    """
    action = prior_fn(latent, key)
    if np.shape(action) != (action_size,):
        raise ValueError(
            f"prior_fn must return an action of shape [A] = ({action_size},) for one latent, "
            f"got shape {describe(action)}"
        )
    return action


def check_batch(
    batch: Any,
    fields: Sequence[tuple[str, tuple[str, ...]]],
    owner: str,
    sizes: dict[str, int],
) -> dict[str, int]:
    """Raises unless `batch` has every named field, each an array of its expected shape.

    Symbolic axes (`'H'`, `'B'`) are bound by the first field that has them and must then agree
    across fields; axes named in `sizes` (`'O'`, `'A'`) are known in advance.

    Args:
      batch: a `Transition`-like container read by attribute (e.g. `worldmodels.Transition`).
      fields: `(name, axes)` per field the loss reads, in the order to bind axes, e.g.
        `('reward', ('H', 'B'))`.
      owner: who reads the batch, for the messages (e.g. `'TDMPCModel.model_loss'`).
      sizes: the known axes, e.g. `{'O': 5, 'A': 2}`.

    Returns:
      Every axis's size, `sizes` plus the bound ones.

    Raises:
      TypeError: `batch` is a mapping (a dict) or lacks a field, or a field is not an array.
      ValueError: a field has the wrong shape, e.g.
        `batch.reward must have shape [H, B] = (3, 16), got (16,)`.
    """
    names = [name for name, _ in fields]
    missing = [name for name in names if not hasattr(batch, name)]
    if isinstance(batch, Mapping) or missing:
        lacking = "" if isinstance(batch, Mapping) else f" lacking {', '.join(missing)}"
        raise TypeError(
            f"{owner}: batch must be a Transition-like object with array fields "
            f"{', '.join(names)} read as attributes (e.g. worldmodels.Transition, a "
            f"flax.struct.dataclass), got {type(batch).__name__}{lacking}"
        )
    dims = dict(sizes)
    for name, axes in fields:
        value = getattr(batch, name)
        if not hasattr(value, "shape"):
            raise TypeError(
                f"{owner}: batch.{name} must be an array [{', '.join(axes)}], got {describe(value)}"
            )
        shape = tuple(value.shape)
        expected = [dims.get(axis, axis) for axis in axes]
        if len(shape) != len(axes) or any(
            isinstance(e, int) and e != s for e, s in zip(expected, shape, strict=False)
        ):
            known = all(isinstance(e, int) for e in expected)
            want = str(tuple(expected)) if known else f"[{', '.join(map(str, expected))}]"
            raise ValueError(
                f"{owner}: batch.{name} must have shape [{', '.join(axes)}] = {want}, got {shape}"
            )
        dims.update(zip(axes, shape, strict=True))
    return dims
