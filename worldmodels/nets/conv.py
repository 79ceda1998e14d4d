"""DreamerV3's image encoder and decoder: NHWC convolutions between `[H, W]` and `minres`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> enc = conv_encoder((8, 8, 1), 2)
  >>> enc.apply(enc.init(jax.random.key(0)), jnp.zeros((3, 8, 8, 1))).shape
  (3, 64)
"""

from __future__ import annotations

import math
import operator
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


def check_image_shape(image_shape: Sequence[int], minres: int = 4) -> int:
    """Check that `conv_encoder`/`conv_decoder` can take images of `image_shape`.

    Args:
      image_shape: `(H, W, C)`, square, with `H = minres * 2**k` for some `k >= 1`.
      minres: the resolution that the encoder's stride-2 stages halve the image down to.

    Returns:
      `k`, the number of stride-2 stages.

    Raises:
      ValueError: naming the shape and the sizes that would work.
    """
    if not isinstance(minres, int) or minres < 1:
        raise ValueError(f"image: minres must be an int >= 1, got {minres!r}")
    sizes = ", ".join(str(minres * 2**k) for k in range(1, 6))
    use = f"use a square image of size {sizes}, ... (minres * 2**k) or change minres"
    try:
        shape = tuple(operator.index(s) for s in image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3:
        raise ValueError(f"image shape must be (H, W, C) ints, got {image_shape!r}")
    h, w, channels = shape
    if channels < 1:
        raise ValueError(f"image shape {shape}: channels must be >= 1, got {channels}")
    if h != w:
        raise ValueError(f"image shape {shape}: height {h} != width {w}; {use}")
    k = max(h // minres, 1).bit_length() - 1
    if k < 1 or h != minres * 2**k:
        raise ValueError(
            f"image shape {shape}: size {h} is not minres * 2**k with k >= 1 "
            f"(minres={minres}); {use}"
        )
    return k


def _conv_depths(image_shape, depth, mults, minres, where) -> tuple[int, ...]:
    """Channels after each stride-2 stage: `depth * mults[i]`, the last mult repeating."""
    stages = check_image_shape(image_shape, minres)
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"{where}: depth must be an int >= 1, got {depth!r}")
    if not mults or any(not isinstance(m, int) or m < 1 for m in mults):
        raise ValueError(f"{where}: mults must be non-empty ints >= 1, got {tuple(mults)!r}")
    return tuple(depth * mults[min(i, len(mults) - 1)] for i in range(stages))


def conv_embed_size(
    image_shape: Sequence[int], depth: int, *, mults: Sequence[int] = (2, 3, 4, 4), minres: int = 4
) -> int:
    """Length of `conv_encoder`'s flat embedding: `minres**2 * depth * mults[stages - 1]`."""
    return minres**2 * _conv_depths(image_shape, depth, mults, minres, "conv_embed_size")[-1]


def _check_kernel(where: str, kernel: int) -> None:
    if not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f"{where}: kernel must be an int >= 1, got {kernel!r}")


def _conv_init(scale: float):
    """`_fan_in_init` for conv kernels `[k, k, in, out]`; with `backend.cpu_rewrites()`, sampled
    flat and reshaped.

    Bit-identical values; XLA on CPU compiles a 4-D truncated normal about 6x slower than a 1-D one
    (seconds per kernel), which dominated the model's init compile.
    """
    if scale == 0.0:
        return nnx.initializers.zeros_init()
    base = _fan_in_init(scale)

    def init(key, shape, dtype=jnp.float32):
        if not backend.cpu_rewrites():
            return base(key, shape, dtype)
        # variance_scaling reads fan-in from the shape: give it `[fan_in, out]`.
        flat = base(key, (math.prod(shape[:-1]), shape[-1]), dtype)
        return flat.reshape(shape)

    return init


