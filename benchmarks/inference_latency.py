r"""Inference latency and throughput of the eval-mode forward pass.

Builds `MobileNetV1` at the given width, resolution and conv implementation,
jit-compiles the eval-mode forward (batch norm from its moving averages, no
dropout) once per batch size, runs `--warmup` untimed calls, then times
`--runs` single calls and prints one JSON line. Batch 1 gives the latency
(median milliseconds per image); larger batches give throughput (images per
second at the median). Imports no TensorFlow.

  python benchmarks/inference_latency.py --alpha=1.0 --resolution=224 \
      --conv_impl=auto --batch_sizes=1,32
"""

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from mobilenet_flax import layers, models

FLAGS = flags.FLAGS
flags.DEFINE_float('alpha', 1.0, 'Width multiplier.')
flags.DEFINE_integer('resolution', 224, 'Input height and width.')
flags.DEFINE_enum(
  'conv_impl', 'auto', list(layers.CONV_IMPLS), 'Conv implementation.'
)
flags.DEFINE_list('batch_sizes', ['1', '32'], 'Batch sizes to time.')
flags.DEFINE_integer('runs', 20, 'Timed calls per batch size.')
flags.DEFINE_integer('warmup', 3, 'Untimed calls per batch size (>= 1).')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_integer('num_classes', 1000, 'Classifier size.')


def time_batch(forward, variables, batch, resolution, warmup, runs):
  """Seconds per call (each one blocked on) and the compile-and-warm-up
  time."""
  images = np.random.default_rng(0).uniform(
    -1, 1, (batch, resolution, resolution, 3)
  )
  images = jax.device_put(images.astype(np.float32))
  start = time.perf_counter()
  for _ in range(max(warmup, 1)):  # The first call compiles.
    jax.block_until_ready(forward(variables, images))
  warmup_seconds = time.perf_counter() - start
  seconds = []
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(forward(variables, images))
    seconds.append(time.perf_counter() - start)
  return seconds, warmup_seconds


def main(argv):
  del argv
  batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  if not batch_sizes or min(batch_sizes) < 1:
    raise app.UsageError('--batch_sizes must list positive integers.')
  if FLAGS.runs < 1:
    raise app.UsageError('--runs must be >= 1.')
  model = models.MobileNetV1(
    alpha=FLAGS.alpha,
    num_classes=FLAGS.num_classes,
    conv_impl=FLAGS.conv_impl,
    dtype=jnp.dtype(FLAGS.dtype),
  )
  shape = (1, FLAGS.resolution, FLAGS.resolution, 3)
  variables = jax.jit(
    lambda rng: model.init(rng, jnp.zeros(shape), train=False)
  )(jax.random.PRNGKey(0))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))

  results = {}
  for batch in batch_sizes:
    seconds, warmup_seconds = time_batch(
      forward, variables, batch, FLAGS.resolution, FLAGS.warmup, FLAGS.runs
    )
    median = statistics.median(seconds)
    results[str(batch)] = {
      'median_ms': round(1000 * median, 3),
      'min_ms': round(1000 * min(seconds), 3),
      'images_per_second': round(batch / median, 2),
      'warmup_seconds': round(warmup_seconds, 2),
    }
  report = {
    'benchmark': 'inference_latency',
    'backend': jax.default_backend(),
    'device_kind': jax.devices()[0].device_kind,
    'alpha': FLAGS.alpha,
    'resolution': FLAGS.resolution,
    'conv_impl': layers.resolve_impl(FLAGS.conv_impl),
    'dtype': FLAGS.dtype,
    'runs': FLAGS.runs,
    'warmup': FLAGS.warmup,
    'batches': results,
  }
  # The two figures the issue tracks, when their batch sizes were timed.
  if '1' in results:
    report['batch_1_latency_ms'] = results['1']['median_ms']
  if '32' in results:
    report['batch_32_images_per_second'] = results['32']['images_per_second']
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
