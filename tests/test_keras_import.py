"""Tests of the Keras MobileNet weight import against Keras itself."""

import functools
import os
import shutil
import subprocess
import sys
import types

import jax
import keras
import numpy as np
import pytest

from mobilenet_flax import keras_import, models

# Two width/resolution pairs cover both the channel scaling and two input
# sizes while keeping Keras and XLA on CPU fast.
CASES = ((1.0, 128), (0.5, 160))
ATOL = 1e-4
RTOL = 1e-5


def _keras_mobilenet(alpha, resolution, **kwargs):
  return keras.applications.MobileNet(
    input_shape=(resolution, resolution, 3),
    alpha=alpha,
    weights=None,
    classifier_activation=None,
    **kwargs,
  )


def _randomize(keras_model, rng, x):
  """Gives every weight and batch-norm statistic a distinct random value.

  Kernels are He-scaled and the moving statistics are calibrated on `x`
  (then jittered) so that activations neither vanish nor saturate: with
  arbitrary statistics the logits barely depend on the input, and a
  transposed early kernel would go unnoticed. Large gammas and betas push
  some activations past ReLU6's cap, so the cap is exercised too.
  """
  norms = []
  for layer in keras_model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.gamma.assign(rng.uniform(1.0, 3.0, c))
      layer.beta.assign(rng.uniform(0.0, 2.0, c))
      norms.append(layer)
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
      shape = layer.kernel.shape
      layer.kernel.assign(rng.normal(0, np.sqrt(2 / 9), shape))
    elif isinstance(layer, keras.layers.Conv2D):
      shape = layer.kernel.shape
      fan_in = np.prod(shape[:-1])
      layer.kernel.assign(rng.normal(0, np.sqrt(2 / fan_in), shape))
      if layer.use_bias:
        layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape))
    elif layer.weights:
      raise AssertionError(f'unexpected layer with weights: {layer.name}')

  # One training-mode pass with momentum 0 stores the batch statistics.
  momenta = [layer.momentum for layer in norms]
  for layer in norms:
    layer.momentum = 0.0
  keras_model(x, training=True)
  for layer, momentum in zip(norms, momenta, strict=True):
    layer.momentum = momentum
    c = layer.moving_mean.shape[0]
    std = np.sqrt(layer.moving_variance.numpy())
    mean = layer.moving_mean.numpy() + rng.normal(0, 0.2, c) * std
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(std**2 * rng.uniform(0.7, 1.4, c))


@functools.cache
def _random_case(alpha, resolution):
  """A randomised Keras model, fresh test inputs and Keras' logits."""
  rng = np.random.default_rng(int(alpha * 100) + resolution)
  keras_model = _keras_mobilenet(alpha, resolution)
  shape = (2, resolution, resolution, 3)
  calibration = rng.uniform(-1, 1, shape).astype(np.float32)
  _randomize(keras_model, rng, calibration)
  x = rng.uniform(-1, 1, shape).astype(np.float32)
  logits = keras.ops.convert_to_numpy(keras_model(x, training=False))
  return keras_model, x, logits


@functools.cache
def _apply_fn(alpha, num_classes, impl):
  model = models.MobileNetV1(
    alpha=alpha, num_classes=num_classes, conv_impl=impl
  )
  return jax.jit(functools.partial(model.apply, train=False))


@pytest.mark.parametrize('impl', ['grouped_conv', 'shifted'])
@pytest.mark.parametrize('alpha,resolution', CASES)
def test_logits_match_keras(alpha, resolution, impl):
  keras_model, x, expected = _random_case(alpha, resolution)
  # Without input dependence the comparison would test little but biases.
  assert np.abs(expected[0] - expected[1]).max() > 100 * ATOL
  assert 0.5 < np.abs(expected).max() < 50

  variables = keras_import.variables_from_keras(keras_model)
  logits = _apply_fn(alpha, 1000, impl)(variables, x)
  np.testing.assert_allclose(logits, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
  'layer,transform',
  [
    ('conv1', lambda k: k.transpose(1, 0, 2, 3)),
    ('conv_dw_13', lambda k: k.transpose(1, 0, 2, 3)),
    ('conv_pw_1_bn', None),
  ],
)
def test_comparison_catches_wrong_tensors(layer, transform):
  """A spatially transposed kernel or swapped statistics must fail the
  tolerance by far, or the match above proves nothing about them."""
  keras_model, x, expected = _random_case(*CASES[0])
  variables = keras_import.variables_from_keras(keras_model)
  variables = jax.tree_util.tree_map(np.copy, variables)
  if transform is None:
    stats = variables['batch_stats'][layer]
    stats['mean'], stats['var'] = stats['var'], np.abs(stats['mean']) + 0.1
  else:
    kernel = variables['params'][layer]['kernel']
    variables['params'][layer]['kernel'] = transform(kernel)
  logits = _apply_fn(CASES[0][0], 1000, 'shifted')(variables, x)
  assert np.abs(logits - expected).max() > 100 * ATOL


