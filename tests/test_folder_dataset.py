"""Image-folder datasets (`dataset='folder:PATH'`) on small generated folders.

Pixels come from scikit-learn's digits (upscaled) and random blocks; files
are written with Pillow in the formats users have: RGB, greyscale and CMYK
JPEGs, RGB, greyscale and RGBA PNGs.
"""

import io
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import input_pipeline
from input_pipeline import datasets, folder
from mobilenet_flax import class_names


def make_config(path, **overrides):
  config = ml_collections.ConfigDict(
    {
      'dataset': f'folder:{path}',
      'data_dir': None,
      'train_split': 'train',
      'eval_split': None,
      'resolution': 32,
      'crop_area_range': (0.3, 1.0),
      'crop_aspect_ratio_range': (3 / 4, 4 / 3),
      'crop_max_attempts': 100,
      'eval_crop_fraction': 1.0,
      'random_flip': True,
      'shuffle_buffer_size': 8,
      'cache_train': False,
      'cache_eval': False,
      'download_data': False,
    }
  )
  config.update(overrides)
  return config


def photo(seed, size=(48, 40)):
  """Smooth random colour blocks: survive JPEG, differ between seeds."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (size[0] // 8, size[1] // 8, 3))
  return np.kron(coarse, np.ones((8, 8, 1))).astype(np.uint8)


def encode(pixels, fmt, mode=None):
  image = Image.fromarray(pixels)
  if mode:
    image = image.convert(mode)
  out = io.BytesIO()
  image.save(out, fmt, **({'quality': 95} if fmt == 'JPEG' else {}))
  return out.getvalue()


def write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)


def eval_batches(config, batch_size=4):
  dataset, num_batches = input_pipeline.create_eval_dataset(
    config, batch_size=batch_size
  )
  batches = list(dataset.as_numpy_iterator())
  assert len(batches) == num_batches
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def take(dataset, count):
  return list(dataset.take(count).as_numpy_iterator())


# A train split of 13 classes with one image each, so that a label names an
# image; names sort differently from their creation order.
TRAIN_CLASSES = [f'class_{c}' for c in 'mkbjaicldfhge']


@pytest.fixture(scope='module')
def one_per_class(tmp_path_factory):
  root = tmp_path_factory.mktemp('one_per_class')
  for i, name in enumerate(TRAIN_CLASSES):
    write(root / 'train' / name / f'{i}.jpg', encode(photo(i), 'JPEG'))
  for i, name in enumerate(TRAIN_CLASSES[:5]):
    write(root / 'val' / name / f'v{i}.png', encode(photo(100 + i), 'PNG'))
  # Not images: ignored.
  write(root / 'train' / TRAIN_CLASSES[0] / 'notes.txt', b'hello')
  write(root / 'train' / TRAIN_CLASSES[0] / '.hidden.jpg', b'')
  return root


def test_classes_are_sorted_folder_names(one_per_class):
  info = input_pipeline.get_dataset_info(make_config(one_per_class))
  assert info.class_names == tuple(sorted(TRAIN_CLASSES))
  assert info.num_classes == 13
  assert (info.train_split, info.eval_split) == ('train', 'val')
  assert (info.num_train_examples, info.num_eval_examples) == (13, 5)
  # Labels are positions in the sorted list, in both splits.
  batches = eval_batches(make_config(one_per_class))
  real = batches['mask'] == 1
  want = sorted(sorted(TRAIN_CLASSES).index(n) for n in TRAIN_CLASSES[:5])
  assert sorted(batches['label'][real]) == want


def test_train_epochs_shares_and_exact_resume(one_per_class):
  config = make_config(one_per_class)
  create = lambda start, **kw: input_pipeline.create_train_dataset(
    config, batch_size=3, seed=4, start_example=start, **kw
  )
  stream = take(create(0), 13)  # 39 examples: three epochs.
  labels = np.concatenate([b['label'] for b in stream])
  for epoch in range(3):
    assert sorted(labels[13 * epoch : 13 * epoch + 13]) == list(range(13))
  assert list(labels[:13]) != list(labels[13:26])
  # Resuming mid-epoch and across an epoch boundary gives the same batches,
  # images included (augmentation seeds follow the stream position).
  for step in (4, 5):
    resumed = take(create(step * 3), 13 - step)
    for got, want in zip(resumed, stream[step:], strict=True):
      for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  shares = [
    {
      int(b['label'][0])
      for b in take(
        input_pipeline.create_train_dataset(
          config, batch_size=1, seed=0, process_index=i, process_count=2
        ),
        6 + i,
      )
    }
    for i in range(2)
  ]
  assert [len(s) for s in shares] == [6, 7]
  assert not shares[0] & shares[1]
  assert shares[0] | shares[1] == set(range(13))


@pytest.fixture(scope='module')
def formats(tmp_path_factory):
  """The same picture in six encodings, one class each, plus two damaged
  files; eval crop 1.0, so every good one decodes to nearly the same
  image."""
  root = tmp_path_factory.mktemp('formats')
  pixels = photo(7, (64, 64))
  files = {
    'a_png/x.png': encode(pixels, 'PNG'),
    'b_jpeg/x.JPEG': encode(pixels, 'JPEG'),
    'c_cmyk/x.jpg': encode(pixels, 'JPEG', 'CMYK'),
    'd_grey_jpeg/x.jpg': encode(pixels, 'JPEG', 'L'),
    'e_grey_png/x.png': encode(pixels, 'PNG', 'L'),
    'f_rgba/x.png': encode(pixels, 'PNG', 'RGBA'),
    'g_damaged/cut.jpg': encode(pixels, 'JPEG')[:300],
    'g_damaged/empty.png': b'',
  }
  for name, data in files.items():
    write(root / 'val' / name, data)
  write(root / 'train' / 'a_png' / 'y.png', encode(photo(8), 'PNG'))
  return root, pixels


def test_image_formats_decode_to_rgb(formats, capfd):
  root, pixels = formats
  batches = eval_batches(make_config(root, resolution=64), batch_size=8)
  assert batches['mask'].sum() == 6
  assert batches['corrupt'].sum() == 2
  # Every file once: examples + corrupt = files; padding comes after.
  np.testing.assert_array_equal((batches['mask'] + batches['corrupt'])[:8], 1)
  by_label = {
    int(label): image
    for label, image, mask in zip(
      batches['label'], batches['image'], batches['mask'], strict=True
    )
    if mask
  }
  rgb = pixels / 127.5 - 1
  grey = np.asarray(Image.fromarray(pixels).convert('L')) / 127.5 - 1
  assert np.abs(by_label[0] - rgb).max() < 1e-5  # PNG: exact.
  assert np.abs(by_label[5] - rgb).max() < 1e-5  # RGBA: alpha dropped.
  # JPEG's chroma subsampling blurs the blocks' sharp colour edges: a few
  # levels of error on average, where another picture (or inverted CMYK)
  # is off by a third of the range or more.
  other = photo(8, (64, 64)) / 127.5 - 1
  assert np.abs(other - rgb).mean() > 0.3
  for label in (1, 2):  # RGB and CMYK JPEG.
    assert np.abs(by_label[label] - rgb).mean() < 0.1, label
  for label in (3, 4):  # Greyscale JPEG and PNG: three equal channels.
    image = by_label[label]
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert np.abs(image[..., 0] - grey).mean() < 0.03, label
  printed = capfd.readouterr().err
  assert 'val/g_damaged/cut.jpg' in printed
  assert 'val/g_damaged/empty.png' in printed


def test_imagenet_wnid_folders_keep_imagenet_order(tmp_path):
  wnids = class_names.imagenet_wnids()
  # tabby, espresso, tench: out of order on purpose.
  for wnid in ('n02123045', 'n07920052', 'n01440764'):
    write(tmp_path / 'val' / wnid / 'a.png', encode(photo(1), 'PNG'))
  info = input_pipeline.get_dataset_info(make_config(tmp_path))
  assert info.num_classes == 1000
  assert info.class_names == tuple(class_names.imagenet_names())
  assert info.class_names[wnids.index('n02123045')] == 'tabby'
  assert info.num_train_examples == 0  # No train folder: eval only.
  labels = eval_batches(make_config(tmp_path))['label'][:3]
  assert sorted(labels) == [0, 281, 967]
  # One folder that is not a WordNet id: ordinary sorted labels.
  write(tmp_path / 'val' / 'zebra_photos' / 'b.png', encode(photo(2), 'PNG'))
  info = input_pipeline.get_dataset_info(make_config(tmp_path))
  assert info.num_classes == 4
  assert info.class_names == (
    'n01440764',
    'n02123045',
    'n07920052',
    'zebra_photos',
  )


def test_eval_split_names(tmp_path):
  write(tmp_path / 'train' / 'a' / '1.png', encode(photo(1), 'PNG'))
  for split in ('test', 'validation', 'val'):
    write(tmp_path / split / 'a' / '1.png', encode(photo(1), 'PNG'))
    info = input_pipeline.get_dataset_info(make_config(tmp_path))
    # 'val' before 'validation' before 'test'.
    assert info.eval_split == split
  config = make_config(tmp_path, eval_split='test')
  assert input_pipeline.get_dataset_info(config).eval_split == 'test'


@pytest.mark.parametrize(
  'layout,match',
  [
    ({}, 'No folder'),
    ({'train/a/1.png': b'x'}, 'no eval split'),
    # Pointed at a split folder instead of its parent.
    ({'cat/1.png': b'x', 'dog/2.png': b'x'}, 'hold images: if they are'),
    ({'val/.keep': b''}, 'is empty'),
    ({'val/1.png': b'x', 'val/2.jpg': b'x'}, 'holds 2 images but no class'),
    (
      {'val/a/1.png': b'x', 'val/b/notes.txt': b'x'},
      r'Class folder .*val/b has no images',
    ),
    (
      {'val/a/1.png': b'x', 'train/a/1.png': b'x', 'train/c/readme': b'x'},
      r'Class folder .*train/c has no images',
    ),
  ],
)
def test_layout_errors(tmp_path, layout, match):
  root = tmp_path / 'data'
  for name, data in layout.items():
    write(root / name, data)
  with pytest.raises(input_pipeline.DatasetError, match=match):
    input_pipeline.get_dataset_info(make_config(root))


def test_missing_split_errors(tmp_path):
  write(tmp_path / 'val' / 'a' / '1.png', encode(photo(1), 'PNG'))
  config = make_config(tmp_path, eval_split='holdout')
  with pytest.raises(input_pipeline.DatasetError, match="no split folder 'h"):
    input_pipeline.get_dataset_info(config)
  # Evaluation works without a train folder; training says what is missing.
  config = make_config(tmp_path)
  assert eval_batches(config)['mask'].sum() == 1
  with pytest.raises(input_pipeline.DatasetError, match='no train split'):
    input_pipeline.create_train_dataset(config, batch_size=1, seed=0)
  with pytest.raises(input_pipeline.DatasetError, match='names no folder'):
    input_pipeline.get_dataset_info(make_config(''))


def test_listing_follows_changes(tmp_path):
  """Listings are cached, but a file added to a class folder is seen."""
  write(tmp_path / 'val' / 'a' / '1.png', encode(photo(1), 'PNG'))
  config = make_config(tmp_path)
  assert input_pipeline.get_dataset_info(config).num_eval_examples == 1
  write(tmp_path / 'val' / 'a' / '2.png', encode(photo(2), 'PNG'))
  assert input_pipeline.get_dataset_info(config).num_eval_examples == 2


def test_tfds_wordnet_label_names_become_readable():
  names = datasets.readable_class_names(['n01440764', 'n02123045', 'cat'])
  assert names == ('tench', 'tabby', 'cat')
  assert folder.is_folder('folder:/x') and not folder.is_folder('digits')


def test_decoded_bytes_match_tf_read(one_per_class):
  """Records carry the files' exact bytes."""
  config = make_config(one_per_class)
  records, count = folder.read_records(config, 'val', 0, 1)
  assert count == 5
  for record in records.as_numpy_iterator():
    path = os.path.join(str(one_per_class), record['id'].decode())
    assert record['image'] == tf.io.read_file(path).numpy()
