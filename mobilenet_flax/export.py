r"""Exports MobileNetV1 weights for phones: LiteRT (TFLite) and StableHLO.

Reads any weights directory the project reads (`keras_import` output,
exported weights, or a training workdir: its latest checkpoint, EMA weights
when present) and writes one of three formats:

* `tflite`: a float32 LiteRT flatbuffer. The eval-mode forward pass goes
  through `jax2tf` (which wraps its StableHLO in a TF SavedModel) and the
  TFLite converter, which folds batch norm into the convolutions and maps
  them to the native CONV_2D and DEPTHWISE_CONV_2D kernels.
* `tflite_int8`: the same graph with full-integer post-training
  quantization (per-channel int8 weights, int8 activations), calibrated on
  images from a config's train split or from a folder; `--int8_io` makes
  the input and output int8 too.
* `stablehlo`: a serialized `jax.export` artifact, the model with its
  weights as constants, that `jax.export.deserialize` reloads and runs
  without this package (on CPU, CUDA, ROCm or TPU).

Next to OUTPUT goes OUTPUT.json: what an app needs to feed the model (input
size, NHWC layout, scaling to [-1, 1], crop), class names, the model fields,
the source weights and, for int8 I/O, the quantization parameters.

Usage (from the repository root):
  python -m mobilenet_flax.keras_import \
      --h5=mobilenet_7_5_224_tf.h5 --output_dir=weights/075_224
  python -m mobilenet_flax.export --weights=weights/075_224 \
      --format=tflite --output=exports/mobilenet_075_224.tflite
  python -m mobilenet_flax.export --weights=weights/075_224 \
      --format=tflite_int8 --representative_dir=photos/ \
      --output=exports/mobilenet_075_224_int8.tflite
  python -m mobilenet_flax.export --weights=runs/quickstart \
      --format=tflite_int8 --representative_config=configs/quickstart.py \
      --int8_io --output=exports/quickstart_int8.tflite
  python -m mobilenet_flax.export --weights=weights/075_224 \
      --format=stablehlo --batch=dynamic \
      --output=exports/mobilenet_075_224.stablehlo

`--resolution` overrides the input size the weights were trained at;
`--batch` fixes the batch (default 1) or, with `dynamic`, leaves it free.
Errors in the arguments print one `error: ...` line and exit with status 2.
"""

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mobilenet_flax import cli, errors

FORMATS = ('tflite', 'tflite_int8', 'stablehlo')
# The project's input convention (input_pipeline.preprocessing): RGB pixels
# in [0, 255] become pixel / 127.5 - 1, i.e. (pixel - 127.5) / 127.5.
PIXEL_MEAN = 127.5
PIXEL_STD = 127.5
# TF-slim's and Keras' evaluation crop; configs can set another one.
DEFAULT_CROP_FRACTION = 0.875
DEFAULT_REPRESENTATIVE_COUNT = 200
# Every platform jax.export lowers for: the model uses no platform-specific
# custom calls, so one artifact serves them all.
STABLEHLO_PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
INPUT_NAME = 'images'
OUTPUT_NAME = 'logits'
DYNAMIC = 'dynamic'


class ExportError(errors.Error, ValueError):
  """Bad input to the exporter; the CLI prints it as one `error:` line."""


def progress(message: str) -> None:
  """Progress lines go to stderr, so stdout stays for results."""
  print(f'export: {message}', file=sys.stderr, flush=True)


@contextlib.contextmanager
def timed(message: str) -> Iterator[None]:
  """Announces a long step, then how long it took."""
  progress(f'{message} ...')
  start = time.perf_counter()
  yield
  progress(f'{message}: done in {time.perf_counter() - start:.1f} s')


# ---------------------------------------------------------------------------
# The model to export.