def test_variables_match_init_structure():
  keras_model, _, _ = _random_case(*CASES[1])
  variables = keras_import.variables_from_keras(keras_model)
  model = models.MobileNetV1(alpha=CASES[1][0])
  expected = keras_import.expected_shapes(model)
  assert jax.tree_util.tree_structure(
    variables
  ) == jax.tree_util.tree_structure(expected)
  shapes = jax.tree_util.tree_map(np.shape, variables)
  assert shapes == jax.tree_util.tree_map(lambda s: s.shape, expected)
  leaves = jax.tree_util.tree_leaves(variables)
  assert all(leaf.dtype == np.float32 for leaf in leaves)
  # Keras' own count for these layers (BN statistics included).
  assert sum(leaf.size for leaf in leaves) == keras_model.count_params()


@pytest.mark.parametrize(
  'alpha,resolution,classes', [(0.75, 192, 10), (0.25, 224, 5)]
)
def test_infer_model_fields(alpha, resolution, classes):
  keras_model = _keras_mobilenet(alpha, resolution, classes=classes)
  assert keras_import.infer_model_fields(keras_model) == dict(
    alpha=alpha, num_classes=classes, resolution=resolution
  )


def test_infer_model_fields_of_random_cases():
  for alpha, resolution in CASES:
    keras_model, _, _ = _random_case(alpha, resolution)
    assert keras_import.infer_model_fields(keras_model) == dict(
      alpha=alpha, num_classes=1000, resolution=resolution
    )


@pytest.mark.parametrize('code,alpha', sorted(keras_import.ALPHA_CODES.items()))
@pytest.mark.parametrize('resolution', keras_import.RESOLUTIONS)
def test_parse_weights_filename(code, alpha, resolution):
  name = f'mobilenet_{code}_{resolution}_tf.h5'
  assert keras_import.parse_weights_filename(name) == (alpha, resolution)
  path = os.path.join('/some/dir', name)
  assert keras_import.parse_weights_filename(path) == (alpha, resolution)


@pytest.mark.parametrize(
  'name',
  [
    'mobilenet_1_0_224_tf_no_top.h5',
    'mobilenet_1_0_225_tf.h5',
    'mobilenet_0_5_224_tf.h5',
    'mobilenet_1_0_224_tf.h5.bak',
    'xmobilenet_1_0_224_tf.h5',
    'weights.h5',
  ],
)
def test_parse_weights_filename_rejects(name):
  assert keras_import.parse_weights_filename(name) is None


def test_keras_padding_matches():
  for resolution in keras_import.RESOLUTIONS:
    assert keras_import.keras_padding_matches(resolution)
  # 200 -> 100 -> 50 -> 25: the fourth stride-2 layer sees an odd size.
  assert not keras_import.keras_padding_matches(200)
  assert keras_import.keras_padding_matches(223)


@pytest.fixture(scope='module')
def saved_h5(tmp_path_factory):
  """A random alpha 0.25 model saved in the legacy .h5 format of the
  released files, under a released file name."""
  keras_model, _, _ = _random_case(0.25, 128)
  path = tmp_path_factory.mktemp('h5') / 'mobilenet_2_5_128_tf.h5'
  keras_model.save(path)
  return keras_model, str(path)


def _assert_trees_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(
    jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True
  ):
    np.testing.assert_array_equal(x, y)


def test_load_keras_h5_from_released_name(saved_h5):
  source, path = saved_h5
  loaded = keras_import.load_keras_h5(path)
  assert keras_import.infer_model_fields(loaded) == dict(
    alpha=0.25, num_classes=1000, resolution=128
  )
  _assert_trees_equal(
    keras_import.variables_from_keras(loaded),
    keras_import.variables_from_keras(source),
  )


def test_load_keras_h5_explicit_args(saved_h5, tmp_path):
  source, path = saved_h5
  renamed = tmp_path / 'finetuned.h5'
  shutil.copy(path, renamed)
  loaded = keras_import.load_keras_h5(str(renamed), alpha=0.25, resolution=96)
  assert keras_import.infer_model_fields(loaded)['resolution'] == 96
  _assert_trees_equal(
    keras_import.variables_from_keras(loaded),
    keras_import.variables_from_keras(source),
  )
  # Explicit values override the name: the same weights at another size.
  variables, fields = keras_import.convert_h5(path, resolution=160)
  assert fields == dict(alpha=0.25, num_classes=1000, resolution=160)