# With `backend.cpu_rewrites()`, the convolutions' gradients are written out by hand (`_conv_same`)
# as convolutions in XLA's canonical NHWC/HWIO/NHWC form. JAX's own transpose rules emit the kernel
# gradient with batch and features swapped (`f01b_i01o->01bf`) and the stride-1 input gradient with
# an `01oi` kernel. XLA:CPU's `ConvCanonicalization` pass transposes such convolutions into its fast
# (Eigen/YNNPACK) form, but it visits only the entry computation: inside a `lax.scan` body (an XLA
# while loop, where the training loop runs) they fall back to XLA's naive elemental convolution,
# 10-60x slower. The forward convolutions were canonical already and fast in loops. A Dreamer update
# (`DreamerConfig.cpu()`, 2 CPU cores) took 1.07 s per step inside `lax.scan` against 0.24 s jitted
# alone at 32x32, and 7.6 s against 0.80 s at 64x64; with these gradients 0.14 s and 0.44 s inside
# `lax.scan` (0.19 s and 0.61 s alone). The stride-2 input gradient is a sub-pixel convolution (see
# `_conv_same_bwd`), not the usual one over the zero-dilated `dy`, which XLA:CPU only has a naive
# kernel for (6-9x slower). Convolutions as im2col matmuls (strided slices + one dot) are also fast
# in loops, but were 2-3x slower than canonical convolutions on these layers.
_NHWC = ("NHWC", "HWIO", "NHWC")


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """SAME padding of one spatial axis (`nnx.Conv`'s default): `ceil(size / stride)` outputs."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_nhwc(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """`x [N, H, W, Cin]` convolved with `kernel [K, K, Cin, Cout]`, SAME padding, `stride`."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=_NHWC
    )


def _conv_same_fwd(x, kernel, stride):
    return _conv_nhwc(x, kernel, stride), (x, kernel)


