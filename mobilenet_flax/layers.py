"""Convolution layers whose implementation depends on the backend.

This is the one place that decides how depthwise and pointwise convolutions
are computed. Every implementation declares the same variables (a `kernel` of
the shape `nn.Conv` would create, no bias), so checkpoints move freely between
them and the model code never needs to know which one runs.

* `grouped_conv`: `nn.Conv(feature_group_count=C)` and a 1x1 `nn.Conv`. The
  reference path, and the fast one on GPU (measured on an H100, where it
  also beat mixing the two: `benchmarks/gpu_compare.py`, README) and TPU.
* `shifted`: the depthwise conv as a sum of shifted multiply-adds, with a
  hand-written backward pass of the same form, and the 1x1 as a 2-D matrix
  product. XLA:CPU runs grouped convolutions (forward and backward) and the
  gradients of 1x1 convolutions slowly; the same arithmetic written this way
  is several times faster there and gives the same numbers up to float
  rounding.
* `auto`: `shifted` on CPU, `grouped_conv` elsewhere.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ('auto', 'grouped_conv', 'shifted')

Initializer = Callable[..., jax.Array]


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """Maps `auto` to the implementation that is fastest on `backend`."""
  if impl not in CONV_IMPLS:
    raise ValueError(f'conv_impl must be one of {CONV_IMPLS}, got {impl!r}.')
  if impl != 'auto':
    return impl
  backend = backend or jax.default_backend()
  return 'shifted' if backend == 'cpu' else 'grouped_conv'


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow "SAME" padding: any odd pixel of padding goes at the end."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _tap(x: jax.Array, i: int, j: int, rows: int, cols: int, stride: int):
  """The `rows` x `cols` window of `x` starting at (i, j), every `stride`."""
  n, _, _, c = x.shape
  return lax.slice(
    x,
    (0, i, j, 0),
    (n, i + (rows - 1) * stride + 1, j + (cols - 1) * stride + 1, c),
    (1, stride, stride, 1),
  )


def _depthwise_forward(xp, kernel, stride, rows, cols):
  """Sum over taps of strided windows of the padded input times the tap.

  One loop fusion on XLA:CPU: every output element reads its kh * kw inputs
  and nothing is materialised in between.
  """
  kh, kw = kernel.shape[:2]
  out = None
  for i in range(kh):
    for j in range(kw):
      term = _tap(xp, i, j, rows, cols, stride) * kernel[i, j]
      out = term if out is None else out + term
  return out


def _depthwise_input_grad(g, kernel, stride, size, padding):
  """Gradient of the depthwise conv with respect to its (unpadded) input.

  Written as shifted multiply-adds too: differentiating the forward's slices
  makes XLA pad the cotangent once per tap (interior padding for stride 2),
  fused behind per-element bounds checks that ran several times slower than
  the forward on XLA:CPU.
  The padded input row y = stride * a + r only receives taps i = r +
  stride * m, from output row a - m, so each of the stride**2 phases (r, q)
  is a dense correlation of the once-padded cotangent with a sub-kernel. The
  phases are then interleaved (a reshape for stride 1) and the "SAME"
  padding is cropped off.
  """
  kh, kw = kernel.shape[:2]
  n, out_h, out_w, c = g.shape
  (height, width), (pad_h, pad_w) = size, padding
  padded_h = (out_h - 1) * stride + kh
  padded_w = (out_w - 1) * stride + kw
  # Rows and columns per phase, and the taps reaching furthest back.
  rows, cols = -(-padded_h // stride), -(-padded_w // stride)
  back_h, back_w = -(-kh // stride) - 1, -(-kw // stride) - 1
  gp = jnp.pad(
    g,
    ((0, 0), (back_h, rows - out_h), (back_w, cols - out_w), (0, 0)),
  )
  phases = []
  for r in range(stride):
    row = []
    for q in range(stride):
      acc = None
      for i in range(r, kh, stride):
        for j in range(q, kw, stride):
          # Output row a - m sits at row a - m + back_h of the padded g.
          m, m2 = (i - r) // stride, (j - q) // stride
          term = _tap(gp, back_h - m, back_w - m2, rows, cols, 1)
          term = term * kernel[i, j]
          acc = term if acc is None else acc + term
      if acc is None:  # Stride above the kernel size: no tap lands here.
        acc = jnp.zeros((n, rows, cols, c), g.dtype)
      row.append(acc)
    phases.append(row)
  if stride == 1:
    full = phases[0][0]
  else:
    full = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
    full = full.reshape(n, rows * stride, cols * stride, c)
  return full[:, pad_h[0] : pad_h[0] + height, pad_w[0] : pad_w[0] + width]


# Padded-input bytes per step of the kernel-gradient loop (two 224-pixel
# images in the largest layers). Whole batches, single images and larger
# chunks all measured slower on a 2-core CPU: the first writes every window
# out to memory, the others pay more loop steps or spill the cache.
_KERNEL_GRAD_CHUNK_BYTES = 4 << 20


def _depthwise_kernel_grad(xp, g, kernel_shape, stride, acc_dtype):
  """Gradient with respect to the taps: one product-and-sum per tap.

  XLA:CPU writes every shifted window out before its reduction (its fast
  reductions take whole arrays, not slices). Over the whole batch that is
  eight activation-sized writes and reads per layer, so the batch is walked
  in chunks of a few images whose windows are reused from cache.
  Accumulates in `acc_dtype` (at least float32) so that bfloat16 models do
  not sum a whole batch of products in bfloat16.
  """
  kh, kw = kernel_shape[:2]
  n, rows, cols, channels = g.shape
  chunk = n
  # GPUs keep the whole batch in one fusion: a loop over chunks would run
  # its steps one after the other.
  if jax.default_backend() == 'cpu':
    per_image = xp.size // n * xp.dtype.itemsize
    chunk = max(1, min(n, _KERNEL_GRAD_CHUNK_BYTES // per_image))
    while n % chunk:
      chunk -= 1

  def taps(xp, g):
    return jnp.stack(
      [
        jnp.sum(
          _tap(xp, i, j, rows, cols, stride) * g,
          axis=(0, 1, 2),
          dtype=acc_dtype,
        )
        for i in range(kh)
        for j in range(kw)
      ]
    )

  if chunk == n:
    return taps(xp, g).reshape(kernel_shape)

  # Slicing chunks inside the loop (rather than scanning over a reshaped
  # batch) lets the loop read the padded input the forward pass already
  # wrote, instead of XLA writing a second, reshaped copy of it.
  def step(k, acc):
    xp_chunk = lax.dynamic_slice_in_dim(xp, k * chunk, chunk)
    g_chunk = lax.dynamic_slice_in_dim(g, k * chunk, chunk)
    return acc + taps(xp_chunk, g_chunk)

  init = jnp.zeros((kh * kw, channels), acc_dtype)
  return lax.fori_loop(0, n // chunk, step, init).reshape(kernel_shape)


def shifted_depthwise(x: jax.Array, kernel: jax.Array, stride: int):
  """Depthwise conv with TF "SAME" padding; `kernel` is (kh, kw, C).

  Numerically the grouped convolution
  `lax.conv_general_dilated(x, kernel[:, :, None], (stride, stride), 'SAME',
  feature_group_count=C)` in NHWC/HWIO, forward and backward.
  """
  return _shifted_depthwise(x, kernel, stride, x.shape[1:3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifted_depthwise(x, kernel, stride, size):
  return _shifted_depthwise_fwd(x, kernel, stride, size)[0]


def _pads(size, kernel_shape, stride):
  (height, width), (kh, kw) = size, kernel_shape[:2]
  return same_padding(height, kh, stride), same_padding(width, kw, stride)


def _shifted_depthwise_fwd(x, kernel, stride, size):
  pad_h, pad_w = _pads(size, kernel.shape, stride)
  xp = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  rows, cols = -(-size[0] // stride), -(-size[1] // stride)
  out = _depthwise_forward(xp, kernel, stride, rows, cols)
  # The padded input is what both the forward windows and the kernel
  # gradient read, so keeping it (rather than the input) lets XLA write it
  # once.
  return out, (xp, kernel)


def _shifted_depthwise_bwd(stride, size, residuals, g):
  xp, kernel = residuals
  pads = _pads(size, kernel.shape, stride)
  dx = _depthwise_input_grad(g, kernel, stride, size, pads)
  acc_dtype = jnp.promote_types(kernel.dtype, jnp.float32)
  dk = _depthwise_kernel_grad(xp, g, kernel.shape, stride, acc_dtype)
  return dx.astype(xp.dtype), dk.astype(kernel.dtype)


_shifted_depthwise.defvjp(_shifted_depthwise_fwd, _shifted_depthwise_bwd)


def matmul_pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1x1 conv as one (N*H*W, Cin) x (Cin, Cout) matrix product.

  Flattening first matters on XLA:CPU: a contraction of the 4-D activation
  makes the weight gradient transpose the whole cotangent to (Cout, N*H*W)
  before its matrix product, which costs more than the product itself.
  """
  y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel)
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


