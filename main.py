r"""Trains or evaluates MobileNet v1.

  python main.py --config=configs/default.py:alpha=0.5,res=160 \
      --workdir=runs/mobilenet_050_160
  python main.py --config=configs/quickstart.py --workdir=runs/quickstart
  python main.py --config=configs/default.py --workdir=runs/eval \
      --mode=eval --config.init_from=PATH_TO_WEIGHTS

Any config field can be overridden on the command line, e.g.
`--config.batch_size=256`. A run resumes from the latest checkpoint in
`--workdir`.
"""

import logging as std_logging
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from mobilenet_flax import (
  checkpoints,
  config_lib,
  distributed,
  synthetic,
  train,
)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  'config',
  None,
  'Config file, e.g. configs/default.py:alpha=0.5,res=160.',
  lock_config=True,
)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
flags.DEFINE_enum(
  'mode',
  'train',
  ['train', 'eval'],
  'train: train and evaluate (resuming if possible); eval: score weights '
  'from --config.init_from or the latest checkpoint in --workdir.',
)
flags.DEFINE_enum(
  'multihost',
  'auto',
  ['auto', 'on', 'off'],
  'Join a multi-process JAX cluster: auto = on Cloud TPU VMs, in multi-task '
  'SLURM jobs, or when a coordinator is given.',
)
flags.DEFINE_string(
  'coordinator_address',
  None,
  'host:port of process 0, for clusters JAX cannot detect itself '
  '(default: $JAX_COORDINATOR_ADDRESS).',
)
flags.DEFINE_integer('num_processes', None, 'With --coordinator_address.')
flags.DEFINE_integer('process_id', None, 'With --coordinator_address.')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(std_logging.Filter):
  """Keeps the INFO chatter of orbax (every save), tfds (every dataset
  built) and JAX's backend probing out of the training log."""

  _CHATTY = ('/orbax/', '/tensorflow_datasets/', '/jax/_src/xla_bridge')

  def filter(self, record):
    # Python levels: absl.logging.WARNING is absl's own (-1) scale.
    if record.levelno >= std_logging.WARNING:
      return True
    return not any(part in (record.pathname or '') for part in self._CHATTY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # On the handler, not the logger: the libraries log through their own
  # Python loggers, whose records reach absl's handler by propagation.
  logging.get_absl_handler().python_handler.addFilter(_QuietLibraries())
  # Before anything touches a device.
  distributed.initialize(
    FLAGS.multihost,
    FLAGS.coordinator_address,
    FLAGS.num_processes,
    FLAGS.process_id,
  )
  expected_errors = (
    config_lib.ConfigError,
    checkpoints.CheckpointMismatchError,
    train.NonFiniteError,
    distributed.WorkdirNotSharedError,
  )
  if FLAGS.config.dataset != synthetic.NAME:
    # Importing it also hides accelerators from TensorFlow: JAX owns them.
    import input_pipeline

    expected_errors += (input_pipeline.DatasetError,)

  logging.info(
    'JAX process %d/%d, local devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.local_devices(),
  )
  try:
    if FLAGS.mode == 'eval':
      train.evaluate(FLAGS.config, FLAGS.workdir)
    else:
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except expected_errors as e:
    # Errors that explain themselves: no traceback, a non-zero exit.
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
