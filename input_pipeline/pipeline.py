"""Train and eval `tf.data` pipelines from encoded records to batches.

Both pipelines read the encoded image bytes of this process's share of a
split (tfds records, or the files of an image folder: `input_pipeline.folder`),
and decode inside `preprocessing`. Every batch is a dict:

- `image`: float32 [batch, resolution, resolution, 3] in [-1, 1];
- `label`: int32 [batch];
- `mask`: float32 [batch], 1 for an example to score, 0 for padding and for
  images that could not be decoded;
- `corrupt`: float32 [batch], 1 for a real example whose image could not be
  decoded (its image is zeros and its mask 0).
"""

import math

import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import datasets, folder, preprocessing

_AUTOTUNE = tf.data.AUTOTUNE
# The train stream is endless; epochs are numbered up to this bound.
_MAX_EPOCHS = 2**31
# Records preprocessed per call (see `_map_guarded`).
_CHUNK_SIZE = 16


def _read_records(builder, split, process_index, process_count):
  """This process's share of `split` as {'image': bytes, 'label', 'id'}.

  The shares of all processes are disjoint and cover the split; they differ
  in size by at most one. Files are read in their stored order (tfds shuffles
  examples once, when it prepares a dataset), so the stream is the same on
  every run.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(
      f'process_index {process_index} is not in [0, {process_count}).'
    )
  share = tfds.even_splits(split, n=process_count)[process_index]
  count = datasets.num_examples(builder, share)
  if count == 0:
    raise datasets.DatasetError(
      f'Process {process_index} of {process_count} gets no examples of '
      f'{builder.info.name} split {split!r}.'
    )
  records = builder.as_dataset(
    split=share,
    shuffle_files=False,
    decoders={'image': tfds.decode.SkipDecoding()},
    read_config=tfds.ReadConfig(add_tfds_id=True, try_autocache=False),
  )
  records = records.map(
    lambda example: {
      'image': example['image'],
      'label': tf.cast(example['label'], tf.int32),
      'id': example['tfds_id'],
    },
    num_parallel_calls=_AUTOTUNE,
  )
  return records, count


def _split_records(config, split, process_index, process_count):
  """This process's share of `split` of the configured dataset, tfds or an
  image folder, as (records, count); the records are
  {'image': bytes, 'label': int32, 'id': string}."""
  if folder.is_folder(config.dataset):
    return folder.read_records(config, split, process_index, process_count)
  builder = datasets.prepared_builder(config)
  return _read_records(builder, split, process_index, process_count)


def _eval_split(config):
  """(name, number of examples) of the configured dataset's eval split."""
  if folder.is_folder(config.dataset):
    return folder.eval_split(config)
  builder = datasets.prepared_builder(config)
  split = datasets.eval_split_name(config, builder)
  return split, datasets.num_examples(builder, split)


def _preprocess(example, image_fn, resolution):
  """Decodes one record with `image_fn`, or zeros it if the bytes are bad."""
  valid = preprocessing.is_valid_image(example['image'])
  image = tf.cond(
    valid,
    lambda: image_fn(example['image']),
    lambda: tf.zeros([resolution, resolution, 3], tf.float32),
  )
  valid = tf.cast(valid, tf.float32)
  return {
    'image': image,
    'label': example['label'],
    'mask': valid,
    'corrupt': 1.0 - valid,
    'id': example['id'],
  }


def _corrupt_example(example, resolution):
  return {
    'image': tf.zeros([resolution, resolution, 3], tf.float32),
    'label': example['label'],
    'mask': tf.constant(0.0),
    'corrupt': tf.constant(1.0),
    'id': example['id'],
  }


