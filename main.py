r"""Trains or evaluates MobileNet v1.

  python main.py --config=configs/default.py:alpha=0.5,res=160 \
      --workdir=runs/mobilenet_050_160
  python main.py --config=configs/quickstart.py --workdir=runs/quickstart
  python main.py --config=configs/default.py --workdir=runs/eval \
      --mode=eval --config.init_from=PATH_TO_WEIGHTS

Any config field can be overridden on the command line, e.g.
`--config.batch_size=256` or `--config.model.dtype=bfloat16`. A run resumes
from the latest checkpoint in `--workdir`. Config paths are looked up in
the current directory, then in the project's root.

Exit status: 0 when training completed (or the evaluation ran), 75 when
SIGTERM stopped training after a checkpoint (run the same command again to
resume), 1 with one `error:` line for a problem the message explains.
"""

# First: it quiets TensorFlow's start-up logging before anything loads it.
from mobilenet_flax import cli  # noqa: I001

import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from mobilenet_flax import distributed, train

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


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  # Before anything touches a device.
  distributed.initialize(
    FLAGS.multihost,
    FLAGS.coordinator_address,
    FLAGS.num_processes,
    FLAGS.process_id,
  )
  logging.info(
    'JAX process %d/%d, local devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.local_devices(),
  )
  if FLAGS.mode == 'eval':
    train.evaluate(FLAGS.config, FLAGS.workdir)
    return
  results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if results['status'] == 'preempted':
    sys.exit(cli.EXIT_PREEMPTED)


if __name__ == '__main__':
  cli.run(main)
