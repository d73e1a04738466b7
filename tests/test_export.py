"""Export to LiteRT (float32, int8) and StableHLO, checked against JAX.

Parity is the largest error over all logits of a batch relative to the
largest logit magnitude: max |y - y_jax| / max |y_jax| (infinity norms).
The JAX reference is the model as the project runs it on this host
(`conv_impl='auto'`), not the exported graph's own formulation.

Fixtures convert once per module: random weights at two (alpha,
resolution) pairs, the published Keras 0.25-128 weights (when
`../shared/weights` is present) and a shortened quickstart run on digits.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import quickstart
from mobilenet_flax import checkpoints, export, models, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_WEIGHTS = os.path.join(os.path.dirname(ROOT), 'shared', 'weights')
KERAS_025_128 = os.path.join(SHARED_WEIGHTS, 'mobilenet_2_5_128_tf.h5')
TOLERANCE = 1e-4
# Ops a MobileNet v1 graph may contain: the convolutions (batch norm and
# ReLU6 fused in), global average pooling (a sum; the 1/(H*W) is folded
# into the classifier) and the classifier. Anything else, in particular
# SLICE/STRIDED_SLICE/PAD/MUL/ADD, would be a decomposed or unfused layer.
ALLOWED_OPS = {
  'CONV_2D',
  'DEPTHWISE_CONV_2D',
  'SUM',
  'MEAN',
  'FULLY_CONNECTED',
  'QUANTIZE',
  'DEQUANTIZE',
}
# ImageNet-like photos that scikit-image ships (no download).
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket')


def relative_error(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def jax_logits(model: export.ExportModel, images):
  """The JAX model as it runs here (`auto` picks `shifted` on CPU)."""
  return np.asarray(jax.jit(model.forward('auto'))(jnp.asarray(images)))


def random_images(n, resolution, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-1, 1, (n, resolution, resolution, 3)).astype(np.float32)


def save_random_weights(directory, alpha, resolution, num_classes, seed=0):
  """Random weights whose logits are O(1) at every depth.

  Batch-norm scale and offset are random, so that folding them into the
  convolutions is exercised; the moving statistics are one batch's own
  (momentum 0), so every layer's eval-mode output is normalised rather than
  vanishing through 27 layers of random kernels.
  """
  # grouped_conv compiles faster than the CPU formulation; the variables
  # are the same.
  model = models.MobileNetV1(
    alpha=alpha,
    num_classes=num_classes,
    bn_momentum=0.0,
    conv_impl='grouped_conv',
  )
  images = jnp.asarray(random_images(8, resolution, seed))
  # Jitted: op by op, initialisation compiles every op separately.
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.key(seed), images[:1]
  )
  rng = np.random.default_rng(seed)
  params = traverse_util.flatten_dict(variables['params'])
  for path, leaf in sorted(params.items()):
    if path[0].endswith('_bn') and path[-1] == 'scale':
      params[path] = rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    elif path[0].endswith('_bn'):
      params[path] = rng.normal(0, 0.2, leaf.shape).astype(np.float32)
  params = traverse_util.unflatten_dict(params)
  _, state = jax.jit(
    functools.partial(model.apply, train=True, mutable=['batch_stats'])
  )(
    {'params': params, 'batch_stats': variables['batch_stats']},
    images,
    rngs={'dropout': jax.random.key(seed + 1)},
  )
  checkpoints.save_pretrained(
    str(directory),
    {'params': params, 'batch_stats': state['batch_stats']},
    {'alpha': alpha, 'resolution': resolution, 'num_classes': num_classes},
  )
  return str(directory)


# ---------------------------------------------------------------------------
# Random weights at two (alpha, resolution) pairs.

# name -> (alpha, resolution, classes): a narrow net at a mid size, and the
# full-width one (ImageNet's 1000 classes) at the smallest size.
PAIRS = {
  'alpha0.25_res96': (0.25, 96, 10),
  'alpha1.0_res32': (1.0, 32, 1000),
}
NARROW, WIDE = PAIRS


@pytest.fixture(scope='module')
def random_exports(tmp_path_factory):
  """Per pair: weights, a batch-1 float LiteRT file, a dynamic-batch
  StableHLO file, and the JAX logits of three random images."""
  exports = {}
  for name, (alpha, resolution, num_classes) in PAIRS.items():
    tmp = tmp_path_factory.mktemp(name)
    weights = save_random_weights(
      tmp / 'weights', alpha, resolution, num_classes
    )
    paths = {
      'tflite': str(tmp / 'model.tflite'),
      'stablehlo': str(tmp / 'model.stablehlo'),
    }
    info = {
      'tflite': export.export(weights, 'tflite', paths['tflite']),
      'stablehlo': export.export(
        weights, 'stablehlo', paths['stablehlo'], batch='dynamic'
      ),
    }
    model = export.load(weights)
    images = random_images(3, resolution, seed=1)
    exports[name] = dict(
      model=model,
      paths=paths,
      info=info,
      tmp=tmp,
      weights=weights,
      images=images,
      expected=jax_logits(model, images),
    )
  return exports


@pytest.mark.parametrize('pair', PAIRS)
def test_float_tflite_matches_jax(random_exports, pair):
  case = random_exports[pair]
  # Batch 1, as exported: one image at a time, through XNNPACK.
  actual = export.LiteRTModel(case['paths']['tflite']).predict(case['images'])
  assert actual.shape == case['expected'].shape
  assert relative_error(actual, case['expected']) <= TOLERANCE
  # A batch-1 file also runs a larger batch once its input is resized.
  resized = export.LiteRTModel(case['paths']['tflite'])(case['images'])
  assert relative_error(resized, case['expected']) <= TOLERANCE


@pytest.mark.parametrize('pair', PAIRS)
def test_stablehlo_matches_jax(random_exports, pair):
  case = random_exports[pair]
  with open(case['paths']['stablehlo'], 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  # Exported with a symbolic batch, called at 3.
  actual = np.asarray(exported.call(jnp.asarray(case['images'])))
  assert relative_error(actual, case['expected']) <= TOLERANCE


@pytest.mark.parametrize('pair', PAIRS)
def test_tflite_graph_uses_native_convolutions(random_exports, pair):
  case = random_exports[pair]
  ops = export.litert_ops(case['paths']['tflite'])
  # One DEPTHWISE_CONV_2D per depthwise layer, one CONV_2D per stem and
  # pointwise layer, and nothing that would be a decomposed depthwise conv.
  assert ops['DEPTHWISE_CONV_2D'] == len(models.BLOCKS)
  assert ops['CONV_2D'] == len(models.BLOCKS) + 1
  assert set(ops) <= ALLOWED_OPS, ops
  assert case['info']['tflite']['ops'] == dict(sorted(ops.items()))


def test_shifted_formulation_would_be_decomposed(random_exports, tmp_path):
  """The op check above can fail: the CPU training formulation exports as
  slices and multiply-adds, which is why export builds `grouped_conv`."""
  export.save_tf(
    random_exports[NARROW]['model'],
    str(tmp_path / 'saved'),
    conv_impl='shifted',
  )
  ops = export.litert_ops(export.convert_tflite(str(tmp_path / 'saved')))
  assert ops['DEPTHWISE_CONV_2D'] == 0
  assert not set(ops) <= ALLOWED_OPS


def test_dynamic_batch_tflite_matches_jax(random_exports):
  case = random_exports[NARROW]
  path = str(case['tmp'] / 'dynamic.tflite')
  info = export.export(case['weights'], 'tflite', path, batch='dynamic')
  runner = export.LiteRTModel(path)
  assert list(runner.input['shape_signature'])[0] == -1
  assert info['input']['shape'][0] == -1
  actual = runner(case['images'])  # All three at once.
  assert relative_error(actual, case['expected']) <= TOLERANCE
  assert info['ops']['DEPTHWISE_CONV_2D'] == len(models.BLOCKS)
  assert info['ops']['CONV_2D'] == len(models.BLOCKS) + 1


def test_sidecar_describes_the_model(random_exports):
  case = random_exports[NARROW]
  model = case['model']
  with open(case['paths']['tflite'] + '.json') as f:
    info = json.load(f)
  assert info == case['info']['tflite']
  assert info['format'] == 'tflite'
  assert info['input']['shape'] == [1, model.resolution, model.resolution, 3]
  assert info['input']['layout'] == 'NHWC'
  pre = info['input']['preprocessing']
  # Both spellings of the scaling map [0, 255] onto [-1, 1].
  for pixel, x in ((0, -1.0), (255, 1.0)):
    assert pixel * pre['scale'] + pre['offset'] == pytest.approx(x)
    assert (pixel - pre['mean'][0]) / pre['std'][0] == pytest.approx(x)
  assert info['num_classes'] == len(info['class_names']) == model.num_classes
  assert info['alpha'] == model.alpha
  assert info['source_weights'] == os.path.abspath(case['weights'])
  assert info['size_bytes'] == os.path.getsize(case['paths']['tflite'])
  assert case['info']['stablehlo']['input']['shape'][0] == -1


def test_int8_is_under_0_3x_the_float_size(random_exports):
  """At alpha 1 the int8 file is the weights plus per-channel metadata; at
  alpha 0.25 that metadata is a larger share (measured in the README)."""
  case = random_exports[WIDE]
  images_dir = case['tmp'] / 'images'
  images_dir.mkdir()
  write_pngs(images_dir, [photo(name) for name in PHOTOS[:2]])
  path = str(case['tmp'] / 'int8.tflite')
  info = export.export(
    case['weights'], 'tflite_int8', path, representative_dir=str(images_dir)
  )
  assert info['size_bytes'] <= 0.3 * os.path.getsize(case['paths']['tflite'])
  assert set(info['ops']) <= ALLOWED_OPS
  assert info['ops']['DEPTHWISE_CONV_2D'] == len(models.BLOCKS)


def test_stablehlo_runs_without_the_model_code(random_exports, tmp_path):
  """A fresh Python that cannot import this package reloads the artifact
  and reproduces the logits."""
  case = random_exports[NARROW]
  np.save(tmp_path / 'images.npy', case['images'])
  script = textwrap.dedent(
    """
    import importlib.abc
    import sys

    # The package is installed (editable) in this environment: make it
    # unimportable, so the artifact provably needs none of its code.
    class NoProject(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mobilenet_flax', 'flax'):
          raise ModuleNotFoundError(f'No module named {name!r} (blocked)')
        return None

    sys.meta_path.insert(0, NoProject())
    import jax
    import numpy as np
    with open(sys.argv[1], 'rb') as f:
      exported = jax.export.deserialize(bytearray(f.read()))
    logits = exported.call(np.load(sys.argv[2]))
    np.save(sys.argv[3], np.asarray(logits))
    loaded = [m for m in sys.modules if m.startswith(('mobilenet', 'flax'))]
    assert not loaded, loaded
    """
  )
  result = subprocess.run(
    [
      sys.executable,
      '-c',
      script,
      case['paths']['stablehlo'],
      str(tmp_path / 'images.npy'),
      str(tmp_path / 'logits.npy'),
    ],
    cwd=tmp_path,
    env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'},
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  actual = np.load(tmp_path / 'logits.npy')
  assert relative_error(actual, case['expected']) <= TOLERANCE


# ---------------------------------------------------------------------------
# The published Keras 0.25-128 weights, on real photos.


def photo(name):
  import skimage.data

  image = np.asarray(getattr(skimage.data, name)())
  if image.ndim == 2:
    image = np.stack([image] * 3, axis=-1)
  return image[..., :3].astype(np.uint8)


def photo_views(image):
  """The photo, four corner crops and a centre crop keeping 70% of the
  short side, and their mirror images: 12 views."""
  height, width = image.shape[:2]
  side = int(0.7 * min(height, width))
  views = [image]
  for y, x in (
    (0, 0),
    (0, width - side),
    (height - side, 0),
    (height - side, width - side),
    ((height - side) // 2, (width - side) // 2),
  ):
    views.append(image[y : y + side, x : x + side])
  return views + [view[:, ::-1] for view in views]


def write_pngs(directory, images):
  from PIL import Image

  for i, image in enumerate(images):
    Image.fromarray(np.ascontiguousarray(image)).save(
      directory / f'{i:03d}.png'
    )


@pytest.fixture(scope='module')
def real_export(tmp_path_factory):
  if not os.path.isdir(SHARED_WEIGHTS):
    pytest.skip(f'{SHARED_WEIGHTS} is absent: no published weights here')
  from mobilenet_flax import keras_import

  tmp = tmp_path_factory.mktemp('keras_025_128')
  weights = str(tmp / 'weights')
  keras_import.run(KERAS_025_128, weights)
  photos_dir = tmp / 'photos'
  photos_dir.mkdir()
  views = [view for name in PHOTOS for view in photo_views(photo(name))]
  write_pngs(photos_dir, views)
  paths = {fmt: str(tmp / f'model.{fmt}') for fmt in export.FORMATS}
  info = {
    'tflite': export.export(weights, 'tflite', paths['tflite']),
    'stablehlo': export.export(weights, 'stablehlo', paths['stablehlo']),
    'tflite_int8': export.export(
      weights,
      'tflite_int8',
      paths['tflite_int8'],
      representative_dir=str(photos_dir),
      int8_io=True,
    ),
  }
  model = export.load(weights)
  files = export.image_files(str(photos_dir))
  images = np.concatenate(
    list(export.images_from_files(files, model.resolution, 0.875))
  )
  return dict(model=model, paths=paths, info=info, images=images)


def test_real_weights_float_parity(real_export):
  model = real_export['model']
  # The first view of each photo is the whole photo.
  images = real_export['images'][:: len(real_export['images']) // len(PHOTOS)]
  expected = jax_logits(model, images)
  tflite = export.LiteRTModel(real_export['paths']['tflite']).predict(images)
  assert relative_error(tflite, expected) <= TOLERANCE
  with open(real_export['paths']['stablehlo'], 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  stablehlo = np.concatenate([exported.call(image[None]) for image in images])
  assert relative_error(stablehlo, expected) <= TOLERANCE
  # The published weights see a cat in the cat photo, through every path.
  names = model.class_names()
  for logits in (expected, tflite, stablehlo):
    assert 'cat' in names[int(np.argmax(logits[PHOTOS.index('chelsea')]))]


def _int8_vs_float(case):
  images = case['images']
  floats = export.LiteRTModel(case['paths']['tflite']).predict(images)
  int8 = export.LiteRTModel(case['paths']['tflite_int8']).predict(images)
  return floats, int8


def test_real_weights_int8_stays_close_to_float(real_export):
  """What post-training int8 keeps of the 0.25-128 model on 48 views of 4
  photos. The floors sit below what was measured here (top-1 agreement
  0.69, float top-1 within int8's top 5: 0.98) and far above what a broken
  export gives (wrong scaling or calibration: near 0)."""
  floats, int8 = _int8_vs_float(real_export)
  top1 = floats.argmax(1)
  assert np.mean(top1 == int8.argmax(1)) >= 0.6
  top5 = np.argsort(int8, axis=1)[:, -5:]
  assert np.mean([t in row for t, row in zip(top1, top5, strict=True)]) >= 0.9
  info = real_export['info']['tflite_int8']
  assert info['input']['dtype'] == info['output']['dtype'] == 'int8'
  # [-1, 1] in 256 steps.
  assert info['input']['quantization']['scale'] == pytest.approx(2 / 255)
  assert set(info['ops']) <= ALLOWED_OPS
  assert info['size_bytes'] < 0.35 * real_export['info']['tflite']['size_bytes']


@pytest.mark.xfail(
  strict=True,
  reason='post-training int8 flips about 30% of the top-1 predictions of '
  'the 0.25-128 model on these photos, nearly all low-confidence ones; '
  "Keras' own TFLite export flips the same share (README, Deploy)",
)
def test_real_weights_int8_top1_agreement_target(real_export):
  floats, int8 = _int8_vs_float(real_export)
  assert np.mean(floats.argmax(1) == int8.argmax(1)) >= 0.97


# ---------------------------------------------------------------------------
# A model trained on digits (a shortened quickstart run).


@pytest.fixture(scope='module')
def digits_export(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('digits')
  config = quickstart.get_config()
  config.data_dir = str(tmp / 'tfds')
  # 120 of the quickstart's 660 steps: enough for the predictions to mean
  # something; `make quickstart` trains the full run. Cut from the
  # quickstart's schedule, the run would stop at a high learning rate, and
  # its top-1 depended on the CPU's rounding (78% to 93% over seeds and XLA
  # flags); a cosine schedule that ends at step 120 gave 87% to 94%.
  # The weight average is off: over 120 steps it would lag the weights.
  config.num_train_steps = 120
  config.lr_schedule = 'cosine'
  config.ema_decay = 0.0
  config.eval_every_steps = 120
  config.checkpoint_every_steps = 120
  config.log_every_steps = 60
  workdir = str(tmp / 'run')
  results = train.train_and_evaluate(config, workdir)
  paths = {
    'tflite': str(tmp / 'digits.tflite'),
    'tflite_int8': str(tmp / 'digits_int8.tflite'),
  }
  info = {
    'tflite': export.export(workdir, 'tflite', paths['tflite']),
    'tflite_int8': export.export(
      workdir,
      'tflite_int8',
      paths['tflite_int8'],
      representative_config=config,
      representative_count=128,
    ),
  }
  model = export.load(workdir)
  test_images = np.concatenate(
    list(
      export.images_from_config(config, model.resolution, 1000, split='test')
    )
  )
  return dict(
    model=model,
    paths=paths,
    info=info,
    images=test_images,
    results=results,
  )


def test_digits_int8_agrees_with_float(digits_export):
  images = digits_export['images']
  assert len(images) == 360  # The whole test split.
  assert digits_export['results']['eval']['top1'] > 0.8
  floats, int8 = _int8_vs_float(digits_export)
  assert np.mean(floats.argmax(1) == int8.argmax(1)) >= 0.97
  expected = jax_logits(digits_export['model'], images)
  assert relative_error(floats, expected) <= TOLERANCE
  quantization = digits_export['info']['tflite_int8']['quantization']
  assert 'train split' in quantization['representative_data']
  # A config object is named by its dataset, not printed field by field.
  assert "dataset 'digits'" in quantization['representative_data']
  assert len(quantization['representative_data']) < 80
  assert quantization['representative_images'] == 128
  # The quickstart evaluates uncropped digits, and the sidecar says so.
  pre = digits_export['info']['tflite']['input']['preprocessing']
  assert pre['central_crop_fraction'] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# The command line.


def _cli(*args, cwd=ROOT):
  return subprocess.run(
    [sys.executable, '-m', 'mobilenet_flax.export', *args],
    cwd=cwd,
    capture_output=True,
    text=True,
    check=False,
  )


@pytest.mark.parametrize(
  'args, expected',
  [
    (['--weights={tmp}/missing', '--format=tflite'], 'does not exist'),
    (['--weights={tmp}', '--format=tflite'], 'holds no weights'),
    (['--weights={tmp}', '--format=onnx'], 'invalid choice'),
    (
      ['--weights={weights}', '--format=tflite', '--output={file}/x.tflite'],
      'cannot create',
    ),
    (['--weights={weights}', '--format=tflite_int8'], 'exactly one of'),
    (['--weights={weights}', '--format=stablehlo', '--batch=0'], '--batch'),
  ],
  ids=['missing', 'empty', 'format', 'unwritable', 'no_calibration', 'batch'],
)
def test_cli_errors_are_one_line(tmp_path, args, expected):
  weights = tmp_path / 'weights'
  weights.mkdir()
  (weights / 'model.json').write_text('{}')
  (tmp_path / 'file').write_text('not a directory')
  fields = dict(tmp=tmp_path, weights=weights, file=tmp_path / 'file')
  argv = [a.format(**fields) for a in args]
  if not any(a.startswith('--output') for a in argv):
    argv.append(f'--output={tmp_path}/out/model.bin')
  result = _cli(*argv)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: ')
  assert expected in lines[0]
  assert not os.path.exists(tmp_path / 'out' / 'model.bin')


def test_mobile_latency_benchmark_runs_tiny(tmp_path):
  """The latency benchmark end to end at its smallest size: both LiteRT
  exports with native ops, XNNPACK over the whole graph, timings for each
  case and the ratios between them, in one JSON line."""
  result = subprocess.run(
    [
      sys.executable,
      'benchmarks/mobile_latency.py',
      '--sizes=0.25-32',
      '--rounds=1',
      '--runs=2',
      '--warmup=1',
      '--threads=1',
      '--calibration_images=2',
      f'--peer_python={tmp_path}/no-peer-python',
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1
  report = json.loads(lines[0])
  assert report['benchmark'] == 'mobile_latency'
  assert any('PyTorch peer skipped' in note for note in report['notes'])
  size = report['results']['0.25-32']
  assert (size['alpha'], size['resolution']) == (0.25, 32)
  assert size['float_ops']['DEPTHWISE_CONV_2D'] == 13
  assert size['float_ops']['CONV_2D'] == 14
  assert size['int8_ops']['DEPTHWISE_CONV_2D'] == 13
  assert size['int8_bytes'] < 0.35 * size['float_bytes']
  assert all(size['xnnpack_runs_whole_graph'].values())
  cases = {'litert_float_1_thread', 'litert_int8_1_thread', 'jax'}
  assert set(size['median_ms']) == cases
  assert all(ms > 0 for ms in size['median_ms'].values())
  assert set(size['speedups']) == {
    'litert_int8_1_thread_vs_litert_float_1_thread',
    'litert_float_1_thread_vs_jax',
    'litert_int8_1_thread_vs_jax',
  }
