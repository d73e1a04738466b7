"""Image-folder datasets: `config.dataset = 'folder:PATH'`.

The layout is one folder per split and one folder per class inside it:

  PATH/train/<class>/*.jpg      (any depth below the class folder)
  PATH/val/<class>/*.jpg        (or validation/ or test/)

- Classes are the class folders of the train and eval splits together,
  sorted by name; label i is the i-th. A class may be missing from one
  split (a validation set that covers some classes only).
- ImageNet: when every class folder is an ImageNet WordNet id
  (`val/n01440764/ILSVRC2012_val_00000293.JPEG`, the common layout of the
  validation set), labels are ImageNet's indices and there are 1000
  classes, whatever subset of them the folder holds: a model trained on
  tfds `imagenet2012` or converted from Keras scores correctly on it.
- Files count when their extension is one the decoders read (.jpg, .jpeg,
  .png, .gif, .bmp, .webp, any case); other files (`.DS_Store`, notes) are
  ignored. The decoders go by the bytes, not the name, and turn greyscale,
  CMYK, palette and 16-bit images into 8-bit RGB.
- Records are read with `tf.io.read_file` and then go through exactly the
  pipeline of tfds datasets (`input_pipeline.pipeline`): the same crops,
  exact resumption, padded full-split evaluation, and masking and counting
  of images that cannot be decoded (each named by its path under PATH). A
  file that cannot be read at all (permissions, removed mid-run) stops the
  run with the operating system's error.
- The train files are put in one fixed pseudo-random order (a function of
  the file list), as tfds shuffles a dataset once when preparing it; the
  pipeline's shuffle buffer then mixes them anew each epoch. Eval files
  keep their sorted order.

Listing a split walks its folders once per process and call; listings are
kept in memory while the folders' modification times stay the same.
"""

import dataclasses
import functools
import os
import re

import numpy as np
import tensorflow as tf

from input_pipeline import datasets
from mobilenet_flax import class_names
from mobilenet_flax.dataset_info import DatasetInfo

PREFIX = datasets.FOLDER_PREFIX
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')
# Eval split folders, in the order they are looked for.
EVAL_SPLITS = ('val', 'validation', 'test')
_WNID = re.compile(r'n\d{8}')
# Fixed seed of the one-time order of the train files.
_ORDER_SEED = 0


