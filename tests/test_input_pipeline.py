"""Tests of input_pipeline on small generated datasets, offline.

`pipeline_test_jpegs` below is a tiny tfds dataset of random-size JPEGs whose
label is the example's index, so a label identifies an example even after
augmentation. Its `corrupt` config damages three validation images.
"""

import math
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import input_pipeline
from input_pipeline import digits, pipeline, preprocessing

TESTDATA = os.path.join(os.path.dirname(__file__), 'testdata')
NUM_TRAIN = 37
NUM_VALIDATION = 23
# Validation examples the `corrupt` config damages, and how.
TRUNCATED, EMPTY, BROKEN_HEADER = 4, 11, 17


def make_config(**overrides):
  """A ConfigDict with every field the input pipeline reads."""
  config = ml_collections.ConfigDict(
    {
      'dataset': 'pipeline_test_jpegs/clean',
      'data_dir': None,
      'train_split': 'train',
      'eval_split': None,
      'resolution': 32,
      'crop_area_range': (0.05, 1.0),
      'crop_aspect_ratio_range': (3 / 4, 4 / 3),
      'crop_max_attempts': 100,
      'eval_crop_fraction': 0.875,
      'random_flip': True,
      'shuffle_buffer_size': 16,
      'cache_train': False,
      'cache_eval': False,
      'download_data': False,
    }
  )
  config.update(overrides)
  return config


