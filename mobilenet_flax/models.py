"""MobileNet v1 (Howard et al. 2017, arXiv:1704.04861) as a Flax linen module.

The layers follow the reference implementations (TF-slim `mobilenet_v1.py`
and `keras.applications.MobileNet`) rather than the paper's prose where the
two differ: ReLU6, no conv bias before batch norm, TF "SAME" padding and a
classifier with bias behind a tiny dropout. Layer names follow Keras, so
`keras_import` maps released weights one to one.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_flax import layers

# (depthwise stride, pointwise output channels at alpha = 1) of the 13
# depthwise-separable blocks in the paper's Table 1. The last block has
# stride 1; the table's "s2" there is a known typo.
BLOCKS = (
  (1, 64),
  (2, 128),
  (1, 128),
  (2, 256),
  (1, 256),
  (2, 512),
  (1, 512),
  (1, 512),
  (1, 512),
  (1, 512),
  (1, 512),
  (2, 1024),
  (1, 1024),
)
STEM_CHANNELS = 32
# Five stride-2 layers: below 32 px the last feature map would be empty.
MIN_RESOLUTION = 32
# The paper's Table 2 layer types.
LAYER_TYPES = ('conv_1x1', 'depthwise_3x3', 'conv_3x3', 'fully_connected')
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'relu6': nn.relu6,
  'relu': nn.relu,
}


def scaled_channels(channels: int, alpha: float) -> int:
  """TF-slim's width rule; Keras' `int(c * alpha)` agrees for the paper's
  four widths."""
  return max(int(channels * alpha), 8)


class MobileNetV1(nn.Module):
  """MobileNet v1 classifier.

  Attributes:
    alpha: width multiplier; scales every layer's channel count.
    num_classes: size of the classifier.
    dropout_rate: dropout before the classifier (slim keeps 0.999).
    activation: `relu6` (slim, Keras) or `relu` (the paper's text).
    bn_momentum: decay of the batch-norm moving averages (slim: 0.9997).
    bn_epsilon: batch-norm epsilon (slim: 1e-3).
    axis_name: pmap/shard_map axis to average batch statistics over
      (cross-replica batch norm); None for per-device statistics.
    dtype: compute dtype (float32 or bfloat16); parameters stay float32.
    depthwise_impl: see `layers`: `auto`, `grouped_conv` or `shifted`.
    kernel_init: initializer of every conv and dense kernel (slim: truncated
      normal with stddev 0.09).
  """

  alpha: float = 1.0
  num_classes: int = 1000
  dropout_rate: float = 0.001
  activation: str = 'relu6'
  bn_momentum: float = 0.9997
  bn_epsilon: float = 1e-3
  axis_name: str | None = None
  dtype: Any = jnp.float32
  depthwise_impl: str = 'auto'
  kernel_init: layers.Initializer = nn.initializers.truncated_normal(0.09)

  def __post_init__(self):
    if not self.alpha > 0:
      raise ValueError(f'alpha must be > 0, got {self.alpha}.')
    if self.num_classes < 1:
      raise ValueError(f'num_classes must be >= 1, got {self.num_classes}.')
    if not 0 <= self.dropout_rate < 1:
      raise ValueError(
        f'dropout_rate must be in [0, 1), got {self.dropout_rate}.'
      )
    if self.activation not in ACTIVATIONS:
      raise ValueError(
        f'activation must be one of {sorted(ACTIVATIONS)}, '
        f'got {self.activation!r}.'
      )
    layers.resolve_impl(self.depthwise_impl)  # Validates the name.
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps NHWC images (scaled to [-1, 1]) to float32 logits."""
    check_input(x)
    act = ACTIVATIONS[self.activation]
    common = dict(dtype=self.dtype, kernel_init=self.kernel_init)
    norm = functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      axis_name=self.axis_name,
      dtype=self.dtype,
    )

    x = nn.Conv(
      scaled_channels(STEM_CHANNELS, self.alpha),
      (3, 3),
      strides=2,
      padding='SAME',
      use_bias=False,
      name='conv1',
      **common,
    )(x)
    x = act(norm(name='conv1_bn')(x))
    for i, (stride, channels) in enumerate(BLOCKS, start=1):
      x = layers.depthwise_conv(
        self.depthwise_impl,
        x.shape[-1],
        stride,
        name=f'conv_dw_{i}',
        **common,
      )(x)
      x = act(norm(name=f'conv_dw_{i}_bn')(x))
      x = layers.pointwise_conv(
        self.depthwise_impl,
        scaled_channels(channels, self.alpha),
        name=f'conv_pw_{i}',
        **common,
      )(x)
      x = act(norm(name=f'conv_pw_{i}_bn')(x))

    # Global average pooling lets one set of weights serve any resolution.
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, name='logits', **common)(x)
    # bfloat16 logits would make the loss coarse; float64 (tests) stays.
    return x.astype(jnp.promote_types(self.dtype, jnp.float32))


def check_input(x: jax.Array) -> None:
  """Raises a ValueError for inputs the network cannot take."""
  if x.ndim != 4:
    raise ValueError(
      f'MobileNetV1 expects NHWC images of rank 4, got shape {x.shape}.'
    )
  if x.shape[-1] != 3:
    raise ValueError(
      f'MobileNetV1 expects 3 channels (NHWC RGB), got shape {x.shape}.'
    )
  if min(x.shape[1:3]) < MIN_RESOLUTION:
    raise ValueError(
      f'MobileNetV1 needs images of at least {MIN_RESOLUTION}x'
      f'{MIN_RESOLUTION} pixels, got {x.shape[1]}x{x.shape[2]}.'
    )


def layer_type(kernel_shape: tuple[int, ...]) -> str:
  """Classifies a kernel into the paper's Table 2 layer types by its shape."""
  if len(kernel_shape) == 2:
    return 'fully_connected'
  kh, kw, in_per_group, _ = kernel_shape
  if (kh, kw) == (1, 1):
    return 'conv_1x1'
  if in_per_group == 1:
    return 'depthwise_3x3'
  return 'conv_3x3'


# The released widths, and a tiny one for fast tests.
VARIANTS: dict[str, Callable[..., MobileNetV1]] = {
  'mobilenet_v1_100': functools.partial(MobileNetV1, alpha=1.0),
  'mobilenet_v1_075': functools.partial(MobileNetV1, alpha=0.75),
  'mobilenet_v1_050': functools.partial(MobileNetV1, alpha=0.5),
  'mobilenet_v1_025': functools.partial(MobileNetV1, alpha=0.25),
  'mobilenet_v1_tiny': functools.partial(MobileNetV1, alpha=0.125),
}


def create_model(name: str, **kwargs: Any) -> MobileNetV1:
  """Builds a named variant; `kwargs` override its fields."""
  if name not in VARIANTS:
    raise ValueError(f'Unknown model {name!r}; choose from {sorted(VARIANTS)}.')
  return VARIANTS[name](**kwargs)
