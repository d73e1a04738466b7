r"""Images/second of the real pmapped train step on random device batches.

Builds the model, optimizer and train step exactly as training does
(`mobilenet_flax.train`), puts one random batch on the devices, runs a
warm-up (compilation), then times `--steps` steps `--repeats` times and
prints one JSON line with the median. Imports no TensorFlow, so it runs on
machines that have JAX but no TF.

  python benchmarks/train_throughput.py --alpha=1.0 --resolution=224 \
      --batch=32 --steps=5 --conv_impl=auto
"""

import json
import statistics
import time

import jax
from absl import app, flags

from configs import default
from mobilenet_flax import config_lib, layers, models, steps, synthetic, train

FLAGS = flags.FLAGS
flags.DEFINE_float('alpha', 1.0, 'Width multiplier.')
flags.DEFINE_integer('resolution', 224, 'Input height and width.')
flags.DEFINE_integer('batch', 32, 'Global batch (over all local devices).')
flags.DEFINE_integer('steps', 5, 'Timed steps per repeat.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps (the first compiles).')
flags.DEFINE_integer('repeats', 3, 'Timed repeats; the median is reported.')
flags.DEFINE_enum(
  'conv_impl', 'auto', list(layers.CONV_IMPLS), 'Conv implementation.'
)
flags.DEFINE_enum('dtype', 'float32', list(models.DTYPES), 'Compute dtype.')
flags.DEFINE_integer('num_classes', 1000, 'Classifier size.')


def main(argv):
  del argv
  config = default.get_config(f'alpha={FLAGS.alpha},res={FLAGS.resolution}')
  config.batch_size = FLAGS.batch
  config.model.conv_impl = FLAGS.conv_impl
  config.model.dtype = FLAGS.dtype
  config_lib.validate(config)
  p_step, state = steps.build_train_step(
    config, FLAGS.num_classes, synthetic.NUM_TRAIN_EXAMPLES
  )
  # Device-resident, so the figure is the step alone.
  batch = next(
    train.device_batches(
      [synthetic.random_batch(FLAGS.batch, FLAGS.resolution, FLAGS.num_classes)]
    )
  )
  start = time.perf_counter()
  for _ in range(FLAGS.warmup):
    state, metrics = p_step(state, batch)
  jax.block_until_ready(metrics)
  warmup_seconds = time.perf_counter() - start
  seconds = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
      state, metrics = p_step(state, batch)
    jax.block_until_ready(metrics)
    seconds.append((time.perf_counter() - start) / FLAGS.steps)
  step_seconds = statistics.median(seconds)
  images_per_second = FLAGS.batch / step_seconds
  print(
    json.dumps(
      {
        'benchmark': 'train_throughput',
        'backend': jax.default_backend(),
        'device_kind': jax.devices()[0].device_kind,
        'devices': jax.device_count(),
        'alpha': FLAGS.alpha,
        'resolution': FLAGS.resolution,
        'batch': FLAGS.batch,
        'conv_impl': layers.resolve_impl(FLAGS.conv_impl),
        'dtype': FLAGS.dtype,
        'steps': FLAGS.steps,
        'repeats': FLAGS.repeats,
        'warmup_seconds': round(warmup_seconds, 2),
        'seconds_per_step': round(step_seconds, 4),
        'images_per_second': round(images_per_second, 2),
        'images_per_second_per_device': round(
          images_per_second / jax.device_count(), 2
        ),
      }
    )
  )


if __name__ == '__main__':
  app.run(main)