def is_folder(name) -> bool:
  """Whether a config's `dataset` names an image folder."""
  return isinstance(name, str) and name.startswith(PREFIX)


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: its folder name, files (absolute paths) and labels."""

  name: str
  files: tuple[str, ...]
  labels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FolderDataset:
  root: str
  # Readable names in label order (ImageNet's for WordNet-id folders).
  class_names: tuple[str, ...]
  imagenet: bool
  eval: Split
  # None when there is no train folder (evaluation only).
  train: Split | None

  def split(self, name: str) -> Split:
    for split in (self.train, self.eval):
      if split is not None and split.name == name:
        return split
    raise datasets.DatasetError(
      f'{self.root} has no split folder {name!r}; it has '
      f'{sorted(_split_folders(self.root))}.'
    )


def _root(config) -> str:
  path = config.dataset[len(PREFIX) :]
  if not path:
    raise datasets.DatasetError(
      "config.dataset 'folder:' names no folder; use 'folder:PATH' with "
      'PATH/train/<class>/ and PATH/val/<class>/ inside.'
    )
  return os.path.abspath(os.path.expanduser(path))


def _split_folders(root: str) -> list[str]:
  return [
    entry.name
    for entry in os.scandir(root)
    if entry.is_dir() and not entry.name.startswith('.')
  ]


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')


def _images_below(folder: str) -> list[str]:
  """Image files anywhere below `folder`, sorted by path."""
  found = []
  for parent, dirs, files in os.walk(folder, followlinks=True):
    dirs[:] = [d for d in dirs if not d.startswith('.')]
    found.extend(os.path.join(parent, f) for f in files if _is_image(f))
  return sorted(found)


def _mtimes(split_dir: str) -> tuple:
  """Modification times of a split folder and its class folders: adding or
  removing a class or a file directly in a class folder changes them."""
  times = [os.stat(split_dir).st_mtime_ns]
  for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
    if entry.is_dir():
      times.append((entry.name, entry.stat().st_mtime_ns))
  return tuple(times)


def _list_split(split_dir: str) -> dict[str, list[str]]:
  return _list_split_cached(split_dir, _mtimes(split_dir))


@functools.lru_cache(maxsize=16)
def _list_split_cached(split_dir: str, mtimes: tuple) -> dict[str, list[str]]:
  """Class folder name -> its image files, for one split folder.

  Raises:
    DatasetError: the split has no class folders, or a class folder has no
      images.
  """
  del mtimes  # Only part of the cache key.
  classes = sorted(
    entry.name
    for entry in os.scandir(split_dir)
    if entry.is_dir() and not entry.name.startswith('.')
  )
  if not classes:
    loose = [f for f in os.listdir(split_dir) if _is_image(f)]
    if loose:
      raise datasets.DatasetError(
        f'{split_dir} holds {len(loose)} images but no class folders; put '
        f'each class in its own folder: {split_dir}/<class>/*.jpg.'
      )
    raise datasets.DatasetError(
      f'{split_dir} is empty: expected one folder per class, '
      f'{split_dir}/<class>/*.jpg.'
    )
  listing = {}
  for name in classes:
    files = _images_below(os.path.join(split_dir, name))
    if not files:
      raise datasets.DatasetError(
        f'Class folder {os.path.join(split_dir, name)} has no images (files '
        f'ending in {", ".join(IMAGE_EXTENSIONS)}); add some or remove it.'
      )
    listing[name] = files
  return listing


def _eval_split_name(config, root: str) -> str:
  present = _split_folders(root)
  if config.eval_split:
    if config.eval_split not in present:
      raise datasets.DatasetError(
        f'{root} has no split folder {config.eval_split!r} '
        f'(config.eval_split); it has {sorted(present)}.'
      )
    return config.eval_split
  for name in EVAL_SPLITS:
    if name in present:
      return name
  hint = ''
  if any(
    _is_image(f) for name in present for f in os.listdir(f'{root}/{name}')
  ):
    # PATH holds class folders of images: a split folder, one level too deep.
    hint = (
      f' Its folders hold images: if they are classes, put them in '
      f'{root}/val/ (or point folder: at a parent with val/<class>/).'
    )
  raise datasets.DatasetError(
    f'{root} has no eval split: expected a folder named one of '
    f'{", ".join(EVAL_SPLITS)} (or set config.eval_split); it has '
    f'{sorted(present) or "nothing"}.{hint}'
  )


def _labels(names: list[str]) -> tuple[dict[str, int], tuple[str, ...], bool]:
  """(folder name -> label, readable class names, is ImageNet)."""
  wnids = class_names.imagenet_wnids()
  index = {wnid: i for i, wnid in enumerate(wnids)}
  if all(_WNID.fullmatch(n) and n in index for n in names):
    return (
      {n: index[n] for n in names},
      tuple(class_names.imagenet_names()),
      True,
    )
  return {n: i for i, n in enumerate(names)}, tuple(names), False


def _split(name, listing, label_of, shuffle) -> Split:
  pairs = [(f, label_of[c]) for c, files in listing.items() for f in files]
  if shuffle:
    order = np.random.default_rng(_ORDER_SEED).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
  return Split(
    name=name,
    files=tuple(f for f, _ in pairs),
    labels=tuple(label for _, label in pairs),
  )


def load(config) -> FolderDataset:
  """Lists the folder named by `config.dataset` ('folder:PATH').

  Raises:
    DatasetError: PATH is not a folder, has no eval split (or not the one
      `config.eval_split` names), a split has no class folders, or a class
      folder has no images.
  """
  root = _root(config)
  if not os.path.isdir(root):
    raise datasets.DatasetError(
      f'No folder {root} (config.dataset {config.dataset!r}); expected '
      f'{root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg.'
    )
  eval_name = _eval_split_name(config, root)
  listings = {eval_name: _list_split(os.path.join(root, eval_name))}
  train_name = config.train_split
  train_dir = os.path.join(root, train_name)
  has_train = train_name != eval_name and os.path.isdir(train_dir)
  if has_train:
    listings[train_name] = _list_split(train_dir)
  label_of, names, imagenet = _labels(
    sorted(set().union(*(listing.keys() for listing in listings.values())))
  )
  return FolderDataset(
    root=root,
    class_names=names,
    imagenet=imagenet,
    eval=_split(eval_name, listings[eval_name], label_of, shuffle=False),
    train=(
      _split(train_name, listings[train_name], label_of, shuffle=True)
      if has_train
      else None
    ),
  )


def get_dataset_info(config) -> DatasetInfo:
  """What the training loop needs to know; see `load` for the errors. A
  folder without a train split gives 0 train examples (it can still be
  evaluated; training on it stops with a DatasetError)."""
  dataset = load(config)
  return DatasetInfo(
    name=config.dataset,
    num_classes=len(dataset.class_names),
    train_split=config.train_split,
    eval_split=dataset.eval.name,
    num_train_examples=len(dataset.train.files) if dataset.train else 0,
    num_eval_examples=len(dataset.eval.files),
    class_names=dataset.class_names,
  )


def eval_split(config) -> tuple[str, int]:
  """(name, number of examples) of the eval split."""
  dataset = load(config)
  return dataset.eval.name, len(dataset.eval.files)


def read_records(config, split, process_index, process_count):
  """This process's share of `split` as {'image': bytes, 'label', 'id'},
  like `pipeline._read_records` for tfds: shares are contiguous, disjoint,
  cover the split and differ in size by at most one. `id` is the file's
  path under the dataset folder."""
  if not 0 <= process_index < process_count:
    raise ValueError(
      f'process_index {process_index} is not in [0, {process_count}).'
    )
  dataset = load(config)
  if split == config.train_split and dataset.train is None:
    raise datasets.DatasetError(
      f'{dataset.root} has no train split: expected a folder '
      f'{os.path.join(dataset.root, split)}/<class>/ to train on (it has '
      f'{sorted(_split_folders(dataset.root))}).'
    )
  chosen = dataset.split(split)
  total = len(chosen.files)
  start = process_index * total // process_count
  end = (process_index + 1) * total // process_count
  if end == start:
    raise datasets.DatasetError(
      f'Process {process_index} of {process_count} gets no examples of '
      f'{config.dataset} split {split!r} ({total} images).'
    )
  files = list(chosen.files[start:end])
  # Every path was built as root + os.sep + ...; relpath would be slow for
  # a million files.
  ids = [f[len(dataset.root) + 1 :] for f in files]
  records = tf.data.Dataset.from_tensor_slices(
    {
      'path': tf.constant(files, tf.string),
      'label': tf.constant(chosen.labels[start:end], tf.int32),
      'id': tf.constant(ids, tf.string),
    }
  )
  records = records.map(
    lambda r: {
      'image': tf.io.read_file(r['path']),
      'label': r['label'],
      'id': r['id'],
    },
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  return records, end - start
