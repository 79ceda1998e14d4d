"""`lax.scan` over time whose parameter gradient is taken after the loop, batched over all steps.

Reverse-mode autodiff of `lax.scan(step(params, ...))` accumulates the gradient of `params` inside
the reversed loop: at every step, each weight's gradient is an outer product over that step's
small batch (`[in, B] @ [B, out]`) added into a full-size accumulator. With the batches of a world
model's training sequences (`B` = 16), those per-step products and additions are most of the
backward loop's time on a CPU. `hoisted_scan` computes the same gradient differently: the loop's
VJP is taken with the parameters as constants, so the reversed loop only carries the cotangents of
the carry and inputs, and the parameter gradient is one VJP of `step`, vmapped over all `T` steps
at once, so each weight's gradient is a single `[in, T * B] @ [T * B, out]` matmul. The price is
one batched forward pass of `step` over all `T` steps in the backward pass.

Example:
  >>> import jax, jax.numpy as jnp
  >>> def step(w, h, x):
  ...     h = jnp.tanh(h @ w + x)
  ...     return h, h.sum(-1)
  >>> w, h0, xs = jnp.eye(3) * 0.5, jnp.zeros((2, 3)), jnp.ones((4, 2, 3))
  >>> loss = lambda scan: lambda w: scan(step, w, h0, xs)[1].sum()
  >>> plain = lambda f, w, c, x: jax.lax.scan(lambda c, x: f(w, c, x), c, x)
  >>> bool(jnp.allclose(jax.grad(loss(hoisted_scan))(w), jax.grad(loss(plain))(w), atol=1e-6))
  True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["hoisted_scan"]


def hoisted_scan(
    step: Callable[[Any, Any, Any], tuple[Any, Any]], params: Any, carry: Any, xs: Any
) -> tuple[Any, Any]:
    """`lax.scan(lambda c, x: step(params, c, x), carry, xs)`, with the gradient of `params`
    computed after the loop as one VJP batched over all steps (see the module docstring).

    Values and gradients (of `params`, `carry` and the float leaves of `xs`) equal those of the
    plain scan; integer, bool and key leaves of `xs` (e.g. per-step PRNG keys) get no gradient.
    `step` must be a pure function of its arguments: the backward pass runs it again, batched
    over all steps, on the same inputs.

    Args:
      step: `(params, carry, x) -> (carry, y)`.
      params: pytree closed over by every step (the network weights).
      carry: the initial carry.
      xs: pytree of per-step inputs with a leading time axis `[T, ...]`.

    Returns:
      `(final carry, ys [T, ...])`, as `lax.scan`.
    """
    return _hoisted(step, params, carry, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _hoisted(step, params, carry, xs):
    return jax.lax.scan(functools.partial(step, params), carry, xs)


def _split(xs):
    """`(floats, others, merge)`: the float leaves of `xs`, the rest, and their inverse."""
    leaves, treedef = jax.tree.flatten(xs)
    diff = [jnp.issubdtype(x.dtype, jnp.inexact) for x in leaves]

    def merge(floats, others):
        floats, others = iter(floats), iter(others)
        return treedef.unflatten([next(floats) if d else next(others) for d in diff])

    floats = [x for x, d in zip(leaves, diff, strict=True) if d]
    others = [x for x, d in zip(leaves, diff, strict=True) if not d]
    return floats, others, merge


def _fwd(step, params, carry, xs):
    floats, others, merge = _split(xs)
    # `nudge` (zeros) is added to the carry entering each step: its cotangent is the cotangent of
    # the carry entering each step, which the plain VJP of a scan does not return.
    steps = jax.tree.leaves(xs)[0].shape[0]
    nudge = jax.tree.map(lambda c: jnp.zeros((steps, *c.shape), c.dtype), carry)

    def run(carry, floats, nudge):
        def body(c, inputs):
            x_floats, x_others, n = inputs
            c = jax.tree.map(jnp.add, c, n)
            c_next, y = step(params, c, merge(x_floats, x_others))
            return c_next, (y, c)

        return jax.lax.scan(body, carry, (floats, others, nudge))

    # `params` is a constant of this VJP: the backward loop computes no weight gradient, and
    # JAX keeps the weights out of the per-step residuals (they are loop-invariant).
    (final, (ys, carries)), vjp = jax.vjp(run, carry, floats, nudge)
    return (final, ys), (params, carries, xs, vjp)


def _bwd(step, residuals, cotangents):
    params, carries, xs, vjp = residuals
    ct_final, ct_ys = cotangents
    ct_carry0, ct_floats, ct_in = vjp((ct_final, (ct_ys, jax.tree.map(jnp.zeros_like, carries))))
    # The carry leaving step t enters step t + 1; the last one is the final carry.
    ct_out = jax.tree.map(lambda n, f: jnp.concatenate([n[1:], f[None]]), ct_in, ct_final)
    batched = jax.vmap(step, in_axes=(None, 0, 0))
    _, vjp_params = jax.vjp(lambda p: batched(p, carries, xs), params)
    (ct_params,) = vjp_params((ct_out, ct_ys))
    _, others, merge = _split(xs)
    ct_others = [np.zeros(x.shape, dtype=jax.dtypes.float0) for x in others]
    return ct_params, ct_carry0, merge(ct_floats, ct_others)


_hoisted.defvjp(_fwd, _bwd)
