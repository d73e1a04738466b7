"""Imports `keras.applications.MobileNet` weights into `MobileNetV1`.

Keras released ImageNet weights for the paper's 16 width/resolution pairs as
`mobilenet_{1_0|7_5|5_0|2_5}_{224|192|160|128}_tf.h5`. `MobileNetV1` names its
layers after Keras' and computes the same function (ReLU6, bias-free convs,
TF "SAME" padding, batch-norm epsilon 1e-3), so conversion is a renaming plus
two reshapes: depthwise kernels go from Keras' (3, 3, C, 1) to Flax' grouped
(3, 3, 1, C), and the 1x1 `conv_preds` becomes the dense `logits`.

Keras pads its stride-2 depthwise layers by one row and column at the bottom
and right, which is TF "SAME" only where those layers see an even size
(`keras_padding_matches`); the released resolutions all qualify. Elsewhere
the weights still convert, but outputs differ slightly from Keras'.

TensorFlow and Keras are imported only by the functions that read Keras
models, so the module imports on machines that only have JAX.

Usage:
  python -m mobilenet_flax.keras_import \
    --h5=~/.keras/models/mobilenet_1_0_224_tf.h5 --output_dir=/tmp/mn_1_0_224
"""

import functools
import os
import re
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from flax import traverse_util

from mobilenet_flax import cli, models

# Alpha as spelled in Keras' weight file names.
ALPHA_CODES = {'1_0': 1.0, '7_5': 0.75, '5_0': 0.5, '2_5': 0.25}
RESOLUTIONS = (224, 192, 160, 128)
_FILENAME_RE = re.compile(
  r'mobilenet_(?P<alpha>1_0|7_5|5_0|2_5)_(?P<res>224|192|160|128)_tf\.h5'
)
_NO_TOP_RE = re.compile(r'mobilenet_\w+_tf_no_top\.h5')
# Channel counts at alpha = 1 in layer order: stem, then the 13 pointwise
# convs. Depthwise layers keep the channels of their input.
_WIDTHS = (models.STEM_CHANNELS,) + tuple(c for _, c in models.BLOCKS)


def parse_weights_filename(path: str) -> tuple[float, int] | None:
  """(alpha, resolution) from a released Keras file name, else None."""
  match = _FILENAME_RE.fullmatch(os.path.basename(path))
  if match is None:
    return None
  return ALPHA_CODES[match['alpha']], int(match['res'])


