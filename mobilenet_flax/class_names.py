"""Class names: ImageNet's 1000 classes, or a dataset's own.

ImageNet classes are in the order of tfds `imagenet2012` and Keras (sorted
WordNet ids), so index i of a 1000-class ImageNet model is line i of
`imagenet_classes.txt` (WordNet id, tab, Keras' short name).
"""

import functools
import pathlib

IMAGENET_FILE = pathlib.Path(__file__).with_name('imagenet_classes.txt')
NUM_IMAGENET_CLASSES = 1000


@functools.cache
def _imagenet() -> tuple[tuple[str, str], ...]:
  rows = []
  for line in IMAGENET_FILE.read_text().splitlines():
    wnid, name = line.split('\t')
    rows.append((wnid, name))
  return tuple(rows)


def imagenet_wnids() -> list[str]:
  """The 1000 WordNet ids (`n01440764`, ...), index order."""
  return [wnid for wnid, _ in _imagenet()]


def imagenet_names() -> list[str]:
  """The 1000 readable names (`tench`, `goldfish`, ...), index order."""
  return [name.replace('_', ' ') for _, name in _imagenet()]


def for_model(num_classes: int, recorded: list[str] | None) -> list[str]:
  """Names for a model's outputs: those recorded with its weights, else
  ImageNet's for a 1000-class model, else the class indices."""
  if recorded and len(recorded) == num_classes:
    return list(recorded)
  if num_classes == NUM_IMAGENET_CLASSES:
    return imagenet_names()
  return [str(i) for i in range(num_classes)]