def _map_one_by_one(chunk, preprocess, resolution):
  """Preprocesses each record of `chunk` alone; op errors give placeholders.

  Each record runs in its own one-element dataset whose errors are logged
  and dropped; the corrupt placeholder behind it then fills the gap, so
  exactly one example comes out per record.
  """

  def guarded(example):
    decoded = (
      tf.data.Dataset.from_tensors(example)
      .map(preprocess)
      .ignore_errors(log_warning=True)
    )
    fallback = tf.data.Dataset.from_tensors(example).map(
      lambda example: _corrupt_example(example, resolution)
    )
    return decoded.concatenate(fallback).take(1)

  records = tf.data.Dataset.from_tensor_slices(chunk)
  return records.flat_map(guarded).batch(_CHUNK_SIZE)


def _map_guarded(records, preprocess, resolution):
  """Maps `preprocess` over records; an op error marks that record corrupt.

  The byte check in `_preprocess` catches empty and truncated images before
  any decoder runs. This is the last line of defence for damage it cannot
  see (a broken header, say), which would otherwise end the run. Records go
  in chunks, each mapped in its own small dataset whose errors are dropped;
  only a chunk that comes back short is redone record by record
  (`_map_one_by_one`), which costs a fraction of a millisecond per record and
  so stays off the common path. One example comes out per record either
  way, in order, so stream positions, and with them exact resumption and
  eval counts, never shift.
  """

  # Traced once, then shared by both paths.
  preprocess = tf.function(preprocess, autograph=False)

  def guarded(chunk):
    size = tf.shape(chunk['label'])[0]
    whole = (
      tf.data.Dataset.from_tensor_slices(chunk)
      .map(preprocess)
      .ignore_errors()
      .batch(_CHUNK_SIZE)
      .filter(lambda batch: tf.shape(batch['label'])[0] == size)
    )
    one_by_one = _map_one_by_one(chunk, preprocess, resolution)
    return whole.concatenate(one_by_one).take(1)

  chunks = records.batch(_CHUNK_SIZE).interleave(
    guarded,
    cycle_length=_AUTOTUNE,
    num_parallel_calls=_AUTOTUNE,
    deterministic=True,
  )
  return chunks.unbatch().map(_report_corrupt)


def _report_corrupt(example):
  """Prints the tfds id of each skipped example, then drops the id."""
  tf.cond(
    example['corrupt'] > 0,
    lambda: tf.print(
      'input_pipeline: skipping undecodable image', example['id']
    ),
    tf.no_op,
  )
  return {key: value for key, value in example.items() if key != 'id'}


def _options():
  options = tf.data.Options()
  options.deterministic = True
  return options


def _example_seed(seed, process_index, index):
  """Per-example augmentation seed from (seed, process, example index)."""
  base = tf.constant([seed, process_index], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, index)


def _epoch_shuffle_seed(seed, process_index, epoch):
  """A scalar shuffle seed for one epoch, drawn from (seed, process, epoch)."""
  key = tf.stack([tf.constant(seed, tf.int64), epoch])
  key = tf.random.experimental.stateless_fold_in(key, process_index)
  return tf.random.stateless_uniform(
    [], seed=key, minval=0, maxval=2**62, dtype=tf.int64
  )