@dataclasses.dataclass(frozen=True)
class ExportModel:
  """Weights, model fields and the eval-mode forward pass to export."""

  variables: dict[str, Any]
  fields: dict[str, Any]
  resolution: int
  crop_fraction: float
  source: str
  # The training run's `config.model` block, when the weights come from a
  # run of this project (activation, batch-norm epsilon, ...).
  model_config: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def alpha(self) -> float:
    return float(self.fields['alpha'])

  @property
  def num_classes(self) -> int:
    return int(self.fields['num_classes'])

  def module(self, conv_impl: str = 'grouped_conv'):
    """The network; `grouped_conv` unless asked otherwise.

    Exported graphs always use `grouped_conv`: it lowers to one convolution
    per layer, which the converter maps to DEPTHWISE_CONV_2D / CONV_2D. The
    CPU training formulation (`shifted`) would export as dozens of slices
    and multiply-adds per layer. Float32 whatever the run trained in.
    """
    from mobilenet_flax import models

    fields = dict(self.model_config)
    fields.update(
      alpha=self.alpha,
      num_classes=self.num_classes,
      conv_impl=conv_impl,
      dtype='float32',
    )
    return models.MobileNetV1(**fields)

  def forward(self, conv_impl: str = 'grouped_conv') -> Callable:
    """images [N, H, W, 3] in [-1, 1] -> float32 logits [N, classes]; the
    weights are closed over, so they become constants of the export."""
    module = self.module(conv_impl)
    variables = {
      'params': self.variables['params'],
      'batch_stats': self.variables['batch_stats'],
    }
    return lambda images: module.apply(variables, images, train=False)

  def class_names(self) -> list[str]:
    from mobilenet_flax import class_names

    return class_names.for_model(
      self.num_classes, self.fields.get('class_names')
    )


def _run_config(directory: str) -> dict[str, Any]:
  """The config a training workdir recorded in results.json, if any."""
  from mobilenet_flax import run_files

  return dict((run_files.read_results(directory) or {}).get('config') or {})


def check_weights_dir(directory: str) -> None:
  """Raises ExportError unless `directory` looks like weights we read."""
  if not os.path.exists(directory):
    raise ExportError(f'--weights: {directory} does not exist.')
  if not os.path.isdir(directory):
    raise ExportError(f'--weights: {directory} is not a directory.')
  if not (
    os.path.exists(os.path.join(directory, 'model.json'))
    or os.path.isdir(os.path.join(directory, 'checkpoints'))
  ):
    raise ExportError(
      f'--weights: {directory} holds no weights: expected model.json and '
      'variables/ (python -m mobilenet_flax.keras_import) or a training '
      'workdir with checkpoints/.'
    )


def load(
  directory: str,
  resolution: int | None = None,
  crop_fraction: float | None = None,
) -> ExportModel:
  """Loads a weights directory for export.

  Args:
    directory: converted Keras weights, exported weights or a training
      workdir (see `checkpoints.load_pretrained`).
    resolution: input size; default the one the weights were made for.
    crop_fraction: central crop of the eval preprocessing; default the
      training run's `eval_crop_fraction`, else 0.875.
  """
  from mobilenet_flax import checkpoints, models

  check_weights_dir(directory)
  try:
    # Orbax accepts only absolute paths, and load_pretrained passes the
    # directory of exported weights on as given.
    variables, fields = checkpoints.load_pretrained(os.path.abspath(directory))
  except Exception as error:  # Orbax raises many types for bad files.
    first_line = (str(error).strip().splitlines() or [repr(error)])[0]
    raise ExportError(
      f'--weights: cannot read weights from {directory}: {first_line}'
    ) from error
  missing = [k for k in ('alpha', 'num_classes') if k not in fields]
  if missing:
    raise ExportError(
      f'--weights: {directory} does not record {", ".join(missing)}.'
    )
  run_config = _run_config(directory)
  # Checkpoints record the fields that fix variable shapes; the rest of the
  # model (activation, batch-norm epsilon) comes from the run's config.
  from mobilenet_flax import config_lib

  model_config = {
    k: v
    for k, v in (run_config.get('model') or {}).items()
    if k in config_lib.MODEL_CONFIG_FIELDS
  }
  resolution = resolution or fields.get('resolution')
  if not resolution:
    raise ExportError(
      f'--weights: {directory} does not record a resolution; pass --resolution.'
    )
  if resolution < models.MIN_RESOLUTION:
    raise ExportError(
      f'--resolution must be at least {models.MIN_RESOLUTION}, got '
      f'{resolution}.'
    )
  if crop_fraction is None:
    crop_fraction = run_config.get('eval_crop_fraction', DEFAULT_CROP_FRACTION)
  return ExportModel(
    variables=variables,
    fields=dict(fields),
    resolution=int(resolution),
    crop_fraction=float(crop_fraction),
    source=os.path.abspath(directory),
    model_config=model_config,
  )


