"""The one switch for backend-specific rewrites: maths re-expressed for XLA:CPU's fast paths.

Some functions in `worldmodels` compute the same values as their textbook form in a layout or
order that XLA:CPU runs much faster (the speedups below are those measured where each rewrite
lives, on CPU with jax 0.10, and quoted in the comments there). Each has a plain-JAX path, the
textbook form, which is what every other backend gets: the rewrites were measured on CPU only,
and a GPU or TPU compiler has its own fast paths for the plain form. Both paths give equal
values and gradients (tests/worldmodels/test_backend.py).

`cpu_rewrites()` is the effective setting: forced by `set_cpu_rewrites(True | False)`, by
`use_cpu_rewrites(...)` for a block, or by the environment variable `WM_CPU_REWRITES=0|1` (read
once, when this module is imported); otherwise on when `jax.default_backend() == "cpu"`.

The setting is read when a function is **traced**, not when it runs: a function jitted under
one setting keeps it. JAX caches traces by the function object, so even a new `jax.jit(f)` (or
`jax.make_jaxpr(f)`) of the same `f` reuses the old trace. After changing the setting, build
fresh functions and jit those (call the factory again, e.g. `make_rssm(...)`, or wrap in a new
closure), or call `jax.clear_caches()`. Eager (un-jitted) calls read it on every call.

The rewrites, where they live, why, and their plain path:

- Convolution gradients (`nets.conv._conv_same`, a `jax.custom_vjp`): the kernel and input
  gradients written by hand as canonical NHWC/HWIO convolutions (the stride-2 input gradient as
  a sub-pixel convolution). XLA:CPU's canonicalisation pass skips loop bodies, so JAX's own
  transposes run its naive convolution inside `lax.scan`, 10-60x slower: a Dreamer update at
  32x32 took 1.07 s per step in a scan against 0.14 s with these. Plain: `lax.conv_general_dilated`
  and JAX's autodiff.
- Conv kernel init (`nets.conv._conv_init`): the 4-D truncated normal sampled flat and reshaped,
  bit-identical; XLA:CPU compiles a 4-D one about 6x slower (seconds per kernel of the model's
  init compile). Plain: the fan-in truncated normal on the 4-D shape.
- RMSNorm in `nets.norm_mlp` (`nets.core._NormMLP`): `x * rsqrt(mean(x**2) + eps) * scale`, in
  that order; `nnx.RMSNorm` forms `rsqrt(...) * scale` first, a `[..., features]` array XLA:CPU
  materialises (2-3% of a Dreamer update). Plain: `nnx.RMSNorm` itself.
- Block GRU (`nets.gru._BlockGRU`): the shared embedding as one dense matmul instead of
  broadcasting it to every block, block matmuls with the blocks axis leading (XLA:CPU runs such
  dots several times faster) and the gate maths in the `[..., blocks, d]` layout (flat, XLA:CPU
  emits that fusion unvectorised, 6x slower). Plain: DreamerV3's layout, each block's input the
  concat of its state slice and the broadcast embedding, `[..., blocks, i] x [blocks, i, o]`
  einsums, gates flattened to `[..., deter]`.
- Categorical sampler over <= 8 classes (`dists.categorical_sample_st_from_uniform`): softmax
  and CDF as elementwise ops over the class slices; XLA:CPU runs a reduction over a short minor
  axis in a slow reduce fusion (1.2 ms against 0.57 ms for a `[1024, 32, 4]` prior, ~10 ms of a
  DreamerV3 size1m imagination). Plain: `jax.nn.softmax` and `jnp.cumsum`.
- Two-hot cross-entropy (`dists.soft_ce`): `logsumexp(logits) - ` the two picked logits, without
  building `[..., num_bins]` arrays (2.3x faster for a Dreamer critic's loss on CPU). Plain:
  `-sum(two_hot(target) * jax.nn.log_softmax(logits), -1)`.

Example:
  >>> import jax.numpy as jnp
  >>> from worldmodels import backend, dists
  >>> logits, target = jnp.zeros((3, 5)), jnp.ones((3,))
  >>> with backend.use_cpu_rewrites(False):   # the plain path, traced now
  ...     plain = dists.soft_ce(logits, target, 5, -2.0, 2.0)
  >>> with backend.use_cpu_rewrites(True):
  ...     rewritten = dists.soft_ce(logits, target, 5, -2.0, 2.0)
  >>> bool(jnp.allclose(plain, rewritten))
  True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax

ENV_VAR = "WM_CPU_REWRITES"


def _check_flag(flag: object, where: str) -> bool | None:
    if flag is not None and not isinstance(flag, bool):
        raise TypeError(f"{where}: flag must be True, False or None, got {flag!r}")
    return flag


def _flag_from_env() -> bool | None:
    """`WM_CPU_REWRITES`: `1` forces the rewrites on, `0` off; unset or empty leaves the default."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV_VAR} must be 0 or 1 (or unset), got {value!r}")
    return None if value == "" else value == "1"


_forced: bool | None = _flag_from_env()


def default_cpu_rewrites() -> bool:
    """The default by backend: True when `jax.default_backend() == "cpu"`, else False."""
    return jax.default_backend() == "cpu"


def cpu_rewrites() -> bool:
    """Whether the XLA:CPU rewrites are on, as read by functions while they are traced.

    Returns:
      The forced setting (`set_cpu_rewrites`, `use_cpu_rewrites`, `WM_CPU_REWRITES`) if any, else
      `default_cpu_rewrites()`.
    """
    return default_cpu_rewrites() if _forced is None else _forced


def set_cpu_rewrites(flag: bool | None) -> None:
    """Force the rewrites on (`True`) or off (`False`), or `None` for the default by backend.

    `None` also drops a setting that `WM_CPU_REWRITES` made at import. Functions traced before
    the call keep the setting they were traced under; jit fresh ones.
    """
    global _forced
    _forced = _check_flag(flag, "set_cpu_rewrites")


@contextlib.contextmanager
def use_cpu_rewrites(flag: bool | None) -> Iterator[None]:
    """`set_cpu_rewrites(flag)` for the block, then the previous forced setting (or none) again.

    Only what is traced inside the block sees `flag`: build and jit the functions there (a jitted
    function traced inside keeps `flag` when called later; one traced before keeps its own).
    """
    global _forced
    previous, _forced = _forced, _check_flag(flag, "use_cpu_rewrites")
    try:
        yield
    finally:
        _forced = previous
