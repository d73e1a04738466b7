"""Config files load and validate; bad values fail early and clearly."""

import importlib
import pathlib
import re
import subprocess
import sys

import pytest

from configs import default, quickstart
from mobilenet_flax import config_lib, models

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_NAMES = sorted(
  p.stem for p in (ROOT / 'configs').glob('*.py') if p.stem != '__init__'
)


def load(name, arg=None):
  return importlib.import_module(f'configs.{name}').get_config(arg)


def test_config_files_found():
  assert {'default', 'quickstart', 'tpu', 'gpu'} <= set(CONFIG_NAMES)


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_config_loads_and_validates(name):
  config = load(name)
  config_lib.validate(config)
  assert 0 < config.model.alpha <= models.MAX_ALPHA
  assert config.resolution >= 32


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_config_takes_alpha_and_res(name):
  config = load(name, 'alpha=0.5,res=160')
  config_lib.validate(config)
  assert config.model.alpha == 0.5
  assert config.resolution == 160
  assert load(name, 'res=192').resolution == 192


@pytest.mark.parametrize('name', CONFIG_NAMES)
@pytest.mark.parametrize('arg', ['alpha=0.5,width=3', 'alpha0.5'])
def test_bad_arg_string_is_a_clear_error(name, arg):
  bad = arg.split(',')[-1]
  with pytest.raises(ValueError) as error:
    load(name, arg)
  message = str(error.value)
  assert repr(bad) in message
  assert "'alpha=<float>,res=<int>'" in message


def _set(config, field, value):
  *parents, name = field.split('.')
  for parent in parents:
    config = config[parent]
  config[name] = value


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('model.alpha', 0.0, 'model.alpha must be in (0, 4], got 0.0.'),
    ('model.alpha', -1.0, 'model.alpha must be in (0, 4], got -1.0.'),
    ('model.alpha', 4.5, 'model.alpha must be in (0, 4], got 4.5.'),
    ('resolution', 31, 'resolution must be an integer >= 32, got 31.'),
    ('resolution', 16, 'resolution must be an integer >= 32, got 16.'),
    ('optimizer', 'adam', "optimizer must be one of ('rmsprop', 'momentum')"),
    ('dataset', '', 'dataset must be a tfds dataset name'),
    ('batch_size', 0, 'batch_size must be a positive integer, got 0.'),
    ('lr_schedule', 'step', 'lr_schedule must be one of'),
    ('model.dtype', 'float16', 'model.dtype must be one of'),
    ('model.conv_impl', 'fft', 'model.conv_impl must be one of'),
    ('num_train_steps', 0, 'num_train_steps must be > 0, or -1'),
  ],
)
def test_invalid_value_is_rejected(field, value, message):
  config = default.get_config()
  _set(config, field, value)
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.validate(config)


@pytest.mark.parametrize(
  'field, value',
  [('model.alpha', 4.0), ('model.alpha', 0.125), ('resolution', 32)],
)
def test_boundary_values_are_accepted(field, value):
  config = default.get_config()
  _set(config, field, value)
  config_lib.validate(config)


def test_every_problem_is_listed_at_once():
  config = default.get_config()
  config.model.alpha = 0.0
  config.optimizer = 'adam'
  config.resolution = 16
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(config)
  message = str(error.value)
  # One line (the command line prints it after `error:`), each problem a
  # sentence of its own.
  assert '\n' not in message
  for field in ('model.alpha', 'optimizer', 'resolution'):
    assert re.search(rf'(: |\. ){re.escape(field)} must be', message)


def test_batch_size_must_split_over_the_devices():
  config = default.get_config()
  config.batch_size = 1020
  with pytest.raises(
    config_lib.ConfigError, match='not divisible by the 8 devices'
  ):
    config_lib.derive(config, num_train_examples=10_000, device_count=8)
  config.batch_size = 1024
  derived = config_lib.derive(
    config, num_train_examples=10_000, device_count=8, process_count=2
  )
  assert derived.per_process_batch_size == 512


def test_unknown_dataset_is_a_clear_error():
  # Imported here: it brings in TensorFlow, which only this test needs.
  import input_pipeline

  config = quickstart.get_config()
  config.dataset = 'no_such_dataset'
  with pytest.raises(
    input_pipeline.DatasetError, match="Unknown tfds dataset 'no_such_dataset'"
  ):
    input_pipeline.get_dataset_info(config)


def _main(*args):
  return subprocess.run(
    [sys.executable, str(ROOT / 'main.py'), *args],
    capture_output=True,
    text=True,
    check=False,
    cwd=ROOT,
  )


def test_main_rejects_an_invalid_value_before_training(tmp_path):
  workdir = tmp_path / 'run'
  result = _main(
    '--config=configs/quickstart.py',
    f'--workdir={workdir}',
    '--config.model.alpha=-1',
  )
  assert result.returncode != 0
  assert 'model.alpha must be in (0, 4], got -1.0.' in result.stderr
  assert 'Training' not in result.stderr
  # Nothing was written: validation runs before the workdir is made.
  assert not workdir.exists()


def test_main_rejects_a_bad_config_argument(tmp_path):
  result = _main(
    '--config=configs/quickstart.py:alpha=0.5,width=3',
    f'--workdir={tmp_path / "run"}',
  )
  assert result.returncode != 0
  assert "'width=3' not understood" in result.stderr