def input_shape(batch: int | str, resolution: int) -> tuple:
  """NHWC input shape; None for a dynamic batch."""
  return (None if batch == DYNAMIC else batch, resolution, resolution, 3)


# ---------------------------------------------------------------------------
# StableHLO.


def export_stablehlo(
  model: ExportModel,
  batch: int | str = 1,
  platforms: Sequence[str] = STABLEHLO_PLATFORMS,
):
  """The forward pass as a `jax.export.Exported` (weights as constants)."""
  import jax
  import jax.numpy as jnp
  from jax import export

  if batch == DYNAMIC:
    (size,) = export.symbolic_shape('batch')
  else:
    size = batch
  spec = jax.ShapeDtypeStruct(
    (size, model.resolution, model.resolution, 3), jnp.float32
  )
  return export.export(jax.jit(model.forward()), platforms=tuple(platforms))(
    spec
  )


# ---------------------------------------------------------------------------
# LiteRT (TFLite).


def save_tf(
  model: ExportModel,
  directory: str,
  batch: int | str = 1,
  conv_impl: str = 'grouped_conv',
) -> None:
  """Writes the forward pass as a TF SavedModel (serving_default).

  `jax2tf.convert` embeds the StableHLO of the forward pass in one
  XlaCallModule op; the TFLite converter legalizes it op by op.
  `conv_impl` stays `grouped_conv` for export (see
  `ExportModel.module`); tests set it to show what else would happen.
  """
  tf = cli.import_tensorflow()
  from jax.experimental import jax2tf

  res = model.resolution
  polymorphic = None
  if batch == DYNAMIC:
    polymorphic = [f'(batch, {res}, {res}, 3)']
  converted = jax2tf.convert(
    model.forward(conv_impl),
    polymorphic_shapes=polymorphic,
    with_gradient=False,
  )
  module = tf.Module()

  @tf.function(
    autograph=False,
    input_signature=[
      tf.TensorSpec(input_shape(batch, res), tf.float32, name=INPUT_NAME)
    ],
  )
  def serve(images):
    return {OUTPUT_NAME: converted(images)}

  module.serve = serve
  # TF's SavedModel writer lowers absl's log level for the whole process;
  # the caller's logging stays as it was.
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  try:
    tf.saved_model.save(
      module, directory, signatures={'serving_default': serve}
    )
  finally:
    absl_logger.setLevel(level)


@dataclasses.dataclass
class Quantization:
  """Full-integer post-training quantization settings."""

  representative: Callable[[], Iterator[np.ndarray]]
  int8_io: bool = False


def convert_tflite(
  saved_model_dir: str,
  quantization: Quantization | None = None,
  dynamic_batch: bool = False,
) -> bytes:
  """Runs the TFLite converter on a SavedModel from `save_tf`."""
  tf = cli.import_tensorflow()

  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  if dynamic_batch:
    # With a symbolic batch, JAX broadcasts every batch-norm constant to
    # the activation's (dynamic) shape; without this the converter keeps
    # those broadcasts as separate ops and cannot fold batch norm into the
    # convolutions. Every such broadcast here is of a per-channel constant
    # over the batch, which is what the fusion assumes; the tests compare
    # the result with JAX at batch > 1.
    converter._experimental_unsafe_fuse_dynamic_shaped_broadcast = True
  if quantization is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def representative():
      for images in quantization.representative():
        yield [images.astype(np.float32)]

    converter.representative_dataset = representative
    if quantization.int8_io:
      converter.inference_input_type = tf.int8
      converter.inference_output_type = tf.int8
  return converter.convert()


def export_tflite(
  model: ExportModel,
  batch: int | str = 1,
  quantization: Quantization | None = None,
) -> bytes:
  """The forward pass as a LiteRT flatbuffer (float32, or int8 when
  `quantization` is given)."""
  with tempfile.TemporaryDirectory(prefix='mobilenet_export_') as tmp:
    with timed('tracing the model into a TF SavedModel (jax2tf)'):
      save_tf(model, tmp, batch)
    step = 'converting to LiteRT'
    if quantization is not None:
      step += ' with int8 calibration'
    with timed(step):
      return convert_tflite(tmp, quantization, dynamic_batch=batch == DYNAMIC)


