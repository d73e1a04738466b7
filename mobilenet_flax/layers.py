"""Convolution layers whose implementation depends on the backend.

This is the one place that decides how depthwise and pointwise convolutions
are computed. Every implementation declares the same variables (a `kernel` of
the shape `nn.Conv` would create, no bias), so checkpoints move freely between
them and the model code never needs to know which one runs.

* `grouped_conv`: `nn.Conv(feature_group_count=C)` and a 1x1 `nn.Conv`. The
  reference path, and the fast one on TPU and GPU.
* `shifted`: the depthwise 3x3 as nine shifted multiply-adds and the 1x1 as a
  matrix product. XLA:CPU runs grouped convolutions and the gradients of 1x1
  convolutions slowly; the same arithmetic written this way is several times
  faster there and gives the same numbers.
* `auto`: `shifted` on CPU, `grouped_conv` elsewhere.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

DEPTHWISE_IMPLS = ('auto', 'grouped_conv', 'shifted')

Initializer = Callable[..., jax.Array]


def resolve_impl(impl: str, backend: str | None = None) -> str:
  """Maps `auto` to the implementation that is fastest on `backend`."""
  if impl not in DEPTHWISE_IMPLS:
    raise ValueError(
      f'depthwise_impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}.'
    )
  if impl != 'auto':
    return impl
  backend = backend or jax.default_backend()
  return 'shifted' if backend == 'cpu' else 'grouped_conv'


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow "SAME" padding: any odd pixel of padding goes at the end."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


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
    _, height, width, _ = x.shape
    s = self.strides
    pad_h = same_padding(height, kh, s)
    pad_w = same_padding(width, kw, s)
    x = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    out_h, out_w = -(-height // s), -(-width // s)
    out = None
    for i in range(kh):
      for j in range(kw):
        window = lax.slice(
          x,
          (0, i, j, 0),
          (
            x.shape[0],
            i + (out_h - 1) * s + 1,
            j + (out_w - 1) * s + 1,
            x.shape[3],
          ),
          (1, s, s, 1),
        )
        term = window * kernel[i, j, 0]
        out = term if out is None else out + term
    return out


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
    return jnp.dot(x, kernel[0, 0])


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