def test_load_keras_h5_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='mobilenet_1_0_224_tf.h5'):
    keras_import.load_keras_h5(str(tmp_path / 'mobilenet_1_0_224_tf.h5'))
  unnamed = tmp_path / 'weights.h5'
  unnamed.write_bytes(b'')
  with pytest.raises(ValueError, match='pass alpha and resolution'):
    keras_import.load_keras_h5(str(unnamed))
  with pytest.raises(ValueError, match='pass alpha and resolution'):
    keras_import.load_keras_h5(str(unnamed), alpha=0.5)
  no_top = tmp_path / 'mobilenet_1_0_224_tf_no_top.h5'
  no_top.write_bytes(b'')
  with pytest.raises(ValueError, match='no classifier'):
    keras_import.load_keras_h5(str(no_top))


def test_structure_mismatch_names_layer():
  keras_model, _, _ = _random_case(0.25, 128)
  with pytest.raises(ValueError, match=r"Layer 'conv1'.*\(3, 3, 3, 16\)"):
    keras_import.variables_from_keras(
      keras_model, models.MobileNetV1(alpha=0.5)
    )
  with pytest.raises(ValueError, match=r"Layer 'logits'.*\(10,\)"):
    keras_import.variables_from_keras(
      keras_model, models.MobileNetV1(alpha=0.25, num_classes=10)
    )


def test_rejects_other_keras_models():
  no_top = keras.applications.MobileNet(
    input_shape=(128, 128, 3), alpha=0.25, weights=None, include_top=False
  )
  with pytest.raises(ValueError, match="no layer 'conv_preds'"):
    keras_import.variables_from_keras(no_top)
  # Keras rounds 32 * 0.1 down to 3 filters; MobileNetV1 keeps at least 8.
  narrow = _keras_mobilenet(0.1, 128)
  with pytest.raises(ValueError, match="'conv1' has 3 filters"):
    keras_import.variables_from_keras(narrow)
  odd_epsilon = _keras_mobilenet(0.25, 128)
  odd_epsilon.get_layer('conv_pw_5_bn').epsilon = 1e-5
  with pytest.raises(ValueError, match="'conv_pw_5_bn'.*epsilon"):
    keras_import.variables_from_keras(odd_epsilon)


def test_cli_run_saves_pretrained(saved_h5, tmp_path, monkeypatch, capsys):
  """The CLI hands the converted variables and fields to
  `checkpoints.save_pretrained`, stubbed here to test the import alone."""
  calls = []

  def save_pretrained(output_dir, variables, model_fields):
    calls.append((output_dir, variables, model_fields))
    os.makedirs(output_dir)
    with open(os.path.join(output_dir, 'checkpoint'), 'w') as f:
      f.write('stub')

  stub = types.ModuleType('mobilenet_flax.checkpoints')
  stub.save_pretrained = save_pretrained
  monkeypatch.setitem(sys.modules, 'mobilenet_flax.checkpoints', stub)

  source, path = saved_h5
  out = str(tmp_path / 'converted')
  fields = keras_import.run(path, out)
  assert fields == dict(alpha=0.25, num_classes=1000, resolution=128)
  [(output_dir, variables, model_fields)] = calls
  assert (output_dir, model_fields) == (out, fields)
  _assert_trees_equal(variables, keras_import.variables_from_keras(source))
  printed = capsys.readouterr().out
  assert printed.splitlines() == [
    f'Converted {path}: alpha 0.25, resolution 128, 1000 classes, '
    '470,072 parameters.',
    f'Wrote {out}',
  ]


def test_flags():
  from absl import flags

  fv = flags.FlagValues()
  keras_import.define_flags(fv)
  fv(['prog', '--h5=a.h5', '--output_dir=out', '--resolution=160'])
  assert (fv.h5, fv.output_dir, fv.alpha, fv.resolution) == (
    'a.h5',
    'out',
    None,
    160,
  )
  fv = flags.FlagValues()
  keras_import.define_flags(fv)
  with pytest.raises(flags.IllegalFlagValueError):
    fv(['prog', '--h5=a.h5'])


def test_imports_without_keras():
  """GPU machines have JAX but no TensorFlow or Keras."""
  code = (
    'import sys\n'
    'for name in ("keras", "tensorflow", "h5py"):\n'
    '  sys.modules[name] = None\n'
    'from mobilenet_flax import keras_import\n'
    'assert keras_import.parse_weights_filename("mobilenet_7_5_192_tf.h5")'
    ' == (0.75, 192)\n'
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, '-c', code], check=True, cwd=root)
