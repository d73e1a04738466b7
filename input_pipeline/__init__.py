"""Input pipelines for MobileNet training: tfds + tf.data, no JAX.

TensorFlow only feeds data here, so importing this package hides every GPU
from it: the accelerators stay free for JAX.

Public API: `DatasetInfo`, `DatasetError`, `get_dataset_info`,
`create_train_dataset`, `create_eval_dataset`.
"""

import logging

import tensorflow as tf

from input_pipeline.datasets import DatasetError, DatasetInfo, get_dataset_info
from input_pipeline.pipeline import (
  create_eval_dataset,
  create_train_dataset,
)

__all__ = [
  'DatasetError',
  'DatasetInfo',
  'create_eval_dataset',
  'create_train_dataset',
  'get_dataset_info',
]


def _hide_gpus_from_tensorflow():
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    # TF ran an op before this import, so the setting can no longer change;
    # say so, since TF may now hold GPU memory that JAX needs.
    logging.warning(
      'input_pipeline: TensorFlow was initialised before import; '
      'could not hide GPUs from it.'
    )


# None of the imports above runs a TF op, so TF has not claimed devices yet.
_hide_gpus_from_tensorflow()
