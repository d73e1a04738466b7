"""Finding, preparing and describing the dataset named by a config: a tfds
dataset, or an image folder (`folder:PATH`, see `input_pipeline.folder`)."""

import contextlib
import io
import os
import time

import tensorflow_datasets as tfds
from absl import logging

from input_pipeline import digits
from mobilenet_flax import class_names, errors
from mobilenet_flax.dataset_info import DatasetInfo

IMAGENET = 'imagenet2012'
# `config.dataset = 'folder:PATH'` reads an image folder.
FOLDER_PREFIX = 'folder:'


class DatasetError(errors.Error, ValueError):
  """The configured dataset cannot be found, prepared or read."""


def _data_dir_for_messages(config):
  return (
    config.data_dir
    or os.environ.get('TFDS_DATA_DIR')
    or '~/tensorflow_datasets'
  )


def _imagenet_instructions(config):
  data_dir = _data_dir_for_messages(config)
  return (
    f'imagenet2012 is not prepared in {data_dir}. ImageNet cannot be '
    'downloaded automatically. To prepare it (a few hours; about 145 GB of '
    'tar files plus 155 GB of prepared records):\n'
    '  1. Register at https://image-net.org/download-images and download '
    'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar.\n'
    f'  2. Put both files in {data_dir}/downloads/manual/\n'
    f'  3. Run: tfds build imagenet2012 --data_dir={data_dir}\n'
    '     or in Python: tfds.builder("imagenet2012", '
    f'data_dir="{data_dir}").download_and_prepare()\n'
    '  4. Point training at it with config.data_dir or the TFDS_DATA_DIR '
    'environment variable.'
  )


def _load_builder(config):
  try:
    return tfds.builder(config.dataset, data_dir=config.data_dir)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DatasetError(
      f'Unknown tfds dataset {config.dataset!r}. Names are listed by '
      '`tfds.list_builders()` and at '
      'https://www.tensorflow.org/datasets/catalog/overview; the offline '
      f'quickstart dataset is {digits.NAME!r}.'
    ) from error


def _prepare(builder, config):
  """Prepares `builder` where that is allowed, else explains how to."""
  name = builder.info.name
  data_dir = _data_dir_for_messages(config)
  if name == IMAGENET:
    raise DatasetError(_imagenet_instructions(config))
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    raise DatasetError(
      f'{name} is not prepared in {data_dir} and needs a manual download:\n'
      f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}\nPut the files in '
      f'{data_dir}/downloads/manual/ and run: tfds build {name} '
      f'--data_dir={data_dir}'
    )
  # The quickstart dataset is built from scikit-learn, with no download.
  if name != digits.NAME and not config.download_data:
    raise DatasetError(
      f'{name} is not prepared in {data_dir}. Set config.download_data=True '
      f'to download it, or run: tfds build {name} --data_dir={data_dir}'
    )
  try:
    if name == digits.NAME:
      _prepare_quietly(builder)
    else:
      builder.download_and_prepare()
  except Exception as error:
    raise DatasetError(
      f'Downloading and preparing {name} into {data_dir} failed: {error}\n'
      'Check the network connection, or prepare it on a machine with one '
      f'(tfds build {name} --data_dir=DIR) and copy DIR/{name} over.'
    ) from error


def _prepare_quietly(builder):
  """Builds the small offline dataset with one log line in place of
  tfds' progress bars and banner (it takes about a second)."""
  start = time.time()
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare()
  finally:
    tfds.display_progress_bar(True)
  logging.info(
    'Built the %s dataset in %s (first use) in %.1f s.',
    builder.info.name,
    builder.data_dir,
    time.time() - start,
  )


def prepared_builder(config):
  """The tfds builder for `config.dataset`, prepared in `config.data_dir`.

  Raises:
    DatasetError: the name is unknown, or the dataset is not prepared and
      cannot be prepared here.
  """
  builder = _load_builder(config)
  if not builder.is_prepared():
    _prepare(builder, config)
  features = builder.info.features
  if not (
    isinstance(dict(features).get('image'), tfds.features.Image)
    and isinstance(dict(features).get('label'), tfds.features.ClassLabel)
  ):
    raise DatasetError(
      f'{config.dataset} has no `image` Image and `label` ClassLabel '
      f'features; it has {features}.'
    )
  return builder


def eval_split_name(config, builder):
  """`config.eval_split`, or `validation` if there is one, else `test`."""
  if config.eval_split:
    return config.eval_split
  return 'validation' if 'validation' in builder.info.splits else 'test'


def num_examples(builder, split):
  """Examples in `split`, which may be a sub-split such as 'train[:10%]'."""
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError) as error:
    raise DatasetError(
      f'{builder.info.name} has no split {split!r}; it has '
      f'{list(builder.info.splits)}.'
    ) from error


def get_dataset_info(config):
  """Class count and split sizes of the configured dataset.

  Prepares the dataset first where allowed (always for `digits`, for other
  downloadable datasets when `config.download_data` is set).

  Args:
    config: ConfigDict with `dataset`, `data_dir`, `train_split`,
      `eval_split` and `download_data`.

  Returns:
    A `DatasetInfo`.

  Raises:
    DatasetError: see `prepared_builder` (or `folder.load` for image
      folders); or a split does not exist.
  """
  if config.dataset.startswith(FOLDER_PREFIX):
    # Deferred: `folder` imports this module for DatasetError.
    from input_pipeline import folder

    return folder.get_dataset_info(config)
  builder = prepared_builder(config)
  eval_split = eval_split_name(config, builder)
  label = builder.info.features['label']
  return DatasetInfo(
    name=builder.info.name,
    num_classes=label.num_classes,
    train_split=config.train_split,
    eval_split=eval_split,
    num_train_examples=num_examples(builder, config.train_split),
    num_eval_examples=num_examples(builder, eval_split),
    class_names=readable_class_names(label.names),
  )


def readable_class_names(names):
  """A dataset's label names, with ImageNet WordNet ids (`n01440764`, as
  tfds `imagenet2012` and `imagenette` name their labels) replaced by
  their readable names (`tench`)."""
  readable = dict(
    zip(class_names.imagenet_wnids(), class_names.imagenet_names(), strict=True)
  )
  return tuple(readable.get(name, name) for name in names)
