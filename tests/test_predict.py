"""`python -m mobilenet_flax.predict` on a tiny random model: output formats,
bad files, batching, and preprocessing identical to the eval pipeline."""

import functools
import io
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

import input_pipeline
from mobilenet_flax import checkpoints, models, predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ['cat', 'dog', 'bird']


def _picture(seed, size):
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (size[0] // 4, size[1] // 4, 3))
  return np.kron(coarse, np.ones((4, 4, 1))).astype(np.uint8)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  """Random weights of a 3-class model, exported with class names."""
  model = models.MobileNetV1(alpha=0.125, num_classes=3)
  x = np.zeros((1, 32, 32, 3), np.float32)
  # Jitted: op-by-op execution would compile every op on its own.
  init = jax.jit(functools.partial(model.init, train=False))
  variables = init(jax.random.PRNGKey(3), x)
  path = tmp_path_factory.mktemp('weights')
  checkpoints.save_pretrained(
    str(path),
    variables,
    {'alpha': 0.125, 'resolution': 32, 'num_classes': 3},
    class_names=NAMES,
    eval_crop_fraction=0.75,
  )
  return str(path)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
  """A folder dataset's val split: four pictures in three formats and
  sizes, a damaged JPEG, and a text file that directory walks skip."""
  root = tmp_path_factory.mktemp('images')
  files = {
    'val/cat/a.jpg': ('JPEG', _picture(0, (60, 48))),
    'val/cat/b.png': ('PNG', _picture(1, (40, 40))),
    'val/dog/c.JPEG': ('JPEG', _picture(2, (36, 80))),
    'val/dog/deeper/d.bmp': ('BMP', _picture(3, (48, 48))),
  }
  for name, (fmt, pixels) in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
  (root / 'val' / 'dog' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 no')
  (root / 'val' / 'dog' / 'notes.txt').write_text('not an image')
  return root


def test_find_images_walks_directories(images):
  found = predict.find_images([str(images / 'val'), 'missing.png'])
  rel = [os.path.relpath(p, images / 'val') for p in found[:-1]]
  assert rel == [
    'cat/a.jpg',
    'cat/b.png',
    'dog/broken.jpg',
    'dog/c.JPEG',
    'dog/deeper/d.bmp',
  ]
  assert found[-1] == 'missing.png'


def test_json_lines_with_errors(weights, images):
  out = io.StringIO()
  results = predict.run(
    weights,
    [str(images / 'val'), str(images / 'val' / 'dog' / 'notes.txt')],
    top_k=2,
    as_json=True,
    out=out,
  )
  lines = [json.loads(line) for line in out.getvalue().splitlines()]
  assert len(lines) == len(results) == 6
  by_name = {os.path.basename(line['image']): line for line in lines}
  assert set(by_name['broken.jpg']) == {'image', 'error'}
  assert 'not a readable image' in by_name['broken.jpg']['error']
  # Named explicitly, a non-image is tried, and reported.
  assert 'not a readable image' in by_name['notes.txt']['error']
  for name in ('a.jpg', 'b.png', 'c.JPEG', 'd.bmp'):
    top = by_name[name]['predictions']
    assert len(top) == 2
    assert [p['name'] for p in top] == [NAMES[p['class']] for p in top]
    assert top[0]['probability'] >= top[1]['probability'] > 0
    assert top[0]['probability'] + top[1]['probability'] <= 1 + 1e-6


def test_probabilities_are_the_models_on_eval_pipeline_images(weights, images):
  """Each image as `--mode=eval` would feed it (the folder pipeline with
  the weights' crop), through the model: the same probabilities."""
  predictor = predict.Predictor(weights, batch_size=3)
  assert predictor.crop_fraction == 0.75  # Recorded with the weights.
  config = ml_collections.ConfigDict(
    {
      'dataset': f'folder:{images}',
      'data_dir': None,
      'train_split': 'train',
      'eval_split': None,
      'resolution': 32,
      'eval_crop_fraction': 0.75,
      'cache_eval': False,
    }
  )
  dataset, _ = input_pipeline.create_eval_dataset(config, batch_size=8)
  batch = next(dataset.as_numpy_iterator())
  valid = batch['image'][batch['mask'] == 1]
  paths = [
    p
    for p in predict.find_images([str(images / 'val')])
    if not p.endswith('broken.jpg')
  ]
  # The folder pipeline reads files in sorted order, as find_images does.
  # The same ops in another graph may round the last bit differently.
  for path, image in zip(paths, valid, strict=True):
    np.testing.assert_allclose(predictor.load(path), image, atol=1e-6)
  model = models.MobileNetV1(alpha=0.125, num_classes=3)
  apply = jax.jit(functools.partial(model.apply, train=False))
  expected = jax.nn.softmax(apply(predictor.variables, valid))
  results = list(predictor.classify(paths, top_k=3))
  for result, probs in zip(results, np.asarray(expected), strict=True):
    got = np.zeros(3)
    for index, _, probability in result.top:
      got[index] = probability
    np.testing.assert_allclose(got, probs, atol=2e-6)


def test_relative_weights_path(weights, images, monkeypatch):
  """`--weights=weights/x` from the directory that holds it (orbax itself
  only takes absolute paths)."""
  monkeypatch.chdir(os.path.dirname(weights))
  predictor = predict.Predictor(os.path.basename(weights))
  assert predictor.class_names == NAMES
  [result] = predictor.classify([str(images / 'val' / 'cat' / 'a.jpg')])
  assert result.error is None and len(result.top) == 3


def test_batches_do_not_change_results(weights, images):
  paths = predict.find_images([str(images / 'val')])
  one = list(predict.Predictor(weights, batch_size=1).classify(paths))
  many = list(predict.Predictor(weights, batch_size=8).classify(paths))
  assert [r.image for r in one] == paths
  assert [r.error is None for r in one] == [r.error is None for r in many]
  for a, b in zip(one, many, strict=True):
    assert [t[0] for t in a.top] == [t[0] for t in b.top]
    np.testing.assert_allclose(
      [t[2] for t in a.top], [t[2] for t in b.top], atol=1e-5
    )


def test_cli_text_output_and_exit_status(weights, images):
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'mobilenet_flax.predict',
      f'--weights={weights}',
      '--top_k=3',
      str(images / 'val' / 'cat'),
      str(images / 'val' / 'dog' / 'broken.jpg'),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=False,
  )
  assert result.returncode == 1
  lines = result.stdout.splitlines()
  # Two images, each a path line and three class lines.
  assert lines[0].endswith('a.jpg') and lines[4].endswith('b.png')
  assert len(lines) == 8
  for line in lines[1:4] + lines[5:8]:
    probability, name = line.split()
    assert name in NAMES and 0 < float(probability) <= 1
  assert 'Traceback' not in result.stderr
  assert result.stderr.rstrip().splitlines()[-1] == (
    'error: 1 of 3 files could not be classified: '
    f'{images / "val" / "dog" / "broken.jpg"}'
  )


def test_no_images_and_missing_weights_are_errors(weights, tmp_path):
  with pytest.raises(predict.errors.Error, match='No image files'):
    predict.run(weights, [str(tmp_path)])
  (tmp_path / 'a.png').write_bytes(b'')
  with pytest.raises(FileNotFoundError, match='No weights'):
    predict.run(str(tmp_path / 'nothing'), [str(tmp_path)])
