"""`digits`: an offline quickstart dataset for the full ImageNet pipeline.

scikit-learn ships the UCI optical handwritten digits (1,797 real 8x8
grayscale images, pixel values 0..16) inside its PyPI package, so this
dataset builds in seconds with no network. Each image becomes a 64x64 RGB
PNG and goes through exactly the same decode, crop and resize code as
ImageNet.

- Upscaling is nearest-neighbour (each source pixel becomes an 8x8 block):
  it invents no values, so the stored image is the scan itself; the random
  crops and bilinear resize of the pipeline do the smoothing.
- Values are mapped to 0..255 with round(v * 255 / 16); ink is bright on a
  black background, as in the source.
- Splits: a stratified 80/20 split with a fixed seed, 1,437 train and 360
  test images, every class in both. There is no validation split, so the
  pipeline evaluates on `test`.
"""

import numpy as np
import tensorflow_datasets as tfds
from sklearn import datasets as sklearn_datasets
from sklearn import model_selection

NAME = 'digits'
IMAGE_SIZE = 64
NUM_CLASSES = 10
NUM_TRAIN_EXAMPLES = 1437
NUM_TEST_EXAMPLES = 360

_SOURCE_SIZE = 8
_SOURCE_MAX = 16
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0


def _split_indices():
  """Indices of the fixed stratified train / test split."""
  labels = sklearn_datasets.load_digits().target
  return model_selection.train_test_split(
    np.arange(len(labels)),
    test_size=_TEST_FRACTION,
    stratify=labels,
    random_state=_SPLIT_SEED,
  )


def to_rgb_uint8(image):
  """One 8x8 digit (values 0..16) as a [64, 64, 3] uint8 image."""
  scale = IMAGE_SIZE // _SOURCE_SIZE
  pixels = np.rint(np.asarray(image) * (255 / _SOURCE_MAX)).astype(np.uint8)
  pixels = np.kron(pixels, np.ones((scale, scale), np.uint8))
  return np.repeat(pixels[:, :, None], 3, axis=2)


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits as 64x64 RGB PNG images."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  def _info(self):
    return self.dataset_info_from_configs(
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(
            shape=(IMAGE_SIZE, IMAGE_SIZE, 3), encoding_format='png'
          ),
          'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://archive.ics.uci.edu/dataset/80',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything comes from the installed scikit-learn.
    train, test = _split_indices()
    return {
      'train': self._generate_examples(train),
      'test': self._generate_examples(test),
    }

  def _generate_examples(self, indices):
    digits = sklearn_datasets.load_digits()
    for index in indices:
      yield (
        int(index),
        {
          'image': to_rgb_uint8(digits.images[index]),
          'label': int(digits.target[index]),
        },
      )