def keras_padding_matches(resolution: int) -> bool:
  """Whether Keras' stride-2 padding equals TF "SAME" at this input size.

  Keras pads (0, 1) before its stride-2 depthwise convs; "SAME" pads (0, 1)
  for even sizes but (1, 1) for odd ones, so every such layer must see an
  even size. The stem conv uses "SAME" in both.
  """
  size = -(-resolution // 2)
  for stride, _ in models.BLOCKS:
    if stride == 2:
      if size % 2:
        return False
      size //= 2
  return True


def _layer_names() -> Iterator[str]:
  """Keras names of the conv and batch-norm layers, in network order."""
  yield 'conv1'
  for i in range(1, len(models.BLOCKS) + 1):
    yield f'conv_dw_{i}'
    yield f'conv_pw_{i}'


def _get_layer(keras_model: Any, name: str) -> Any:
  try:
    return keras_model.get_layer(name)
  except ValueError:
    raise ValueError(
      f'The Keras model has no layer {name!r}; expected a '
      '`keras.applications.MobileNet` built with include_top=True.'
    ) from None


def _numpy(variable: Any) -> np.ndarray:
  return np.asarray(variable, dtype=np.float32)


def _infer_alpha(keras_model: Any) -> float:
  """The width multiplier whose channel counts are the Keras model's.

  The widest layer pins alpha most precisely; rounding then recovers the
  value the model was built with (0.3 rather than 307 / 1024).
  """
  names = ['conv1'] + [f'conv_pw_{i}' for i in range(1, len(_WIDTHS))]
  counts = [_get_layer(keras_model, n).filters for n in names]
  raw = counts[-1] / _WIDTHS[-1]
  for alpha in (round(raw, 2), round(raw, 3), raw):
    expected = [models.scaled_channels(w, alpha) for w in _WIDTHS]
    if expected == counts:
      return alpha
  expected = [models.scaled_channels(w, raw) for w in _WIDTHS]
  for name, count, want in zip(names, counts, expected, strict=True):
    if count != want:
      raise ValueError(
        f'Keras layer {name!r} has {count} filters, but MobileNetV1 with the '
        f'width multiplier of the last layer (alpha={raw:g}) has {want}: '
        'no alpha reproduces every channel count of this model.'
      )
  raise AssertionError('unreachable')  # pragma: no cover


def infer_model_fields(keras_model: Any) -> dict[str, Any]:
  """`alpha`, `num_classes` and `resolution` of a Keras MobileNet."""
  shape = tuple(keras_model.input_shape)
  if len(shape) != 4 or shape[-1] != 3:
    raise ValueError(
      f'Expected a channels-last RGB input, got input shape {shape}.'
    )
  height, width = shape[1:3]
  if height is None or height != width:
    raise ValueError(
      'Expected a square input of fixed size (MobileNetV1 configs have a '
      f'single resolution), got input shape {shape}.'
    )
  return dict(
    alpha=_infer_alpha(keras_model),
    num_classes=int(_get_layer(keras_model, 'conv_preds').filters),
    resolution=int(height),
  )


def expected_shapes(model: models.MobileNetV1) -> dict[str, Any]:
  """The variable tree of `model` as ShapeDtypeStructs, without computing.

  Variable shapes do not depend on the input size, so the smallest valid
  input suffices.
  """
  size = models.MIN_RESOLUTION
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  init = functools.partial(model.init, train=False)
  return jax.eval_shape(init, jax.random.key(0), x)


def _check_batch_norm(layer: Any, model: models.MobileNetV1) -> None:
  if not (layer.center and layer.scale):
    raise ValueError(f'Keras layer {layer.name!r} lacks its gamma or beta.')
  # A different epsilon would shift every normalised activation.
  if not np.isclose(layer.epsilon, model.bn_epsilon, rtol=1e-6, atol=0):
    raise ValueError(
      f'Keras layer {layer.name!r} has batch-norm epsilon {layer.epsilon}, '
      f'but the Flax model uses {model.bn_epsilon}.'
    )


def _convert(keras_model: Any, model: models.MobileNetV1) -> dict[str, Any]:
  params, batch_stats = {}, {}
  for name in _layer_names():
    layer = _get_layer(keras_model, name)
    kernel = _numpy(layer.kernel)
    if name.startswith('conv_dw_'):
      if layer.depth_multiplier != 1:
        raise ValueError(
          f'Keras layer {name!r} has depth_multiplier '
          f'{layer.depth_multiplier}; MobileNetV1 supports only 1.'
        )
      # Keras: (h, w, in, multiplier); Flax grouped conv: (h, w, 1, in).
      kernel = kernel.transpose(0, 1, 3, 2)
    if getattr(layer, 'use_bias', False):
      raise ValueError(
        f'Keras layer {name!r} has a bias; MobileNetV1 uses none before '
        'batch norm.'
      )
    params[name] = {'kernel': kernel}

    bn = _get_layer(keras_model, f'{name}_bn')
    _check_batch_norm(bn, model)
    params[bn.name] = {'scale': _numpy(bn.gamma), 'bias': _numpy(bn.beta)}
    batch_stats[bn.name] = {
      'mean': _numpy(bn.moving_mean),
      'var': _numpy(bn.moving_variance),
    }

  preds = _get_layer(keras_model, 'conv_preds')
  if not preds.use_bias:
    raise ValueError("Keras layer 'conv_preds' has no bias.")
  kernel = _numpy(preds.kernel)
  if kernel.shape[:2] != (1, 1):
    raise ValueError(
      f"Keras layer 'conv_preds' should be a 1x1 conv, got kernel shape "
      f'{kernel.shape}.'
    )
  params['logits'] = {'kernel': kernel[0, 0], 'bias': _numpy(preds.bias)}

  # Weights the conversion would silently drop mean a different network.
  used = set(params) | {'conv_preds'}
  for layer in keras_model.layers:
    if layer.weights and layer.name not in used:
      raise ValueError(
        f'Keras layer {layer.name!r} has weights that MobileNetV1 has no '
        'place for.'
      )
  return {'params': params, 'batch_stats': batch_stats}


def _check_structure(
  variables: dict[str, Any], model: models.MobileNetV1
) -> None:
  """Raises a ValueError at the first variable that `model` lacks or shapes
  differently, in the model's layer order."""
  # eval_shape sorts dict keys; report mismatches in network order instead.
  order = {}
  for name in _layer_names():
    order[name] = len(order)
    order[f'{name}_bn'] = len(order)
  order['logits'] = len(order)
  flat = traverse_util.flatten_dict(expected_shapes(model))
  expected = {
    path: flat[path]
    for path in sorted(flat, key=lambda p: (order.get(p[1], len(order)), p))
  }
  got = traverse_util.flatten_dict(variables)
  described = (
    f'MobileNetV1(alpha={model.alpha}, num_classes={model.num_classes})'
  )
  for path, spec in expected.items():
    where = '/'.join(path)
    if path not in got:
      raise ValueError(
        f'Layer {path[1]!r}: {described} has {where} {spec.shape}, but the '
        'Keras model provides no such variable.'
      )
    if got[path].shape != spec.shape:
      raise ValueError(
        f'Layer {path[1]!r}: {described} expects {where} of shape '
        f'{spec.shape}, the Keras model gives {got[path].shape}.'
      )
  for path in got:
    if path not in expected:
      raise ValueError(
        f'Layer {path[1]!r}: {described} has no variable {"/".join(path)}.'
      )


def variables_from_keras(
  keras_model: Any, model: models.MobileNetV1 | None = None
) -> dict[str, Any]:
  """Converts a Keras MobileNet to `{'params', 'batch_stats'}` of `model`.

  Args:
    keras_model: a `keras.applications.MobileNet` with include_top=True (or
      any Keras model with the same layer names and shapes).
    model: the Flax module the variables are for; by default
      `MobileNetV1(alpha=..., num_classes=...)` as read from `keras_model`.

  Returns:
    Nested dicts of float32 numpy arrays, structured exactly like
    `model.init(...)`'s output.

  Raises:
    ValueError: naming the first layer that is missing, has an unexpected
      shape or configuration, or has no counterpart in `model`.
  """
  if model is None:
    model = models.MobileNetV1(
      alpha=_infer_alpha(keras_model),
      num_classes=int(_get_layer(keras_model, 'conv_preds').filters),
    )
  variables = _convert(keras_model, model)
  _check_structure(variables, model)
  return variables


def load_keras_h5(
  path: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int = 1000,
) -> Any:
  """Builds `keras.applications.MobileNet` and loads a Keras .h5 into it.

  Alpha and resolution come from a released file name
  (`mobilenet_1_0_224_tf.h5`) unless given; explicit values win, e.g. to
  evaluate the 224 weights at 192.
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No Keras weight file at {path!r}.')
  parsed = parse_weights_filename(path)
  if parsed is None and (alpha is None or resolution is None):
    name = os.path.basename(path)
    if _NO_TOP_RE.fullmatch(name):
      raise ValueError(
        f'{name!r} has no classifier (include_top=False); use the file '
        'without "_no_top".'
      )
    raise ValueError(
      f'Cannot read alpha and resolution from {name!r} (expected '
      'mobilenet_{1_0|7_5|5_0|2_5}_{224|192|160|128}_tf.h5); pass alpha '
      'and resolution explicitly.'
    )
  if parsed is not None:
    alpha = parsed[0] if alpha is None else alpha
    resolution = parsed[1] if resolution is None else resolution

  import keras  # Deferred: JAX-only machines lack Keras and TensorFlow.

  keras_model = keras.applications.MobileNet(
    input_shape=(resolution, resolution, 3),
    alpha=alpha,
    weights=None,
    classes=num_classes,
    classifier_activation=None,
  )
  keras_model.load_weights(path)
  return keras_model


def convert_h5(
  path: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int = 1000,
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Returns (variables, model_fields) for a Keras MobileNet .h5 file."""
  keras_model = load_keras_h5(path, alpha, resolution, num_classes)
  fields = infer_model_fields(keras_model)
  variables = variables_from_keras(keras_model)
  return variables, fields


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the CLI flags; kept out of import time so that importing this
  module never clashes with another program's flags."""
  flags.DEFINE_string(
    'h5', None, 'Keras MobileNet weight file (.h5).', flag_values=flag_values
  )
  flags.DEFINE_string(
    'output_dir',
    None,
    'Directory to write the converted checkpoint to.',
    flag_values=flag_values,
  )
  flags.DEFINE_float(
    'alpha',
    None,
    'Width multiplier; read from a released file name if not given.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'resolution',
    None,
    'Input size; read from a released file name if not given.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'num_classes',
    1000,
    'Classifier size of the Keras model.',
    flag_values=flag_values,
  )
  flags.mark_flags_as_required(['h5', 'output_dir'], flag_values=flag_values)


def run(
  h5: str,
  output_dir: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int = 1000,
) -> dict[str, Any]:
  """Converts `h5` and saves it under `output_dir`; returns model_fields."""
  # Deferred: checkpoints pulls in the training stack, which converting
  # does not otherwise need.
  from mobilenet_flax.checkpoints import save_pretrained

  variables, fields = convert_h5(h5, alpha, resolution, num_classes)
  if not keras_padding_matches(fields['resolution']):
    logging.warning(
      'At resolution %d Keras pads its stride-2 layers differently from '
      'TF "SAME", so outputs will not exactly match Keras\'.',
      fields['resolution'],
    )
  output_dir = os.path.expanduser(output_dir)
  saved = save_pretrained(output_dir, variables, fields)
  num_params = sum(
    v.size for v in jax.tree_util.tree_leaves(variables['params'])
  )
  print(
    f'Converted {h5}: alpha {fields["alpha"]}, resolution '
    f'{fields["resolution"]}, {fields["num_classes"]} classes, '
    f'{num_params:,} parameters.'
  )
  print(f'Wrote {saved or output_dir}')
  return fields


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  fv = flags.FLAGS
  run(fv.h5, fv.output_dir, fv.alpha, fv.resolution, fv.num_classes)


if __name__ == '__main__':
  define_flags()
  cli.run(main)