def grouped_depthwise(x: jax.Array, kernel: jax.Array, stride: int):
  """The depthwise conv as XLA's grouped convolution; `kernel` is (kh, kw, C).

  What `nn.Conv(feature_group_count=C)` computes, forward and backward.
  """
  return lax.conv_general_dilated(
    x,
    kernel[:, :, None, :],
    (stride, stride),
    'SAME',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=x.shape[-1],
  )


class ShiftedDepthwiseConv(nn.Module):
  """Depthwise conv as a sum of shifted, strided slices times the kernel taps.

  Declares the same `kernel` (kh, kw, 1, C) as
  `nn.Conv(C, (kh, kw), feature_group_count=C, use_bias=False)`.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    if x.shape[-1] != self.features:
      raise ValueError(
        f'Depthwise conv expects {self.features} channels, got {x.shape[-1]}.'
      )
    kernel = self.param(
      'kernel', self.kernel_init, (kh, kw, 1, self.features), self.param_dtype
    )
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return shifted_depthwise(x, kernel[:, :, 0], self.strides)


class MatmulPointwiseConv(nn.Module):
  """1x1 conv as a matrix product over the channel axis.

  Declares the same `kernel` (1, 1, Cin, Cout) as
  `nn.Conv(Cout, (1, 1), use_bias=False)`.
  """

  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      'kernel',
      self.kernel_init,
      (1, 1, x.shape[-1], self.features),
      self.param_dtype,
    )
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return matmul_pointwise(x, kernel[0, 0])


def depthwise_conv(
  impl: str, features: int, strides: int, **kwargs: Any
) -> nn.Module:
  """A bias-free 3x3 depthwise conv with TF "SAME" padding."""
  if resolve_impl(impl) == 'shifted':
    return ShiftedDepthwiseConv(features, strides=strides, **kwargs)
  return nn.Conv(
    features,
    (3, 3),
    strides=strides,
    padding='SAME',
    feature_group_count=features,
    use_bias=False,
    **kwargs,
  )


def pointwise_conv(impl: str, features: int, **kwargs: Any) -> nn.Module:
  """A bias-free 1x1 conv."""
  if resolve_impl(impl) == 'shifted':
    return MatmulPointwiseConv(features, **kwargs)
  return nn.Conv(features, (1, 1), padding='SAME', use_bias=False, **kwargs)