def create_train_dataset(
  config,
  *,
  batch_size,
  seed,
  start_example=0,
  process_index=0,
  process_count=1,
):
  """Endless, deterministic and resumable stream of training batches.

  Epoch e of this process is its share of the train split shuffled with a
  seed drawn from (seed, process_index, e); the augmentation of the example
  at stream position i uses a seed drawn from (seed, process_index, i). So
  the stream is a function of its arguments alone, and starting at
  `start_example` yields exactly what an uninterrupted run yields from that
  position on. The records before it are skipped undecoded.

  Args:
    config: ConfigDict; see `input_pipeline.get_dataset_info` plus
      `resolution`, `crop_area_range`, `crop_aspect_ratio_range`,
      `crop_max_attempts`, `eval_crop_fraction`, `random_flip`,
      `shuffle_buffer_size` and `cache_train`.
    batch_size: examples per batch on this process.
    seed: int seed of the shuffle order and the augmentation.
    start_example: examples this process already consumed (step times
      `batch_size` when resuming at `step`).
    process_index: index of this process.
    process_count: number of processes; each reads a disjoint share.

  Returns:
    A `tf.data.Dataset` of batch dicts (see the module docstring).
  """
  if batch_size <= 0 or start_example < 0:
    raise ValueError(
      f'Need batch_size > 0 and start_example >= 0, got {batch_size} and '
      f'{start_example}.'
    )
  records, count = _split_records(
    config, config.train_split, process_index, process_count
  )
  if config.cache_train:
    records = records.cache()

  def epoch(index):
    return records.shuffle(
      config.shuffle_buffer_size,
      seed=_epoch_shuffle_seed(seed, process_index, index),
      reshuffle_each_iteration=False,
    )

  first_epoch, offset = divmod(start_example, count)
  stream = tf.data.Dataset.range(first_epoch, _MAX_EPOCHS).flat_map(epoch)
  positions = tf.data.Dataset.counter(start_example)
  stream = tf.data.Dataset.zip(positions, stream.skip(offset))
  stream = stream.map(
    lambda position, example: {**example, 'position': position}
  )

  def preprocess(example):
    image_fn = lambda encoded: preprocessing.preprocess_for_train(
      encoded,
      _example_seed(seed, process_index, example['position']),
      resolution=config.resolution,
      area_range=tuple(config.crop_area_range),
      aspect_ratio_range=tuple(config.crop_aspect_ratio_range),
      max_attempts=config.crop_max_attempts,
      fallback_fraction=config.eval_crop_fraction,
      random_flip=config.random_flip,
    )
    return _preprocess(example, image_fn, config.resolution)

  stream = _map_guarded(stream, preprocess, config.resolution)
  stream = stream.batch(batch_size, drop_remainder=True)
  return stream.prefetch(_AUTOTUNE).with_options(_options())


def eval_batch_count(num_examples, batch_size, process_count):
  """Batches every process yields so that all N examples fit on each."""
  per_process = math.ceil(num_examples / process_count)
  return math.ceil(per_process / batch_size)


def _padding(resolution):
  return tf.data.Dataset.from_tensors(
    {
      'image': tf.zeros([resolution, resolution, 3], tf.float32),
      'label': tf.constant(0, tf.int32),
      'mask': tf.constant(0.0),
      'corrupt': tf.constant(0.0),
    }
  ).repeat()


def create_eval_dataset(
  config, *, batch_size, process_index=0, process_count=1
):
  """One pass over this process's share of the eval split, padded.

  Every example of the split is on exactly one process, once. Each process
  pads its share with mask-0 examples to the same number of full batches,
  because every process must run the same number of eval steps.

  Args:
    config: ConfigDict; see `input_pipeline.get_dataset_info` plus
      `resolution`, `eval_crop_fraction` and `cache_eval`.
    batch_size: examples per batch on this process.
    process_index: index of this process.
    process_count: number of processes.

  Returns:
    (dataset, num_batches): a finite `tf.data.Dataset` of batch dicts (see
    the module docstring) with exactly `num_batches` batches, the same on
    every process.
  """
  if batch_size <= 0:
    raise ValueError(f'Need batch_size > 0, got {batch_size}.')
  split, split_size = _eval_split(config)
  records, _ = _split_records(config, split, process_index, process_count)
  if config.cache_eval:
    records = records.cache()
  num_batches = eval_batch_count(split_size, batch_size, process_count)

  def preprocess(example):
    image_fn = lambda encoded: preprocessing.preprocess_for_eval(
      encoded,
      resolution=config.resolution,
      crop_fraction=config.eval_crop_fraction,
    )
    return _preprocess(example, image_fn, config.resolution)

  examples = _map_guarded(records, preprocess, config.resolution)
  examples = examples.concatenate(_padding(config.resolution))
  examples = examples.take(num_batches * batch_size)
  batches = examples.batch(batch_size, drop_remainder=True)
  return batches.prefetch(_AUTOTUNE).with_options(_options()), num_batches