def _conv_same_bwd(stride, res, dy):
    x, kernel = res
    (kh, kw), (h, w), (ho, wo) = kernel.shape[:2], x.shape[1:3], dy.shape[1:3]
    pads = (_same_pads(h, kh, stride), _same_pads(w, kw, stride))
    # dkernel[i, j, c, o] = sum_{n, y, x} xpad[n, s*y + i, s*x + j, c] * dy[n, y, x, o]: the image
    # convolved with dy (dilated by the stride) as the kernel, input channels as the batch and the
    # images as the contracted features. Its output is at least `[kh, kw]` (more if stride > kh).
    dkernel = jax.lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0),
        dy.transpose(1, 2, 0, 3),
        (1, 1),
        pads,
        rhs_dilation=(stride, stride),
        dimension_numbers=_NHWC,
    )
    dkernel = dkernel[:, :kh, :kw].transpose(1, 2, 0, 3)
    # dx[n, u - lo, c] (u in padded coordinates) = sum_i dy[n, (u - i) / s] * kernel[i]^T over
    # the taps i with u - i divisible by s. Split u = s*a + r: phase r sees only the taps
    # i = r + s*t, so it is a stride-1 convolution of dy with that sub-kernel (flipped), and the
    # s*s phases are one convolution with s*s times the channels, rearranged depth-to-space. (The
    # textbook form convolves dy dilated by s, mostly zeros: XLA:CPU has no fast path for that,
    # 6-9x slower at stride 2.) Below, a runs over [a0, a1) and the phases' taps are zero-padded
    # to `ceil(k / s)`.
    (mh, mw), s = (-(-kh // stride), -(-kw // stride)), stride
    cin, cout = kernel.shape[2:]
    sub = jnp.pad(kernel, ((0, s * mh - kh), (0, s * mw - kw), (0, 0), (0, 0)))
    sub = sub.reshape(mh, s, mw, s, cin, cout)[::-1, :, ::-1]  # [t_h, r_h, t_w, r_w, cin, cout]
    sub = sub.transpose(0, 2, 5, 1, 3, 4).reshape(mh, mw, cout, s * s * cin)
    dx_pads, crops = [], []
    for m, n, n_out, (lo, _) in zip((mh, mw), (h, w), (ho, wo), pads, strict=True):
        a0, a1 = lo // s, -(-(lo + n) // s)
        dx_pads.append((m - 1 - a0, a1 - n_out))
        crops.append(lo - s * a0)
    dx = jax.lax.conv_general_dilated(dy, sub, (1, 1), dx_pads, dimension_numbers=_NHWC)
    dx = _depth_to_space(dx, s)[:, crops[0] : crops[0] + h, crops[1] : crops[1] + w]
    return dx, dkernel


_conv_same = jax.custom_vjp(_conv_nhwc, nondiff_argnums=(2,))  # `_conv_nhwc`, canonical grads
_conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def _conv(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """`conv(x)` for an NHWC `nnx.Conv` with SAME padding: by `_conv_same` (fast in loops on
    XLA:CPU) with `backend.cpu_rewrites()`, else the plain convolution and JAX's gradients."""
    strides = conv.strides if isinstance(conv.strides, tuple) else (conv.strides or 1,) * 2
    assert conv.padding == "SAME" and strides[0] == strides[1], (conv.padding, strides)
    fn = _conv_same if backend.cpu_rewrites() else _conv_nhwc
    return fn(x, conv.kernel[...], strides[0]) + conv.bias[...].reshape(1, 1, 1, -1)


class _ConvEncoder(nnx.Module):
    """Stride-2 Conv → norm → act per stage; the `[minres, minres, depth]` output flattened."""

    def __init__(self, channels, depths, kernel, *, norm, act, rngs):
        self.act = act
        pairs = list(zip((channels, *depths[:-1]), depths, strict=True))
        self.convs = nnx.List(
            [
                nnx.Conv(i, o, (kernel, kernel), 2, kernel_init=_conv_init(1.0), rngs=rngs)
                for i, o in pairs
            ]
        )
        self.norms = nnx.List([_norm(norm, o, rngs) for o in depths])

    def __call__(self, x):
        act, lead = _ACTIVATIONS[self.act], x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])  # one batch axis for the convolutions
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = act(norm(_conv(conv, x)))
        return x.reshape(*lead, -1)


def _depth_to_space(x: jax.Array, s: int = 2) -> jax.Array:
    """`[N, h, w, s*s*c] -> [N, s*h, s*w, c]`: each pixel's channels hold its sxs output block."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, s, s, c // s**2).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, s * h, s * w, c // s**2)


class _ConvDecoder(nnx.Module):
    """Linear → norm → act to `[minres, minres, depth]`, then 2x upsampling stages."""

    def __init__(self, in_size, channels, depths, kernel, minres, *, norm, act, out_scale, rngs):
        self.act, self.shape = act, (minres, minres, depths[-1])
        init, size = _conv_init(1.0), ((kernel + 1) // 2,) * 2
        self.space = nnx.Linear(
            in_size, minres**2 * depths[-1], kernel_init=_fan_in_init(1.0), rngs=rngs
        )
        self.space_norm = _norm(norm, depths[-1], rngs)
        outs = depths[-2::-1]  # the encoder's channels in reverse
        pairs = list(zip(depths[:0:-1], outs, strict=True))
        self.convs = nnx.List(
            [nnx.Conv(i, 4 * o, size, kernel_init=init, rngs=rngs) for i, o in pairs]
        )
        self.norms = nnx.List([_norm(norm, o, rngs) for o in outs])
        last_init = _conv_init(out_scale)
        self.out = nnx.Conv(depths[0], 4 * channels, size, kernel_init=last_init, rngs=rngs)

    def __call__(self, x):
        act, lead = _ACTIVATIONS[self.act], x.shape[:-1]
        x = self.space(x.reshape(-1, x.shape[-1])).reshape(-1, *self.shape)
        x = act(self.space_norm(x))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = act(norm(_depth_to_space(_conv(conv, x))))
        x = _depth_to_space(_conv(self.out, x))
        return x.reshape(*lead, *x.shape[1:])


def conv_encoder(
    image_shape: Sequence[int],
    depth: int,
    *,
    mults: Sequence[int] = (2, 3, 4, 4),
    kernel: int = 5,
    minres: int = 4,
    norm: Norm = "rms",
    act: Activation = "silu",
) -> Net:
    """DreamerV3's image encoder: stride-2 Conv → norm → act until `minres`, then flatten.

    Stage `i` has `depth * mults[i]` channels (the last mult repeats when the image needs more
    stages than `mults` has; a 64x64 image with `minres=4` has 4 stages, DreamerV3's layout).
    Convolutions are NHWC with SAME padding; the norm is over channels. This is DreamerV3's
    `strided=True` variant (its default convolves at full resolution and max-pools: 4x the work).
    With `backend.cpu_rewrites()` (the default on CPU) their gradients are hand-written canonical
    convolutions, which XLA:CPU runs fast inside `lax.scan` too (its own are 10-60x slower there;
    see the comment above `_NHWC`); other backends get JAX's own.

    Args:
      image_shape: `(H, W, C)`, see `check_image_shape`.
      depth: base channel count (DreamerV3's `depth`).
      mults: channel multipliers per stage.
      kernel: convolution kernel size.
      minres: output resolution.
      norm, act: normalisation and activation after each convolution.

    Returns:
      `Net` mapping float images `[..., H, W, C]` to `[..., conv_embed_size(...)]`.

    Example:
      >>> enc = conv_encoder((16, 16, 3), 4)
      >>> enc.apply(enc.init(jax.random.key(0)), jnp.zeros((5, 2, 16, 16, 3))).shape
      (5, 2, 192)
    """
    depths = _conv_depths(image_shape, depth, mults, minres, "conv_encoder")
    _check_kernel("conv_encoder", kernel)
    _check_norm_act("conv_encoder", norm, act)
    channels = image_shape[-1]
    return _pure(lambda rngs: _ConvEncoder(channels, depths, kernel, norm=norm, act=act, rngs=rngs))


def conv_decoder(
    in_size: int,
    image_shape: Sequence[int],
    depth: int,
    *,
    mults: Sequence[int] = (2, 3, 4, 4),
    kernel: int = 5,
    minres: int = 4,
    norm: Norm = "rms",
    act: Activation = "silu",
    out_scale: float = 1.0,
) -> Net:
    """DreamerV3's image decoder, the mirror of `conv_encoder` with the same arguments.

    A linear layer (→ norm → act) makes a `[minres, minres, depth * mults[-1]]` grid; each
    stage then doubles the resolution and steps down to the encoder's channels in reverse, the
    last one to `C` channels without norm or activation. Each 2x upsampling is a sub-pixel
    convolution: a `ceil(kernel / 2)`-wide convolution at the low resolution emitting 4x the
    channels, rearranged depth-to-space. That is exactly a stride-2 transposed convolution with
    kernel `2 * ceil(kernel / 2)`, and it can express DreamerV3's nearest-upsample + `kernel`
    convolution, at about a quarter of the latter's work (3-5x faster on CPU).

    Args:
      in_size: input features.
      image_shape: `(H, W, C)` of the output, see `check_image_shape`.
      depth, mults, kernel, minres, norm, act: as `conv_encoder`.
      out_scale: standard-deviation multiplier of the output layer's init.

    Returns:
      `Net` mapping `[..., in_size]` to `[..., H, W, C]` (no output activation).

    Example:
      >>> dec = conv_decoder(8, (16, 16, 3), 4)
      >>> dec.apply(dec.init(jax.random.key(0)), jnp.zeros((5, 2, 8))).shape
      (5, 2, 16, 16, 3)
    """
    depths = _conv_depths(image_shape, depth, mults, minres, "conv_decoder")
    _check_kernel("conv_decoder", kernel)
    _check_norm_act("conv_decoder", norm, act)
    if not isinstance(in_size, int) or in_size < 1:
        raise ValueError(f"conv_decoder: in_size must be an int >= 1, got {in_size!r}")
    if out_scale < 0:
        raise ValueError(f"conv_decoder: out_scale must be >= 0, got {out_scale}")
    sizes = (in_size, image_shape[-1], depths, kernel, minres)
    return _pure(
        lambda rngs: _ConvDecoder(*sizes, norm=norm, act=act, out_scale=out_scale, rngs=rngs)
    )
