"""Training on an image folder records its class names with the weights;
`init_from` weights with another class count fine-tune (every layer but the
classifier reused); other mismatches stay errors. A tiny model on a folder
of scikit-learn digits, so no published weights are needed here (see
test_real_weights.py for those)."""

import json
import logging
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import datasets as sklearn_datasets

from configs import quickstart
from input_pipeline import digits
from mobilenet_flax import checkpoints, optim, predict, train

WORDS = [
  'zero',
  'one',
  'two',
  'three',
  'four',
  'five',
  'six',
  'seven',
  'eight',
  'nine',
]


def tiny_config(dataset, **overrides):
  """The quickstart recipe shrunk to a couple of steps (as in
  test_train.py, so that both share compiled steps)."""
  config = quickstart.get_config('alpha=0.125,res=32')
  config.dataset = dataset
  config.batch_size = 16
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.warmup_epochs = 0.0
  config.update(overrides)
  return config


def write_digits(root, classes, per_class):
  """`per_class` (train, val) PNGs of each digit, in folders named by
  `classes` (class i holds digit i)."""
  data = sklearn_datasets.load_digits()
  for digit, name in enumerate(classes):
    indices = np.flatnonzero(data.target == digit)
    for split, chosen in (
      ('train', indices[: per_class[0]]),
      ('val', indices[per_class[0] : sum(per_class)]),
    ):
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      for i in chosen:
        image = digits.to_rgb_uint8(data.images[i])
        Image.fromarray(image).save(folder / f'{i}.png')
  return root


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A 2-step run on the ten digits in folders named by words, and its
  folder."""
  root = write_digits(tmp_path_factory.mktemp('words'), WORDS, (4, 2))
  workdir = tmp_path_factory.mktemp('run')
  results = train.train_and_evaluate(
    tiny_config(f'folder:{root}'), str(workdir)
  )
  return root, str(workdir), results


def test_folder_run_records_class_names(trained):
  root, workdir, results = trained
  names = sorted(WORDS)  # Labels follow the sorted folder names.
  assert results['status'] == 'completed'
  assert results['class_names'] == names
  assert results['model'] == {
    'alpha': 0.125,
    'resolution': 32,
    'num_classes': 10,
  }
  assert results['eval']['examples'] == 20  # Every val image once.
  on_disk = json.loads((pathlib.Path(workdir) / 'results.json').read_text())
  assert on_disk['class_names'] == names
  info = checkpoints.pretrained_info(workdir)
  assert info == {'class_names': names, 'eval_crop_fraction': 1.0}


def test_predict_and_export_name_the_folder_classes(trained, tmp_path):
  root, workdir, _ = trained
  images = [str(p) for p in sorted((root / 'val' / 'three').iterdir())]
  from_run = predict.Predictor(workdir)
  assert from_run.class_names == sorted(WORDS)
  assert from_run.crop_fraction == 1.0
  exported = checkpoints.export_pretrained(workdir, str(tmp_path / 'export'))
  record = json.loads((exported / 'model.json').read_text())
  assert record['class_names'] == sorted(WORDS)
  assert record['eval_crop_fraction'] == 1.0
  _, fields = checkpoints.load_pretrained(str(exported))
  assert fields == {'alpha': 0.125, 'resolution': 32, 'num_classes': 10}
  from_export = predict.Predictor(str(exported))
  for a, b in zip(
    from_run.classify(images, 10), from_export.classify(images, 10), strict=True
  ):
    assert a.top == b.top
    assert {name for _, name, _ in a.top} == set(WORDS)


def _initial_params(config, workdir):
  run = train._setup(config, workdir, None)
  tx = optim.create_optimizer(
    config, optim.create_learning_rate_fn(config, run.derived)
  )
  return train._initial_state(run, tx).params


def test_init_from_another_class_count_replaces_only_the_classifier(
  trained, tmp_path, caplog
):
  _, workdir, _ = trained
  root = write_digits(tmp_path / 'three', ['a', 'b', 'c'], (2, 1))
  loaded, _ = checkpoints.load_pretrained(workdir)
  config = tiny_config(f'folder:{root}', init_from=workdir)
  with caplog.at_level(logging.INFO):
    params = _initial_params(config, str(tmp_path / 'ft'))
  scratch = _initial_params(
    tiny_config(f'folder:{root}'), str(tmp_path / 'scratch')
  )
  assert params['logits']['kernel'].shape == (loaded_width(loaded), 3)
  # The new classifier is the one a run from scratch starts with.
  for name in ('kernel', 'bias'):
    np.testing.assert_array_equal(
      params['logits'][name], scratch['logits'][name]
    )
  # Every other layer is the loaded one.
  others = [k for k in params if k != 'logits']
  assert len(others) == 54
  for layer in others:
    for name, value in params[layer].items():
      np.testing.assert_array_equal(value, loaded['params'][layer][name])
  assert not np.array_equal(
    params['conv1']['kernel'], scratch['conv1']['kernel']
  )
  messages = ' '.join(r.getMessage() for r in caplog.records)
  assert 'reused 54 layers' in messages
  assert 'new classifier logits for 3 classes (the weights have 10)' in messages


def loaded_width(variables):
  return variables['params']['logits']['kernel'].shape[0]


def test_other_mismatches_are_errors(trained, tmp_path):
  root, workdir, _ = trained
  config = tiny_config(f'folder:{root}', init_from=workdir)
  config.model.alpha = 0.25
  with pytest.raises(
    checkpoints.CheckpointMismatchError,
    match='alpha: checkpoint has 0.125, config has 0.25',
  ):
    _initial_params(config, str(tmp_path / 'a'))
  # Weights lacking a layer (and holding one the model does not have).
  variables, fields = checkpoints.load_pretrained(workdir)
  variables = jax.tree.map(np.asarray, variables)
  variables['params']['extra'] = variables['params'].pop('conv_pw_13')
  broken = checkpoints.save_pretrained(str(tmp_path / 'b'), variables, fields)
  config = tiny_config(f'folder:{root}', init_from=str(broken))
  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    _initial_params(config, str(tmp_path / 'c'))
  message = str(error.value)
  assert "['params']['conv_pw_13']['kernel']: missing in the weights" in message
  assert "['params']['extra']['kernel']: not in the model" in message
