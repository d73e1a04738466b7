"""The converter reads alpha, classes and the input size from the .h5 file
itself, in both layouts, with any file name; a released name is checked
against the contents; files that are not a MobileNet v1 give one clear
error. Files are written here by Keras 3 (random weights); the published
files are in test_real_weights.py."""

import os
import subprocess
import sys

import h5py
import keras
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

import input_pipeline
from mobilenet_flax import class_names, errors, keras_import

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mobilenet(alpha, resolution, **kwargs):
  return keras.applications.MobileNet(
    input_shape=(resolution, resolution, 3),
    alpha=alpha,
    weights=None,
    classifier_activation=None,
    **kwargs,
  )


def _as_save_weights(whole_model, path):
  """The `save_weights` layout of a whole-model save: the layer groups of
  `model_weights/` at the top, no architecture."""
  with h5py.File(whole_model, 'r') as src, h5py.File(path, 'w') as dst:
    for key, value in src['model_weights'].attrs.items():
      dst.attrs[key] = value
    for name in src['model_weights']:
      src.copy(src['model_weights'][name], dst, name=name)
  return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """An alpha-0.5, 96 px, 7-class model as a whole-model save with a name
  that says nothing, and its weights in the `save_weights` layout."""
  root = tmp_path_factory.mktemp('h5')
  model = _mobilenet(0.5, 96, classes=7)
  rng = np.random.default_rng(0)
  for variable in model.weights:
    variable.assign(rng.normal(0, 0.1, variable.shape))
  whole = str(root / 'my_model.h5')
  model.save(whole)
  weights_only = _as_save_weights(whole, root / 'weights_only.h5')
  return model, whole, weights_only


def test_whole_model_save_gives_alpha_resolution_and_classes(files):
  model, whole, _ = files
  contents = keras_import.inspect_h5(whole)
  assert (contents.layout, contents.alpha) == ('whole model', 0.5)
  assert (contents.num_classes, contents.resolution) == (7, 96)
  variables, fields = keras_import.convert_h5(whole)
  assert fields == {'alpha': 0.5, 'resolution': 96, 'num_classes': 7}
  np.testing.assert_array_equal(
    variables['params']['conv_pw_3']['kernel'],
    model.get_layer('conv_pw_3').kernel.numpy(),
  )


def test_save_weights_layout_needs_a_size_from_name_or_flag(files, tmp_path):
  model, _, weights_only = files
  contents = keras_import.inspect_h5(weights_only)
  assert (contents.layout, contents.alpha) == ('save_weights', 0.5)
  assert (contents.num_classes, contents.resolution) == (7, None)
  with pytest.raises(keras_import.KerasImportError, match='--resolution'):
    keras_import.convert_h5(weights_only)
  variables, fields = keras_import.convert_h5(weights_only, resolution=128)
  assert fields == {'alpha': 0.5, 'resolution': 128, 'num_classes': 7}
  np.testing.assert_array_equal(
    variables['params']['logits']['bias'],
    model.get_layer('conv_preds').bias.numpy(),
  )
  # A released name supplies the size, and must agree with the contents.
  released = tmp_path / 'mobilenet_5_0_160_tf.h5'
  released.write_bytes(open(weights_only, 'rb').read())
  _, fields = keras_import.convert_h5(str(released))
  assert (fields['alpha'], fields['resolution']) == (0.5, 160)
  renamed = tmp_path / 'mobilenet_1_0_160_tf.h5'
  renamed.write_bytes(open(weights_only, 'rb').read())
  with pytest.raises(
    keras_import.KerasImportError, match='named for alpha 1.0.*alpha 0.5'
  ):
    keras_import.convert_h5(str(renamed))


def test_given_values_must_agree_with_the_file(files):
  _, whole, _ = files
  with pytest.raises(keras_import.KerasImportError, match='alpha 0.75 was'):
    keras_import.convert_h5(whole, alpha=0.75)
  with pytest.raises(keras_import.KerasImportError, match='1000 classes were'):
    keras_import.convert_h5(whole, num_classes=1000)


@pytest.mark.parametrize(
  'make,match',
  [
    (
      lambda: keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None
      ),
      'not a Keras MobileNet v1: it has none of the layers',
    ),
    (
      lambda: _mobilenet(0.25, 96, include_top=False),
      'has no classifier',
    ),
  ],
)
def test_other_models_are_one_clear_error(tmp_path, make, match):
  path = str(tmp_path / 'model.h5')
  make().save(path)
  with pytest.raises(keras_import.KerasImportError, match=match):
    keras_import.convert_h5(path)


def test_cli_error_is_one_line(tmp_path):
  """The converter's errors are the project's user-facing kind: the CLI
  prints one line, no traceback."""
  assert issubclass(keras_import.KerasImportError, errors.Error)
  junk = tmp_path / 'weights.h5'
  junk.write_text('not hdf5')
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'mobilenet_flax.keras_import',
      f'--h5={junk}',
      f'--output_dir={tmp_path / "out"}',
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=False,
  )
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  [line] = [x for x in result.stderr.splitlines() if x.startswith('error:')]
  assert "'weights.h5' is not an HDF5 file" in line


def test_tfds_imagenet2012_names_are_keras_order():
  """tfds imagenet2012's label names (WordNet ids), made readable, are the
  names predict gives a converted Keras model: the same order."""
  config = input_pipeline_config('imagenet2012')
  with tfds.testing.mock_data(
    num_examples=2,
    data_dir=os.path.join(ROOT, 'tests', 'testdata'),
    policy=tfds.testing.MockPolicy.USE_FILES,
  ):
    info = input_pipeline.get_dataset_info(config)
  assert info.class_names == tuple(class_names.imagenet_names())
  assert info.class_names[281] == 'tabby'


def input_pipeline_config(dataset):
  return ml_collections.ConfigDict(
    {
      'dataset': dataset,
      'data_dir': None,
      'train_split': 'train',
      'eval_split': None,
      'download_data': False,
    }
  )