class LiteRTModel:
  """Runs a LiteRT flatbuffer on float images in [-1, 1].

  Quantizes int8 inputs and dequantizes int8 outputs with the model's own
  parameters, so float and int8 models are called alike. The interpreter
  applies the XNNPACK delegate by default, as on phones.
  """

  def __init__(
    self,
    model: bytes | str,
    num_threads: int | None = None,
    use_xnnpack: bool = True,
  ):
    from ai_edge_litert import interpreter as litert

    kwargs = dict(num_threads=num_threads)
    if not use_xnnpack:
      kwargs['experimental_op_resolver_type'] = (
        litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
      )
    if isinstance(model, bytes | bytearray):
      kwargs['model_content'] = bytes(model)
    else:
      kwargs['model_path'] = os.fspath(model)
    self.interpreter = litert.Interpreter(**kwargs)
    self.interpreter.allocate_tensors()
    self.input = self.interpreter.get_input_details()[0]
    self.output = self.interpreter.get_output_details()[0]
    self._shape = tuple(self.input['shape'])

  def _resize(self, shape: tuple[int, ...]) -> None:
    if shape != self._shape:
      # strict=False also lets a fixed batch change: every op here
      # (convolutions, mean, fully connected) works at any batch.
      self.interpreter.resize_tensor_input(
        self.input['index'], list(shape), strict=False
      )
      self.interpreter.allocate_tensors()
      self.input = self.interpreter.get_input_details()[0]
      self.output = self.interpreter.get_output_details()[0]
      self._shape = shape

  def set_input(self, images: np.ndarray) -> None:
    """Stages images (float, in [-1, 1]) for `invoke`."""
    images = np.asarray(images, np.float32)
    self._resize(images.shape)
    if self.input['dtype'] == np.int8:
      scale, zero_point = self.input['quantization']
      images = np.clip(np.round(images / scale) + zero_point, -128, 127)
      images = images.astype(np.int8)
    self.interpreter.set_tensor(self.input['index'], images)

  def invoke(self) -> None:
    self.interpreter.invoke()

  def get_output(self) -> np.ndarray:
    """The logits of the last `invoke`, as float32."""
    out = self.interpreter.get_tensor(self.output['index'])
    if self.output['dtype'] == np.int8:
      scale, zero_point = self.output['quantization']
      out = (out.astype(np.float32) - zero_point) * scale
    return out.astype(np.float32)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    self.set_input(images)
    self.invoke()
    return self.get_output()

  def predict(self, images: np.ndarray, batch: int = 1) -> np.ndarray:
    """Logits for many images, `batch` at a time."""
    outs = [self(images[i : i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate(outs)


def litert_ops(model: bytes | str) -> collections.Counter:
  """Builtin op names of a LiteRT model and how often each occurs (read
  without delegates, so that delegated ops are listed by their own name)."""
  runner = LiteRTModel(model, use_xnnpack=False)
  return collections.Counter(
    op['op_name'] for op in runner.interpreter._get_ops_details()
  )


# ---------------------------------------------------------------------------
# Calibration images.


def load_config(spec: str):
  """A config from `path.py[:arg]`, as main.py's --config reads it."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ExportError(f'--representative_config: no file {path}.')
  module_spec = importlib.util.spec_from_file_location('export_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
  except Exception as error:
    raise ExportError(
      f'--representative_config: cannot load {spec}: {error}'
    ) from error


def check_dataset(config: Any, data_dir: str | None = None) -> None:
  """Raises ExportError now, not mid-conversion, if the config's dataset
  cannot be read (not prepared, unknown name, missing split)."""
  with cli.quiet_native_logs():
    import input_pipeline

  config = config.copy_and_resolve_references()
  if data_dir:
    config.data_dir = data_dir
  try:
    input_pipeline.get_dataset_info(config)
  except input_pipeline.DatasetError as error:
    message = ' '.join(str(error).split())
    raise ExportError(f'--representative_config: {message}') from error


def images_from_config(
  config: Any,
  resolution: int,
  count: int,
  split: str | None = None,
  data_dir: str | None = None,
) -> Iterator[np.ndarray]:
  """Up to `count` images [1, H, W, 3] of a config's dataset (default its
  train split), with the project's eval preprocessing (central crop of
  `eval_crop_fraction`, bilinear resize, scaling to [-1, 1])."""
  with cli.quiet_native_logs():
    import input_pipeline

  config = config.copy_and_resolve_references()
  config.resolution = resolution
  config.eval_split = split or config.train_split
  config.cache_eval = False
  if data_dir:
    config.data_dir = data_dir
  batches, _ = input_pipeline.create_eval_dataset(config, batch_size=32)
  produced = 0
  for batch in batches.as_numpy_iterator():
    for image, mask in zip(batch['image'], batch['mask'], strict=True):
      if produced == count:
        return
      if mask > 0:  # Padding and undecodable images carry mask 0.
        produced += 1
        yield image[None]


def image_files(directory: str) -> list[str]:
  """The JPEG and PNG files of `directory`, sorted."""
  if not os.path.isdir(directory):
    raise ExportError(f'--representative_dir: {directory} is not a directory.')
  files = sorted(
    os.path.join(directory, name)
    for name in os.listdir(directory)
    if name.lower().endswith(IMAGE_SUFFIXES)
  )
  if not files:
    raise ExportError(
      f'--representative_dir: {directory} has no JPEG or PNG files.'
    )
  return files


def images_from_files(
  files: Sequence[str], resolution: int, crop_fraction: float
) -> Iterator[np.ndarray]:
  """Images [1, H, W, 3] in [-1, 1], preprocessed exactly as the eval
  pipeline does; files that do not decode are skipped with a note."""
  cli.import_tensorflow()
  from input_pipeline import preprocessing

  for path in files:
    with open(path, 'rb') as f:
      encoded = f.read()
    try:
      if not bool(preprocessing.is_valid_image(encoded)):
        raise ValueError('not a complete JPEG or PNG')
      image = preprocessing.preprocess_for_eval(
        encoded, resolution=resolution, crop_fraction=crop_fraction
      )
    except Exception as error:  # A bad file must not stop calibration.
      progress(f'skipping {path}: {str(error).splitlines()[0]}')
      continue
    yield np.asarray(image, np.float32)[None]


class Counted:
  """A calibration source with progress lines, an empty check and a count
  of the images the converter actually drew."""

  def __init__(self, images: Callable[[], Iterator[np.ndarray]], every=50):
    self.images = images
    self.every = every
    self.count = 0

  def __call__(self) -> Iterator[np.ndarray]:
    self.count = 0
    for image in self.images():
      self.count += 1
      if self.count % self.every == 0:
        progress(f'calibrating: {self.count} images')
      yield image
    if self.count == 0:
      raise ExportError('the representative dataset produced no images.')
    progress(f'calibrated on {self.count} images')


# ---------------------------------------------------------------------------
# The sidecar.


def sidecar_path(output: str) -> str:
  return output + '.json'


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _quantization(details: dict[str, Any]) -> dict[str, Any] | None:
  scale, zero_point = details['quantization']
  if details['dtype'] != np.int8:
    return None
  return {'scale': float(scale), 'zero_point': int(zero_point)}


def describe(
  model: ExportModel,
  fmt: str,
  output: str,
  batch: int | str,
  extra: dict[str, Any],
) -> dict[str, Any]:
  """The sidecar: everything an app needs besides the model file."""
  res = model.resolution
  shape = [-1 if batch == DYNAMIC else batch, res, res, 3]
  return {
    'format': fmt,
    'file': os.path.basename(output),
    'size_bytes': os.path.getsize(output),
    'sha256': _sha256(output),
    'input': {
      'name': INPUT_NAME,
      'shape': shape,
      'layout': 'NHWC',
      'color': 'RGB',
      'dtype': 'float32',
      # How the project's eval pipeline prepares an image.
      'preprocessing': {
        'central_crop_fraction': model.crop_fraction,
        'resize': f'bilinear to {res}x{res}',
        'range': [-1.0, 1.0],
        'mean': [PIXEL_MEAN] * 3,
        'std': [PIXEL_STD] * 3,
        'scale': 1 / PIXEL_STD,
        'offset': -PIXEL_MEAN / PIXEL_STD,
        'formula': 'x = pixel * scale + offset = (pixel - mean) / std, '
        'pixel in [0, 255]',
      },
    },
    'output': {
      'name': OUTPUT_NAME,
      'shape': [shape[0], model.num_classes],
      'dtype': 'float32',
      'meaning': 'logits; softmax gives class probabilities',
    },
    'class_names': model.class_names(),
    'alpha': model.alpha,
    'num_classes': model.num_classes,
    'resolution': res,
    'source_weights': model.source,
    **extra,
  }


def _tflite_details(output: str) -> dict[str, Any]:
  """Op counts and int8 I/O parameters of a written LiteRT file."""
  runner = LiteRTModel(output, use_xnnpack=False)
  details = {'ops': dict(sorted(litert_ops(output).items()))}
  for side, tensor in (('input', runner.input), ('output', runner.output)):
    quant = _quantization(tensor)
    if quant is not None:
      details[side] = quant
  return details


def _add_int8_io(info: dict[str, Any], details: dict[str, Any]) -> None:
  """Fills the int8 input/output description from the model's own
  quantization parameters."""
  if 'input' in details:
    q = details['input']
    pre = info['input']['preprocessing']
    info['input']['dtype'] = 'int8'
    info['input']['quantization'] = {
      **q,
      'formula': 'q = round(x / scale) + zero_point, x in [-1, 1]',
      # The same step from a [0, 255] pixel: q = round(pixel * m + b).
      'from_pixel': {
        'multiplier': pre['scale'] / q['scale'],
        'bias': pre['offset'] / q['scale'] + q['zero_point'],
      },
    }
  if 'output' in details:
    info['output']['dtype'] = 'int8'
    info['output']['quantization'] = {
      **details['output'],
      'formula': 'logit = (q - zero_point) * scale',
    }


# ---------------------------------------------------------------------------
# The whole export.


def check_output(output: str) -> None:
  """Raises ExportError unless `output` (and its sidecar) can be written."""
  if not output:
    raise ExportError('--output is empty.')
  if os.path.isdir(output):
    raise ExportError(f'--output: {output} is a directory; give a file name.')
  parent = os.path.dirname(os.path.abspath(output))
  try:
    os.makedirs(parent, exist_ok=True)
  except OSError as error:
    raise ExportError(
      f'--output: cannot create {parent}: {error.strerror}.'
    ) from error
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ExportError(f'--output: {parent} is not writable.')
  for path in (output, sidecar_path(output)):
    if os.path.exists(path) and not os.access(path, os.W_OK):
      raise ExportError(f'--output: {path} exists and is not writable.')


def _write(output: str, content: bytes) -> None:
  """Writes via a temporary file, so a failed export leaves no half file."""
  tmp = f'{output}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(content)
  os.replace(tmp, output)


def parse_batch(value: str | int) -> int | str:
  if value == DYNAMIC:
    return DYNAMIC
  try:
    batch = int(value)
  except ValueError:
    batch = 0
  if batch < 1:
    raise ExportError(
      f'--batch must be a positive integer or {DYNAMIC!r}, got {value!r}.'
    )
  return batch


def export(
  weights: str,
  fmt: str,
  output: str,
  *,
  resolution: int | None = None,
  batch: int | str = 1,
  representative_config: str | Any | None = None,
  representative_dir: str | None = None,
  representative_count: int = DEFAULT_REPRESENTATIVE_COUNT,
  data_dir: str | None = None,
  crop_fraction: float | None = None,
  int8_io: bool = False,
) -> dict[str, Any]:
  """Exports `weights` to `output` in format `fmt`; returns the sidecar.

  `representative_config` is a config file spec (`configs/quickstart.py`)
  or a config object. Raises ExportError for bad arguments, before any
  slow step where possible.
  """
  if fmt not in FORMATS:
    raise ExportError(f'--format must be one of {", ".join(FORMATS)}.')
  batch = parse_batch(batch)
  check_weights_dir(weights)
  quantize = fmt == 'tflite_int8'
  if int8_io and not quantize:
    raise ExportError('--int8_io needs --format=tflite_int8.')
  sources = [s is not None for s in (representative_config, representative_dir)]
  if quantize and sum(sources) != 1:
    raise ExportError(
      'tflite_int8 needs exactly one of --representative_config and '
      '--representative_dir.'
    )
  if not quantize and any(sources):
    raise ExportError('--representative_* is only used by tflite_int8.')
  if representative_count < 1:
    raise ExportError('--representative_count must be at least 1.')
  files = None
  if representative_dir is not None:
    files = image_files(representative_dir)
  config = representative_config
  if isinstance(config, str):
    config = load_config(config)
  if config is not None:
    check_dataset(config, data_dir)
  # Last, as it may create the output's directory.
  check_output(output)

  with timed(f'loading weights from {weights}'):
    model = load(weights, resolution, crop_fraction)
  progress(
    f'alpha={model.alpha:g} classes={model.num_classes} '
    f'resolution={model.resolution} batch={batch}'
  )

  extra: dict[str, Any] = {}
  if fmt == 'stablehlo':
    with timed('exporting StableHLO (jax.export)'):
      exported = export_stablehlo(model, batch)
      content = bytes(exported.serialize())
    extra['stablehlo'] = {
      'platforms': list(exported.platforms),
      'calling_convention_version': exported.calling_convention_version,
      'load': 'jax.export.deserialize(bytearray(data)).call(images)',
    }
    _write(output, content)
  else:
    quantization = None
    if quantize:
      if config is not None:
        # A config object would print all its fields; its dataset says it.
        name = (
          representative_config
          if isinstance(representative_config, str)
          else f'with dataset {config.dataset!r}'
        )
        source = f'config {name} (train split)'
        images = lambda: images_from_config(
          config, model.resolution, representative_count, data_dir=data_dir
        )
      else:
        source = f'{len(files)} files in {representative_dir}'
        images = lambda: images_from_files(
          files[:representative_count], model.resolution, model.crop_fraction
        )
      progress(f'calibration images: {source}')
      calibration = Counted(images)
      quantization = Quantization(calibration, int8_io=int8_io)
    content = export_tflite(model, batch, quantization)
    if quantize:
      extra['quantization'] = {
        'scheme': 'full integer post-training quantization: int8 '
        'activations, per-channel int8 weights, int32 biases',
        'representative_data': source,
        'representative_images': calibration.count,
        'crop_fraction': model.crop_fraction,
      }
    _write(output, content)
    details = _tflite_details(output)
    extra['ops'] = details['ops']
  info = describe(model, fmt, output, batch, extra)
  if fmt == 'tflite_int8':
    _add_int8_io(info, details)
  with open(sidecar_path(output), 'w') as f:
    json.dump(info, f, indent=2)
  progress(
    f'wrote {output} ({info["size_bytes"]:,} bytes) and {sidecar_path(output)}'
  )
  return info


class _Parser(argparse.ArgumentParser):
  """Argument errors as one `error: ...` line, without the usage text."""

  def error(self, message: str):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
    prog='python -m mobilenet_flax.export',
    description=__doc__.split('\n\n')[0],
  )
  parser.add_argument(
    '--weights',
    required=True,
    help='weights directory: keras_import output, exported weights or a '
    'training workdir',
  )
  parser.add_argument('--format', required=True, choices=FORMATS)
  parser.add_argument(
    '--output',
    required=True,
    help='file to write; the sidecar goes to OUTPUT.json',
  )
  parser.add_argument(
    '--resolution',
    type=int,
    help='input size (default: the resolution of the weights)',
  )
  parser.add_argument(
    '--batch',
    default='1',
    help=f'fixed batch size, or {DYNAMIC!r} (default 1)',
  )
  parser.add_argument(
    '--representative_config',
    help="tflite_int8: calibrate on this config's train split with eval "
    'preprocessing, e.g. configs/quickstart.py',
  )
  parser.add_argument(
    '--representative_dir',
    help='tflite_int8: calibrate on the JPEG/PNG files of this folder',
  )
  parser.add_argument(
    '--representative_count',
    type=int,
    default=DEFAULT_REPRESENTATIVE_COUNT,
    help='tflite_int8: calibration images to use',
  )
  parser.add_argument(
    '--data_dir',
    help='tfds data directory for --representative_config',
  )
  parser.add_argument(
    '--crop_fraction',
    type=float,
    help='central crop of the eval preprocessing (default: the training '
    "run's, else 0.875)",
  )
  parser.add_argument(
    '--int8_io',
    action='store_true',
    help='tflite_int8: int8 input and output tensors',
  )
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    info = export(
      args.weights,
      args.format,
      args.output,
      resolution=args.resolution,
      batch=args.batch,
      representative_config=args.representative_config,
      representative_dir=args.representative_dir,
      representative_count=args.representative_count,
      data_dir=args.data_dir,
      crop_fraction=args.crop_fraction,
      int8_io=args.int8_io,
    )
  except ExportError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  # One summary line on stdout, for scripts.
  print(
    json.dumps(
      {
        'output': args.output,
        'format': args.format,
        'size_bytes': info['size_bytes'],
        'sidecar': sidecar_path(args.output),
      }
    )
  )
  return 0


if __name__ == '__main__':
  sys.exit(main())
