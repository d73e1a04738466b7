r"""Imports `keras.applications.MobileNet` weights into `MobileNetV1`.

Keras released ImageNet weights for the paper's 16 width/resolution pairs as
`mobilenet_{1_0|7_5|5_0|2_5}_{224|192|160|128}_tf.h5`. `MobileNetV1` names its
layers after Keras' and computes the same function (ReLU6, bias-free convs,
TF "SAME" padding, batch-norm epsilon 1e-3), so conversion is a renaming plus
two reshapes: depthwise kernels go from Keras' (3, 3, C, 1) to Flax' grouped
(3, 3, 1, C), and the 1x1 `conv_preds` becomes the dense `logits`.

Two .h5 layouts are read: `save_weights` files (the released ones: one group
per layer at the top) and whole-model saves (`model.save`, Keras 2 or 3: the
layer groups under `model_weights/`, the architecture in a `model_config`
attribute). Dataset names inside a layer's group do not matter (Keras 2
whole-model saves often have `conv1/conv1_4/kernel:0`); weights go to layers
by layer name and order.

Where the numbers come from, most authoritative first:

- alpha: the channel counts of the conv layers (`inspect_h5`);
- resolution: the input shape a whole-model save records, else the released
  file name (a `save_weights` file records none);
- classes: the shape of `conv_preds`.

A released file name is checked against the contents: a file named 0.75 that
holds 0.25 weights is an error. `--alpha` must agree with the channel
counts; `--resolution` may differ from the recorded one (the weights work at
any size), e.g. to evaluate the 224 weights at 192.

Keras pads its stride-2 depthwise layers by one row and column at the bottom
and right, which is TF "SAME" only where those layers see an even size
(`keras_padding_matches`); the released resolutions all qualify. Elsewhere
the weights still convert, but outputs differ slightly from Keras'.

TensorFlow, Keras and h5py are imported only by the functions that read
files, so the module imports on machines that only have JAX.

Usage:
  python -m mobilenet_flax.keras_import \
    --h5=~/.keras/models/mobilenet_1_0_224_tf.h5 --output_dir=/tmp/mn_1_0_224
  python -m mobilenet_flax.keras_import \
    --h5=my_keras2_model.h5 --output_dir=weights/mine   # alpha, size read
"""

import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from flax import traverse_util

from mobilenet_flax import cli, errors, models


class KerasImportError(errors.Error, ValueError):
  """A file or Keras model that does not convert to MobileNetV1."""


class _NotHdf5Error(KerasImportError):
  """The file cannot be opened as HDF5 at all."""


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
    raise KerasImportError(
      f'The Keras model has no layer {name!r}; expected a '
      '`keras.applications.MobileNet` built with include_top=True.'
    ) from None


def _numpy(variable: Any) -> np.ndarray:
  return np.asarray(variable, dtype=np.float32)


# The layers whose channel counts fix alpha: the stem, then the 13 pointwise
# convs, in `_WIDTHS` order.
_WIDTH_LAYERS = ('conv1',) + tuple(
  f'conv_pw_{i}' for i in range(1, len(_WIDTHS))
)


def alpha_from_channels(counts: Sequence[int]) -> float:
  """The width multiplier whose channel counts are `counts` (the output
  channels of `conv1` and `conv_pw_1` ... `conv_pw_13`).

  The widest layer pins alpha most precisely; rounding then recovers the
  value the model was built with (0.3 rather than 307 / 1024).
  """
  counts = [int(c) for c in counts]
  raw = counts[-1] / _WIDTHS[-1]
  for alpha in (round(raw, 2), round(raw, 3), raw):
    expected = [models.scaled_channels(w, alpha) for w in _WIDTHS]
    if expected == counts:
      return alpha
  expected = [models.scaled_channels(w, raw) for w in _WIDTHS]
  for name, count, want in zip(_WIDTH_LAYERS, counts, expected, strict=True):
    if count != want:
      raise KerasImportError(
        f'Keras layer {name!r} has {count} filters, but MobileNetV1 with the '
        f'width multiplier of the last layer (alpha={raw:g}) has {want}: '
        'no alpha reproduces every channel count of this model.'
      )
  raise AssertionError('unreachable')  # pragma: no cover


def _infer_alpha(keras_model: Any) -> float:
  """The width multiplier whose channel counts are the Keras model's."""
  return alpha_from_channels(
    [_get_layer(keras_model, n).filters for n in _WIDTH_LAYERS]
  )


