"""Images per second of the training input pipeline on ImageNet-like JPEGs.

Builds a small tfds dataset of synthetic JPEGs in a temporary directory:
500x375 or 375x500, random blocks and rectangles plus noise, quality 90,
about 112 KB each (ImageNet's train JPEGs average about 115 KB: 147 GB over
1.28 M images). Then times `input_pipeline.create_train_dataset` after a
warm-up and prints one JSON line. The dataset is cached in memory,
so the number is decode + crop + resize + flip + batching, not disk reads.
Other processes on the same cores lower `images_per_second`;
`images_per_cpu_second` and `load_average` (before the run) show how much.

  python benchmarks/input_pipeline.py                # all cores
  python benchmarks/input_pipeline.py --threads=1    # one core
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

# Run from a checkout without installing the package.


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--resolution', type=int, default=224)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--images', type=int, default=300)
  parser.add_argument(
    '--threads',
    type=int,
    default=0,
    help='CPU cores the process may use (0: all it is allowed now).',
  )
  parser.add_argument('--warmup_batches', type=int, default=5)
  parser.add_argument('--batches', type=int, default=40)
  parser.add_argument('--seed', type=int, default=0)
  return parser.parse_args(argv)


def limit_threads(threads):
  """Pins the process to `threads` cores; must run before TF starts."""
  cores = sorted(os.sched_getaffinity(0))
  if threads:
    cores = cores[:threads]
    os.sched_setaffinity(0, cores)
  return len(cores)


def synthetic_photo(rng):
  """A uint8 image whose JPEG size and content resemble a photograph."""
  import numpy as np

  height, width = (375, 500) if rng.random() < 0.7 else (500, 375)
  # Colour blocks and rectangles give edges; the noise gives the fine detail
  # that makes a photograph's JPEG as large as it is.
  coarse = rng.uniform(0, 255, (height // 25 + 1, width // 25 + 1, 3))
  image = np.kron(coarse, np.ones((25, 25, 1)))[:height, :width]
  for _ in range(8):
    y, x = rng.integers(0, height - 20), rng.integers(0, width - 20)
    h, w = rng.integers(10, height - y), rng.integers(10, width - x)
    image[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
  image += rng.normal(0, 24, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def build_dataset(data_dir, num_images, seed):
  """Writes `num_images` JPEGs as a tfds dataset; returns its name."""
  import numpy as np
  import tensorflow as tf
  import tensorflow_datasets as tfds

  class InputPipelineBenchmarkJpegs(tfds.core.GeneratorBasedBuilder):
    """Synthetic ImageNet-sized JPEGs."""

    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      # `dataset_info_from_configs` looks for metadata files next to the
      # builder's module, which a script run as __main__ does not have.
      return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
          {
            'image': tfds.features.Image(encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=1000),
          }
        ),
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      rng = np.random.default_rng(seed)
      for index in range(num_images):
        encoded = tf.io.encode_jpeg(synthetic_photo(rng), quality=90)
        yield index, {'image': encoded.numpy(), 'label': index % 1000}

  builder = InputPipelineBenchmarkJpegs(data_dir=data_dir)
  builder.download_and_prepare()
  return builder.name


def make_config(name, data_dir, resolution, num_images):
  import ml_collections

  return ml_collections.ConfigDict(
    {
      'dataset': name,
      'data_dir': data_dir,
      'train_split': 'train',
      'eval_split': None,
      'resolution': resolution,
      'crop_area_range': (0.05, 1.0),
      'crop_aspect_ratio_range': (3 / 4, 4 / 3),
      'crop_max_attempts': 100,
      'eval_crop_fraction': 0.875,
      'random_flip': True,
      'shuffle_buffer_size': num_images,
      'cache_train': True,
      'cache_eval': False,
      'download_data': False,
    }
  )


def mean_jpeg_bytes(config):
  import tensorflow_datasets as tfds

  builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  records = builder.as_dataset(
    split='train', decoders={'image': tfds.decode.SkipDecoding()}
  )
  sizes = [len(example['image']) for example in records.as_numpy_iterator()]
  return statistics.mean(sizes)


def cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def time_pipeline(config, args, cores):
  """Wall and CPU seconds of `args.batches` batches after the warm-up."""
  import tensorflow as tf

  import input_pipeline

  dataset = input_pipeline.create_train_dataset(
    config, batch_size=args.batch, seed=args.seed
  )
  options = tf.data.Options()
  options.threading.private_threadpool_size = cores
  iterator = iter(dataset.with_options(options))
  for _ in range(args.warmup_batches):
    next(iterator)
  start, start_cpu = time.perf_counter(), cpu_seconds()
  for _ in range(args.batches):
    next(iterator)
  return time.perf_counter() - start, cpu_seconds() - start_cpu


def main(argv):
  args = parse_args(argv)
  cores = limit_threads(args.threads)
  import tensorflow as tf

  tf.config.threading.set_inter_op_parallelism_threads(cores)
  tf.config.threading.set_intra_op_parallelism_threads(cores)
  tf.get_logger().setLevel('ERROR')
  load = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as data_dir:
    name = build_dataset(data_dir, args.images, args.seed)
    config = make_config(name, data_dir, args.resolution, args.images)
    seconds, cpu = time_pipeline(config, args, cores)
    images = args.batch * args.batches
    result = {
      'benchmark': 'input_pipeline',
      'resolution': args.resolution,
      'images_per_second': round(images / seconds, 1),
      'threads': cores,
      # Less sensitive than the wall clock to other processes on the cores.
      'images_per_cpu_second': round(images / cpu, 1),
      'load_average': round(load, 2),
      'batch': args.batch,
      'batches_timed': args.batches,
      'warmup_batches': args.warmup_batches,
      'distinct_images': args.images,
      'mean_jpeg_bytes': round(mean_jpeg_bytes(config)),
      'seconds': round(seconds, 3),
      'tensorflow': tf.__version__,
    }
  print(json.dumps(result))


if __name__ == '__main__':
  main(sys.argv[1:])
