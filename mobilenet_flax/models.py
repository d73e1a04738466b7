"""MobileNet v1 (Howard et al. 2017, arXiv:1704.04861) as a Flax linen module.

The layers follow the reference implementations (TF-slim `mobilenet_v1.py`
and `keras.applications.MobileNet`) rather than the paper's prose where the
two differ: ReLU6, no conv bias before batch norm, TF "SAME" padding and a
classifier with bias behind a tiny dropout. Layer names follow Keras, so
`keras_import` maps released weights one to one.
"""

import dataclasses
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


# float64 is for numerical tests on CPU.
DTYPES = ('float32', 'bfloat16', 'float64')
MAX_ALPHA = 4.0


def field_problems(fields: dict[str, Any]) -> list[str]:
  """What is wrong with the model fields in `fields` (absent ones are
  not checked): the one place that bounds them, for the model and for
  config validation alike."""
  checks = {
    'alpha': (
      lambda v: _is_number(v) and 0 < v <= MAX_ALPHA,
      f'in (0, {MAX_ALPHA:g}]',
    ),
    'num_classes': (lambda v: _is_int(v) and v >= 1, 'an integer >= 1'),
    'dropout_rate': (lambda v: _is_number(v) and 0 <= v < 1, 'in [0, 1)'),
    'activation': (lambda v: v in ACTIVATIONS, f'one of {sorted(ACTIVATIONS)}'),
    # 0 keeps each batch's statistics as the moving ones.
    'bn_momentum': (lambda v: _is_number(v) and 0 <= v < 1, 'in [0, 1)'),
    'bn_epsilon': (lambda v: _is_number(v) and v > 0, '> 0'),
    'init_stddev': (lambda v: _is_number(v) and v > 0, '> 0'),
    'conv_impl': (
      lambda v: v in layers.CONV_IMPLS,
      f'one of {layers.CONV_IMPLS}',
    ),
    'dtype': (lambda v: _dtype_name(v) in DTYPES, f'one of {DTYPES}'),
  }
  problems = []
  for name, (ok, rule) in checks.items():
    if name in fields and not ok(fields[name]):
      problems.append(f'{name} must be {rule}, got {fields[name]!r}.')
  return problems


def _is_number(x: object) -> bool:
  return isinstance(x, int | float) and not isinstance(x, bool)


def _is_int(x: object) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _dtype_name(dtype: Any) -> str | None:
  try:
    return jnp.dtype(dtype).name
  except TypeError:
    return None


class MobileNetV1(nn.Module):
  """MobileNet v1 classifier.

  Its fields are the model's whole description: a config's `model` block
  holds the same names (`MobileNetV1(**config.model, num_classes=...)`).

  Attributes:
    alpha: width multiplier; scales every layer's channel count.
    num_classes: size of the classifier.
    dropout_rate: dropout before the classifier (slim keeps 0.999).
    activation: `relu6` (slim, Keras) or `relu` (the paper's text).
    bn_momentum: decay of the batch-norm moving averages (slim: 0.9997).
    bn_epsilon: batch-norm epsilon (slim: 1e-3).
    init_stddev: stddev of the truncated-normal initializer of every conv
      and dense kernel (slim: 0.09).
    conv_impl: how the depthwise and 1x1 convolutions are computed (see
      `layers`): `auto`, `grouped_conv` or `shifted`; the variables are
      the same for all.
    dtype: compute dtype, `float32` or `bfloat16`; parameters stay float32.
    axis_name: pmap/shard_map axis to average batch statistics over
      (cross-replica batch norm); None for per-device statistics.
  """

  alpha: float = 1.0
  num_classes: int = 1000
  dropout_rate: float = 0.001
  activation: str = 'relu6'
  bn_momentum: float = 0.9997
  bn_epsilon: float = 1e-3
  init_stddev: float = 0.09
  conv_impl: str = 'auto'
  dtype: Any = 'float32'
  axis_name: str | None = None

  def __post_init__(self):
    problems = field_problems(
      {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    )
    if problems:
      raise ValueError(' '.join(problems))
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps NHWC images (scaled to [-1, 1]) to float32 logits."""
    check_input(x)
    act = ACTIVATIONS[self.activation]
    dtype = jnp.dtype(self.dtype)
    kernel_init = nn.initializers.truncated_normal(self.init_stddev)
    common = dict(dtype=dtype, kernel_init=kernel_init)
    norm = functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      axis_name=self.axis_name,
      dtype=dtype,
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
        self.conv_impl,
        x.shape[-1],
        stride,
        name=f'conv_dw_{i}',
        **common,
      )(x)
      x = act(norm(name=f'conv_dw_{i}_bn')(x))
      x = layers.pointwise_conv(
        self.conv_impl,
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
    return x.astype(jnp.promote_types(dtype, jnp.float32))


# What weights record about their model (checkpoints, exports, results):
# enough to rebuild it, and to refuse weights of another shape.
RECORDED_FIELDS = ('alpha', 'resolution', 'num_classes')


def recorded_fields(model: MobileNetV1, resolution: int) -> dict[str, Any]:
  return {
    'alpha': model.alpha,
    'resolution': resolution,
    'num_classes': model.num_classes,
  }


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