def infer_model_fields(keras_model: Any) -> dict[str, Any]:
  """`alpha`, `num_classes` and `resolution` of a Keras MobileNet."""
  shape = tuple(keras_model.input_shape)
  if len(shape) != 4 or shape[-1] != 3:
    raise KerasImportError(
      f'Expected a channels-last RGB input, got input shape {shape}.'
    )
  height, width = shape[1:3]
  if height is None or height != width:
    raise KerasImportError(
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
    raise KerasImportError(
      f'Keras layer {layer.name!r} lacks its gamma or beta.'
    )
  # A different epsilon would shift every normalised activation.
  if not np.isclose(layer.epsilon, model.bn_epsilon, rtol=1e-6, atol=0):
    raise KerasImportError(
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
        raise KerasImportError(
          f'Keras layer {name!r} has depth_multiplier '
          f'{layer.depth_multiplier}; MobileNetV1 supports only 1.'
        )
      # Keras: (h, w, in, multiplier); Flax grouped conv: (h, w, 1, in).
      kernel = kernel.transpose(0, 1, 3, 2)
    if getattr(layer, 'use_bias', False):
      raise KerasImportError(
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
    raise KerasImportError("Keras layer 'conv_preds' has no bias.")
  kernel = _numpy(preds.kernel)
  if kernel.shape[:2] != (1, 1):
    raise KerasImportError(
      f"Keras layer 'conv_preds' should be a 1x1 conv, got kernel shape "
      f'{kernel.shape}.'
    )
  params['logits'] = {'kernel': kernel[0, 0], 'bias': _numpy(preds.bias)}

  # Weights the conversion would silently drop mean a different network.
  used = set(params) | {'conv_preds'}
  for layer in keras_model.layers:
    if layer.weights and layer.name not in used:
      raise KerasImportError(
        f'Keras layer {layer.name!r} has weights that MobileNetV1 has no '
        'place for.'
      )
  return {'params': params, 'batch_stats': batch_stats}


def _check_structure(
  variables: dict[str, Any], model: models.MobileNetV1
) -> None:
  """Raises a KerasImportError at the first variable that `model` lacks or
  shapes differently, in the model's layer order."""
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
      raise KerasImportError(
        f'Layer {path[1]!r}: {described} has {where} {spec.shape}, but the '
        'Keras model provides no such variable.'
      )
    if got[path].shape != spec.shape:
      raise KerasImportError(
        f'Layer {path[1]!r}: {described} expects {where} of shape '
        f'{spec.shape}, the Keras model gives {got[path].shape}.'
      )
  for path in got:
    if path not in expected:
      raise KerasImportError(
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
    KerasImportError: naming the first layer that is missing, has an unexpected
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


@dataclasses.dataclass(frozen=True)
class H5Contents:
  """What a Keras .h5 file says about the MobileNet v1 it holds."""

  # 'save_weights' (layer groups at the top) or 'whole model' (`model.save`:
  # layer groups under `model_weights/`, the architecture beside them).
  layout: str
  alpha: float
  num_classes: int
  # The input size a whole-model save records; None for `save_weights`
  # files, which record none, and for models built for any size.
  resolution: int | None
  keras_version: str | None


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _layer_shapes(root: Any) -> dict[str, list[tuple[int, ...]]]:
  """Layer name -> shapes of its weights in saved order, for every layer
  that has weights. The weights' own dataset names are not used: they vary
  between Keras versions and sessions (`conv1_4/kernel:0`)."""
  shapes = {}
  for layer in root.attrs['layer_names']:
    group = root[_text(layer)]
    names = [_text(n) for n in group.attrs.get('weight_names', [])]
    if names:
      shapes[_text(layer)] = [tuple(group[n].shape) for n in names]
  return shapes


def _recorded_input_shape(model_config: Any) -> tuple | None:
  """The first input shape in a saved architecture (breadth first, so the
  outermost model's): Keras 2 writes `batch_input_shape`, Keras 3
  `batch_shape`."""
  queue = [model_config]
  while queue:
    node = queue.pop(0)
    if isinstance(node, dict):
      for key in ('batch_input_shape', 'batch_shape'):
        if isinstance(node.get(key), list):
          return tuple(node[key])
      queue.extend(node.values())
    elif isinstance(node, list):
      queue.extend(node)
  return None


def _kernel(shapes: dict[str, list[tuple[int, ...]]], layer: str) -> tuple:
  """The 4-D kernel shape among a conv layer's weights."""
  kernels = [s for s in shapes[layer] if len(s) == 4]
  if len(kernels) != 1:
    raise KerasImportError(
      f'Keras layer {layer!r} has weights of shapes {shapes[layer]}, not '
      'one convolution kernel: not a MobileNet v1.'
    )
  return kernels[0]


def _check_mobilenet_v1(shapes: dict[str, list[tuple[int, ...]]], name: str):
  """Raises a KerasImportError unless `shapes` are a MobileNet v1's."""
  convs = list(_layer_names())
  required = [n for conv in convs for n in (conv, f'{conv}_bn')]
  missing = [n for n in required if n not in shapes]
  if len(missing) == len(required):
    found = ', '.join(list(shapes)[:6]) + (', ...' if len(shapes) > 6 else '')
    raise KerasImportError(
      f'{name} is not a Keras MobileNet v1: it has none of the layers '
      f'conv1, conv_dw_1, conv_pw_1, ... (its layers with weights: '
      f'{found or "none"}).'
    )
  if missing:
    raise KerasImportError(
      f'{name} is not a complete Keras MobileNet v1: layer {missing[0]!r} '
      f'is missing ({len(missing)} of its {len(required)} conv and '
      'batch-norm layers are).'
    )
  if 'conv_preds' not in shapes:
    raise KerasImportError(
      f'{name} has no classifier (no layer conv_preds: saved with '
      'include_top=False); convert a file with the classifier.'
    )
  channels = 3
  for conv in convs + ['conv_preds']:
    kernel = _kernel(shapes, conv)
    if conv.startswith('conv_dw_'):
      want = (3, 3, channels, 1)
    elif conv == 'conv1':
      want = (3, 3, 3, kernel[-1])
    else:
      want = (1, 1, channels, kernel[-1])
    if kernel != want:
      raise KerasImportError(
        f'{name} is not a MobileNet v1: layer {conv!r} has kernel shape '
        f'{kernel}, where MobileNet v1 has {want}.'
      )
    channels = kernel[-1] if not conv.startswith('conv_dw_') else channels


def inspect_h5(path: str) -> H5Contents:
  """Reads layout, alpha, classes and (where recorded) the input size of a
  Keras MobileNet v1 .h5 file, without building a Keras model.

  Raises:
    KerasImportError: the file is not HDF5, holds no Keras layer weights, or
      its layers are not a MobileNet v1 with a classifier.
  """
  import h5py  # Deferred, like Keras.

  name = repr(os.path.basename(path))
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise _NotHdf5Error(
      f'{name} is not an HDF5 file ({str(e).split("(")[0].strip()})'
    ) from None
  with f:
    if 'layer_names' in f.attrs:
      root, layout = f, 'save_weights'
    elif 'model_weights' in f and 'layer_names' in f['model_weights'].attrs:
      root, layout = f['model_weights'], 'whole model'
    else:
      raise KerasImportError(
        f'{name} holds no Keras layer weights (no `layer_names`): expected '
        "a Keras .h5 file from `save_weights` or `model.save`. (Keras 3's "
        '`.weights.h5` format is not read; save the model with '
        "`model.save('model.h5')`.)"
      )
    shapes = _layer_shapes(root)
    config = f.attrs.get('model_config')
    keras_version = f.attrs.get('keras_version')
  _check_mobilenet_v1(shapes, name)
  alpha = alpha_from_channels([_kernel(shapes, n)[-1] for n in _WIDTH_LAYERS])
  resolution = None
  if config is not None:
    shape = _recorded_input_shape(json.loads(_text(config)))
    if shape and len(shape) == 4 and shape[1] and shape[1] == shape[2]:
      resolution = int(shape[1])
  return H5Contents(
    layout=layout,
    alpha=alpha,
    num_classes=int(_kernel(shapes, 'conv_preds')[-1]),
    resolution=resolution,
    keras_version=None if keras_version is None else _text(keras_version),
  )


def h5_model_fields(
  path: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int | None = None,
) -> dict[str, Any]:
  """`alpha`, `resolution` and `num_classes` of a Keras MobileNet .h5 file.

  Read from the contents (`inspect_h5`); a released file name is checked
  against them and supplies the resolution when the file records none.
  Given values must agree with the contents, except `resolution`, which may
  be any size the weights should run at.
  """
  name = os.path.basename(path)
  try:
    contents = inspect_h5(path)
  except _NotHdf5Error as e:
    raise KerasImportError(
      f'Cannot read alpha and resolution from {name!r}: {e}. Expected a '
      'Keras MobileNet v1 .h5 file (from `save_weights` or `model.save`), '
      'whose contents give alpha and the class count (pass alpha and '
      'resolution explicitly only where a file does not record them).'
    ) from None
  named = parse_weights_filename(path)
  if named is not None:
    if not np.isclose(named[0], contents.alpha):
      raise KerasImportError(
        f'{name!r} is named for alpha {named[0]}, but its channel counts '
        f'are those of alpha {contents.alpha}: a renamed file?'
      )
    if contents.resolution and contents.resolution != named[1]:
      raise KerasImportError(
        f'{name!r} is named for resolution {named[1]}, but its model was '
        f'saved for {contents.resolution}: a renamed file?'
      )
  if alpha is not None and not np.isclose(alpha, contents.alpha):
    raise KerasImportError(
      f'alpha {alpha} was given, but the channel counts of {name!r} are '
      f'those of alpha {contents.alpha}.'
    )
  if num_classes is not None and num_classes != contents.num_classes:
    raise KerasImportError(
      f'{num_classes} classes were given, but the classifier of {name!r} '
      f'has {contents.num_classes}.'
    )
  if resolution is not None:
    source = 'given'
  elif contents.resolution is not None:
    resolution, source = contents.resolution, 'the saved input shape'
  elif named is not None:
    resolution, source = named[1], 'the file name'
  else:
    raise KerasImportError(
      f'{name!r} does not record its input size (a {contents.layout} '
      'file) and is not named like a released file '
      '(mobilenet_{1_0|7_5|5_0|2_5}_{224|192|160|128}_tf.h5); pass the '
      'resolution explicitly (--resolution).'
    )
  logging.info(
    '%s: %s file (Keras %s), alpha %g from its channel counts, resolution '
    '%d from %s, %d classes%s.',
    name,
    contents.layout,
    contents.keras_version or 'version unrecorded',
    contents.alpha,
    resolution,
    source,
    contents.num_classes,
    '; the file name agrees' if named is not None else '',
  )
  return {
    'alpha': contents.alpha,
    'resolution': int(resolution),
    'num_classes': contents.num_classes,
  }


def load_keras_h5(
  path: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int | None = None,
) -> Any:
  """Builds `keras.applications.MobileNet` and loads a Keras .h5 into it.

  Alpha, resolution and the class count come from the file (see
  `h5_model_fields`); an explicit resolution wins, e.g. to evaluate the 224
  weights at 192.
  """
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'No Keras weight file at {path!r}.')
  name = os.path.basename(path)
  if _NO_TOP_RE.fullmatch(name):
    raise KerasImportError(
      f'{name!r} has no classifier (include_top=False); use the file '
      'without "_no_top".'
    )
  fields = h5_model_fields(path, alpha, resolution, num_classes)

  # Deferred: JAX-only machines lack Keras and TensorFlow. TensorFlow
  # prints start-up notices from C++ while loading.
  with cli.quiet_native_logs():
    import keras

  keras_model = keras.applications.MobileNet(
    input_shape=(fields['resolution'], fields['resolution'], 3),
    alpha=fields['alpha'],
    weights=None,
    classes=fields['num_classes'],
    classifier_activation=None,
  )
  try:
    keras_model.load_weights(path)
  except ValueError as e:
    raise KerasImportError(
      f'Keras could not load {name!r} into MobileNet(alpha='
      f'{fields["alpha"]}): {e}'
    ) from None
  return keras_model


def convert_h5(
  path: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int | None = None,
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
    "Width multiplier; read from the file's channel counts if not given "
    '(a given value must agree with them).',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'resolution',
    None,
    "Input size; read from a whole-model save's input shape or a released "
    'file name if not given.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'num_classes',
    None,
    'Classifier size of the Keras model; read from the file if not given.',
    flag_values=flag_values,
  )
  flags.mark_flags_as_required(['h5', 'output_dir'], flag_values=flag_values)


def run(
  h5: str,
  output_dir: str,
  alpha: float | None = None,
  resolution: int | None = None,
  num_classes: int | None = None,
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