def random_photo(rng):
  height, width = rng.integers(40, 90, size=2)
  coarse = rng.uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3))
  image = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
  image += rng.normal(0, 10, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def damage(index, encoded):
  if index == TRUNCATED:
    return encoded[: len(encoded) // 2]
  if index == EMPTY:
    return b''
  if index == BROKEN_HEADER:
    # Right start and end markers, nothing a decoder can parse between.
    return encoded[:3] + bytes(64) + encoded[-2:]
  return encoded


class PipelineTestJpegs(tfds.core.GeneratorBasedBuilder):
  """Random-size JPEGs (one PNG, one grayscale); label = example index."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(name='clean'),
    tfds.core.BuilderConfig(name='corrupt'),
  ]

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(encoding_format='jpeg'),
          'label': tfds.features.ClassLabel(num_classes=100),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    damaged = self.builder_config.name == 'corrupt'
    return {
      'train': self._generate_examples(NUM_TRAIN, seed=1, damaged=False),
      'validation': self._generate_examples(NUM_VALIDATION, 2, damaged),
    }

  def _generate_examples(self, count, seed, damaged):
    rng = np.random.default_rng(seed)
    for index in range(count):
      image = random_photo(rng)
      if index == 1:
        encoded = tf.io.encode_png(image).numpy()
      elif index == 2:
        encoded = tf.io.encode_jpeg(image[:, :, :1]).numpy()
      else:
        encoded = tf.io.encode_jpeg(image, quality=90).numpy()
      if damaged:
        encoded = damage(index, encoded)
      yield index, {'image': encoded, 'label': index}


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('tfds'))
  for name in ('clean', 'corrupt'):
    tfds.builder(
      f'pipeline_test_jpegs/{name}', data_dir=path
    ).download_and_prepare()
  return path


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('digits'))


def take(dataset, count):
  return list(dataset.take(count).as_numpy_iterator())


def assert_batches_equal(actual, expected):
  assert len(actual) == len(expected)
  for got, want in zip(actual, expected, strict=True):
    assert got.keys() == want.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# Batches: shapes, dtypes and value ranges.


def check_batch(batch, batch_size, resolution):
  assert batch['image'].shape == (batch_size, resolution, resolution, 3)
  assert batch['image'].dtype == np.float32
  assert batch['label'].shape == batch['mask'].shape == (batch_size,)
  assert batch['label'].dtype == np.int32
  assert batch['mask'].dtype == batch['corrupt'].dtype == np.float32
  assert -1.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  # Real images, not padding: a wide range of values.
  assert batch['image'].max() - batch['image'].min() > 1.0


@pytest.mark.parametrize('resolution', [32, 56])
def test_train_batches(data_dir, resolution):
  config = make_config(data_dir=data_dir, resolution=resolution)
  dataset = input_pipeline.create_train_dataset(config, batch_size=8, seed=0)
  for batch in take(dataset, 6):  # 48 examples: past the first epoch.
    check_batch(batch, 8, resolution)
    np.testing.assert_array_equal(batch['mask'], 1.0)
    np.testing.assert_array_equal(batch['corrupt'], 0.0)


@pytest.mark.parametrize('resolution', [32, 56])
def test_eval_batches(data_dir, resolution):
  config = make_config(data_dir=data_dir, resolution=resolution)
  dataset, num_batches = input_pipeline.create_eval_dataset(
    config, batch_size=8
  )
  batches = take(dataset, num_batches + 1)
  assert len(batches) == num_batches == 3
  for batch in batches[:-1]:
    check_batch(batch, 8, resolution)
  # Labels are indices: every example once, then padding.
  labels = np.concatenate([batch['label'] for batch in batches])
  assert sorted(labels[:NUM_VALIDATION]) == list(range(NUM_VALIDATION))


def test_eval_crop_is_central_and_unflipped(data_dir):
  config = make_config(data_dir=data_dir, resolution=40)
  dataset, _ = input_pipeline.create_eval_dataset(config, batch_size=1)
  images = {
    int(batch['label'][0]): batch['image'][0]
    for batch in dataset.as_numpy_iterator()
  }
  builder = tfds.builder(config.dataset, data_dir=data_dir)
  stored = builder.as_dataset(
    split='validation', decoders={'image': tfds.decode.SkipDecoding()}
  )
  for example in stored.as_numpy_iterator():
    full = tf.io.decode_image(example['image'], channels=3)
    crop = tf.image.central_crop(full, 0.875)
    expected = tf.image.resize(crop, [40, 40]) / 127.5 - 1
    error = np.abs(images[example['label']] - expected)
    if example['label'] == 1:  # The PNG: decoded, then sliced.
      assert error.max() < 1e-5
    else:
      # The fused JPEG crop upsamples chroma at the crop's edge from the
      # edge itself, so pixels there differ slightly from a full decode.
      assert error.mean() < 0.01


# Eval counts every example exactly once.


def eval_examples(config, batch_size, process_index=0, process_count=1):
  dataset, num_batches = input_pipeline.create_eval_dataset(
    config,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )
  batches = list(dataset.as_numpy_iterator())
  assert len(batches) == num_batches
  keys = ('image', 'label', 'mask', 'corrupt')
  return num_batches, {
    key: np.concatenate([b[key] for b in batches]) for key in keys
  }


def test_eval_counts_every_example_once(data_dir):
  config = make_config(data_dir=data_dir)
  num_batches, examples = eval_examples(config, batch_size=5)
  assert num_batches == math.ceil(NUM_VALIDATION / 5)
  assert examples['mask'].sum() == NUM_VALIDATION
  # Padding comes last and is all zeros.
  np.testing.assert_array_equal(examples['mask'][NUM_VALIDATION:], 0.0)
  np.testing.assert_array_equal(examples['image'][NUM_VALIDATION:], 0.0)


def test_eval_over_processes_counts_every_example_once(data_dir):
  config = make_config(data_dir=data_dir)
  _, single = eval_examples(config, batch_size=5)
  counts, labels, images = [], [], []
  for index in range(3):
    num_batches, examples = eval_examples(config, 5, index, process_count=3)
    counts.append(num_batches)
    real = examples['mask'] == 1
    labels.append(examples['label'][real])
    images.append(examples['image'][real])
  # ceil(ceil(23 / 3) / 5) = 2 batches on every process.
  assert counts == [2, 2, 2]
  labels = np.concatenate(labels)
  assert sorted(labels) == list(range(NUM_VALIDATION))
  # The same examples as one process, preprocessed the same way.
  by_label = lambda images, labels: images[np.argsort(labels)]
  np.testing.assert_array_equal(
    by_label(np.concatenate(images), labels),
    by_label(
      single['image'][:NUM_VALIDATION], single['label'][:NUM_VALIDATION]
    ),
  )


def test_eval_batch_count():
  assert pipeline.eval_batch_count(50_000, 256, 1) == 196
  assert pipeline.eval_batch_count(50_000, 128, 3) == 131
  assert pipeline.eval_batch_count(10, 5, 2) == 1


# Train: per-process shares, determinism and exact resumption.


def test_train_shares_are_disjoint_and_cover_the_split(data_dir):
  config = make_config(data_dir=data_dir)
  shares = []
  for index in range(3):
    dataset = input_pipeline.create_train_dataset(
      config, batch_size=1, seed=0, process_index=index, process_count=3
    )
    # One epoch of this process: 13, 12 and 12 examples.
    epoch = take(dataset, 13 if index == 0 else 12)
    shares.append({int(batch['label'][0]) for batch in epoch})
  assert [len(share) for share in shares] == [13, 12, 12]
  assert not shares[0] & shares[1] and not shares[1] & shares[2]
  assert not shares[0] & shares[2]
  assert set().union(*shares) == set(range(NUM_TRAIN))


def test_every_epoch_is_a_permutation(data_dir):
  config = make_config(data_dir=data_dir)
  dataset = input_pipeline.create_train_dataset(config, batch_size=1, seed=3)
  labels = [int(batch['label'][0]) for batch in take(dataset, 3 * NUM_TRAIN)]
  epochs = [labels[i : i + NUM_TRAIN] for i in range(0, len(labels), NUM_TRAIN)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(NUM_TRAIN))
  # Each epoch has its own order.
  assert epochs[0] != epochs[1] != epochs[2]


def test_same_seed_same_batches_other_seed_other_batches(data_dir):
  config = make_config(data_dir=data_dir)
  create = lambda seed: take(
    input_pipeline.create_train_dataset(config, batch_size=4, seed=seed), 3
  )
  first = create(seed=7)
  assert_batches_equal(create(seed=7), first)
  other = create(seed=8)
  assert not np.array_equal(other[0]['label'], first[0]['label'])
  assert not np.allclose(other[0]['image'], first[0]['image'])


@pytest.mark.parametrize('cache_train', [False, True])
def test_resume_yields_the_uninterrupted_stream(data_dir, cache_train):
  config = make_config(data_dir=data_dir, cache_train=cache_train)
  batch_size = 4
  create = lambda start: input_pipeline.create_train_dataset(
    config, batch_size=batch_size, seed=5, start_example=start
  )
  stream = take(create(0), 22)  # 88 examples: two epoch boundaries.
  # Step 9 straddles the first epoch boundary (example 37), step 10 starts
  # inside the second epoch, step 19 straddles the second boundary.
  for step in (9, 10, 19):
    resumed = take(create(step * batch_size), 22 - step)
    assert_batches_equal(resumed, stream[step:])


def test_resume_with_several_processes(data_dir):
  config = make_config(data_dir=data_dir)
  create = lambda start: input_pipeline.create_train_dataset(
    config,
    batch_size=3,
    seed=2,
    start_example=start,
    process_index=1,
    process_count=2,
  )
  stream = take(create(0), 10)
  assert_batches_equal(take(create(18), 4), stream[6:])


# Preprocessing functions.


def encoded_photo(seed=0, encode=tf.io.encode_jpeg):
  return encode(random_photo(np.random.default_rng(seed)))


def test_preprocessing_same_eagerly_and_in_tf_data():
  images = [encoded_photo(i) for i in range(4)]
  images.append(encoded_photo(4, tf.io.encode_png))
  seeds = tf.constant([[i, 9] for i in range(len(images))], tf.int64)
  train = lambda encoded, seed: preprocessing.preprocess_for_train(
    encoded, seed, resolution=24
  )
  evaluate = lambda encoded: preprocessing.preprocess_for_eval(
    encoded, resolution=24
  )
  records = tf.data.Dataset.from_tensor_slices((images, seeds))
  graph_train = list(records.map(train).as_numpy_iterator())
  graph_eval = list(
    records.map(lambda encoded, seed: evaluate(encoded)).as_numpy_iterator()
  )
  for index, (encoded, seed) in enumerate(zip(images, seeds, strict=True)):
    np.testing.assert_allclose(
      train(encoded, seed), graph_train[index], atol=1e-6
    )
    np.testing.assert_allclose(evaluate(encoded), graph_eval[index], atol=1e-6)


def test_random_crop_depends_on_seed_only():
  encoded = encoded_photo(0)
  crop = lambda seed: preprocessing.preprocess_for_train(
    encoded, tf.constant(seed, tf.int64), resolution=16, random_flip=False
  )
  np.testing.assert_array_equal(crop([1, 2]), crop([1, 2]))
  assert not np.allclose(crop([1, 2]), crop([1, 3]))


def test_impossible_crop_falls_back_to_central_crop():
  encoded = encoded_photo(0)
  # No crop of 99%+ of the area has an aspect ratio of 3 or more.
  image = preprocessing.preprocess_for_train(
    encoded,
    tf.constant([0, 0], tf.int64),
    resolution=16,
    area_range=(0.99, 1.0),
    aspect_ratio_range=(3.0, 4.0),
    random_flip=False,
  )
  central = preprocessing.preprocess_for_eval(encoded, resolution=16)
  np.testing.assert_array_equal(image, central)


def test_byte_check():
  jpeg = encoded_photo(0).numpy()
  png = encoded_photo(0, tf.io.encode_png).numpy()
  valid = lambda data: bool(preprocessing.is_valid_image(tf.constant(data)))
  assert valid(jpeg) and valid(png)
  assert valid(jpeg + bytes(100))  # Padding after the end marker is fine.
  assert not valid(b'')
  assert not valid(jpeg[: len(jpeg) // 2])
  assert not valid(png[: len(png) - 20])
  assert not valid(jpeg[:2])
  assert not valid(b'not an image at all')


# Corrupt images are masked and counted.


def test_corrupt_images_are_masked_and_counted_in_eval(data_dir, capfd):
  config = make_config(data_dir=data_dir, dataset='pipeline_test_jpegs/corrupt')
  _, examples = eval_examples(config, batch_size=5)
  damaged = [TRUNCATED, EMPTY, BROKEN_HEADER]
  real = slice(0, NUM_VALIDATION)
  corrupt = examples['corrupt'] == 1
  assert sorted(examples['label'][corrupt]) == damaged
  assert examples['mask'].sum() == NUM_VALIDATION - len(damaged)
  assert (examples['mask'] + examples['corrupt'])[real].sum() == NUM_VALIDATION
  np.testing.assert_array_equal(examples['image'][corrupt], 0.0)
  # Each skip names the example.
  printed = capfd.readouterr().err
  assert printed.count('skipping undecodable image') == len(damaged)
  assert printed.count('"pipeline_test_jpegs-validation.tfrecord') == 3


def test_corrupt_images_are_masked_in_train(data_dir):
  config = make_config(
    data_dir=data_dir,
    dataset='pipeline_test_jpegs/corrupt',
    train_split='validation',
  )
  dataset = input_pipeline.create_train_dataset(config, batch_size=1, seed=0)
  epoch = take(dataset, NUM_VALIDATION)
  corrupt = {int(b['label'][0]) for b in epoch if b['corrupt'][0] == 1}
  assert corrupt == {TRUNCATED, EMPTY, BROKEN_HEADER}
  for batch in epoch:
    assert batch['mask'][0] + batch['corrupt'][0] == 1.0


# Datasets: info, imagenet2012 metadata, digits and errors.


def test_dataset_info(data_dir):
  info = input_pipeline.get_dataset_info(make_config(data_dir=data_dir))
  assert info == input_pipeline.DatasetInfo(
    name='pipeline_test_jpegs',
    num_classes=100,
    train_split='train',
    eval_split='validation',
    num_train_examples=NUM_TRAIN,
    num_eval_examples=NUM_VALIDATION,
  )


def test_imagenet2012_through_mock_data():
  config = make_config(dataset='imagenet2012', resolution=48)
  with tfds.testing.mock_data(
    num_examples=6,
    data_dir=TESTDATA,
    policy=tfds.testing.MockPolicy.USE_FILES,
  ):
    info = input_pipeline.get_dataset_info(config)
    assert info.num_train_examples == 1_281_167
    assert info.num_eval_examples == 50_000
    assert info.num_classes == 1000
    assert info.eval_split == 'validation'
    train = input_pipeline.create_train_dataset(config, batch_size=4, seed=0)
    batch = next(train.as_numpy_iterator())
    eval_dataset, num_batches = input_pipeline.create_eval_dataset(
      config, batch_size=200, process_index=1, process_count=2
    )
    eval_batch = next(eval_dataset.as_numpy_iterator())
  check_batch(batch, 4, 48)
  assert 0 <= batch['label'].min() and batch['label'].max() < 1000
  np.testing.assert_array_equal(batch['mask'], 1.0)
  assert num_batches == 125  # 25,000 images per process, 200 a batch.
  np.testing.assert_array_equal(eval_batch['mask'][:6], 1.0)
  np.testing.assert_array_equal(eval_batch['mask'][6:], 0.0)


def test_digits_builds_offline(digits_dir):
  config = make_config(dataset='digits', data_dir=digits_dir)
  info = input_pipeline.get_dataset_info(config)
  assert info == input_pipeline.DatasetInfo(
    name='digits',
    num_classes=10,
    train_split='train',
    eval_split='test',
    num_train_examples=1437,
    num_eval_examples=360,
  )
  assert (digits.NUM_TRAIN_EXAMPLES, digits.NUM_TEST_EXAMPLES) == (1437, 360)
  builder = tfds.builder('digits', data_dir=digits_dir)
  labels = [
    int(label)
    for _, label in builder.as_dataset(
      split='test', as_supervised=True
    ).as_numpy_iterator()
  ]
  assert np.bincount(labels).min() >= 35  # Stratified: every class present.
  image = next(builder.as_dataset(split='train').as_numpy_iterator())['image']
  assert image.shape == (64, 64, 3) and image.dtype == np.uint8
  # Nearest-neighbour upscaling: constant 8x8 blocks, equal channels.
  blocks = image[:, :, 0].reshape(8, 8, 8, 8)
  assert (blocks == blocks[:, :1, :, :1]).all()
  assert (image == image[:, :, :1]).all()


def test_digits_batches(digits_dir):
  config = make_config(dataset='digits', data_dir=digits_dir, resolution=32)
  train = input_pipeline.create_train_dataset(config, batch_size=16, seed=0)
  check_batch(next(train.as_numpy_iterator()), 16, 32)
  dataset, num_batches = input_pipeline.create_eval_dataset(
    config, batch_size=64
  )
  masks = [batch['mask'].sum() for batch in dataset.as_numpy_iterator()]
  assert num_batches == len(masks) == 6 and sum(masks) == 360


def test_unknown_dataset():
  with pytest.raises(input_pipeline.DatasetError, match='list_builders'):
    input_pipeline.get_dataset_info(make_config(dataset='no_such_dataset'))


def test_imagenet2012_not_prepared(tmp_path):
  config = make_config(dataset='imagenet2012', data_dir=str(tmp_path))
  with pytest.raises(input_pipeline.DatasetError) as error:
    input_pipeline.create_train_dataset(config, batch_size=4, seed=0)
  message = str(error.value)
  for needed in (
    'ILSVRC2012_img_train.tar',
    'ILSVRC2012_img_val.tar',
    f'{tmp_path}/downloads/manual/',
    f'tfds build imagenet2012 --data_dir={tmp_path}',
    'TFDS_DATA_DIR',
    'config.data_dir',
  ):
    assert needed in message


def test_downloadable_dataset_not_prepared(tmp_path):
  config = make_config(dataset='mnist', data_dir=str(tmp_path))
  with pytest.raises(input_pipeline.DatasetError, match='download_data=True'):
    input_pipeline.get_dataset_info(config)


def test_failed_download(tmp_path, monkeypatch):
  def no_network(self, *args, **kwargs):
    raise ConnectionError('no route to host')

  monkeypatch.setattr(
    tfds.core.DatasetBuilder, 'download_and_prepare', no_network
  )
  config = make_config(
    dataset='mnist', data_dir=str(tmp_path), download_data=True
  )
  with pytest.raises(input_pipeline.DatasetError, match='no route to host'):
    input_pipeline.get_dataset_info(config)


def test_missing_split(data_dir):
  config = make_config(data_dir=data_dir, eval_split='test')
  with pytest.raises(input_pipeline.DatasetError, match='no split'):
    input_pipeline.get_dataset_info(config)


def test_import_hides_gpus_from_tensorflow(monkeypatch):
  calls = []
  monkeypatch.setattr(
    tf.config, 'set_visible_devices', lambda *args: calls.append(args)
  )
  input_pipeline._hide_gpus_from_tensorflow()
  assert calls == [([], 'GPU')]
  assert not tf.config.get_visible_devices('GPU')
