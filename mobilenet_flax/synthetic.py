"""Random batches with ImageNet's shapes, for speed runs without data.

`config.dataset = 'synthetic'` routes the training loop here instead of to
`input_pipeline`, so it needs neither TensorFlow nor a prepared dataset. It
mirrors the input pipeline's interface and batch format (image, label, mask,
corrupt). What it measures is the model and the train step alone.
"""

import itertools
import math
from collections.abc import Iterator

import ml_collections
import numpy as np

from mobilenet_flax.dataset_info import DatasetInfo

NAME = 'synthetic'
NUM_CLASSES = 1000
# ImageNet's split sizes, so epochs and schedules mean what they do there.
NUM_TRAIN_EXAMPLES = 1_281_167
NUM_EVAL_EXAMPLES = 50_000


def get_dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  del config
  return DatasetInfo(
    name=NAME,
    num_classes=NUM_CLASSES,
    train_split='train',
    eval_split='validation',
    num_train_examples=NUM_TRAIN_EXAMPLES,
    num_eval_examples=NUM_EVAL_EXAMPLES,
  )


def random_batch(
  batch_size: int,
  resolution: int,
  num_classes: int = NUM_CLASSES,
  seed: int = 0,
) -> dict:
  """One batch in the input pipeline's format: images uniform in [-1, 1],
  random labels, every example real (mask 1) and intact (corrupt 0)."""
  rng = np.random.default_rng(seed)
  return {
    'image': rng.uniform(-1, 1, (batch_size, resolution, resolution, 3)).astype(
      np.float32
    ),
    'label': rng.integers(0, num_classes, batch_size).astype(np.int32),
    'mask': np.ones(batch_size, np.float32),
    'corrupt': np.zeros(batch_size, np.float32),
  }


def create_train_dataset(
  config: ml_collections.ConfigDict,
  *,
  batch_size: int,
  seed: int,
  start_example: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict]:
  """The same random batch forever (generating more would time numpy)."""
  del start_example, process_count
  return itertools.repeat(
    random_batch(batch_size, config.resolution, seed=seed + process_index)
  )


def create_eval_dataset(
  config: ml_collections.ConfigDict,
  *,
  batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
) -> tuple[list[dict], int]:
  """A pass over an eval split of NUM_EVAL_EXAMPLES random examples."""
  num_batches = math.ceil(
    math.ceil(NUM_EVAL_EXAMPLES / process_count) / batch_size
  )
  batch = random_batch(batch_size, config.resolution, seed=1 + process_index)
  return [batch] * num_batches, num_batches
