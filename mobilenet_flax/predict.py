r"""Classifies images with trained or converted weights.

  python -m mobilenet_flax.predict --weights=weights/025_128 cat.jpg photos/
  python -m mobilenet_flax.predict --weights=runs/quickstart --top_k=3 \
      --json digits/

`--weights` is any weights directory the project reads: converted Keras
weights (`keras_import`), exported weights (`checkpoints.save_pretrained`)
or a training workdir (its latest checkpoint, EMA weights when kept).
Arguments are image files or directories, which are walked for image files
(.jpg, .jpeg, .png, .gif, .bmp, .webp, any case).

For each image it prints the `--top_k` classes (default 5) with their
probabilities, or with `--json` one JSON object per line:

  {"image": "cat.jpg", "predictions": [{"class": 285, "name": "Egyptian cat",
   "probability": 0.49}, ...]}

Class names are those recorded with the weights (a run trained here records
its dataset's), else ImageNet's for a 1000-class model, else the indices.

Images are preprocessed exactly as `main.py --mode=eval` scores them (the
input pipeline's `preprocess_for_eval`: central crop, bilinear resize to the
weights' resolution, scaling to [-1, 1]) and classified in batches. A file
that is not a readable image is reported by name (`--json`: an object with
an "error" key) and the others are still classified; the exit status is
then 1.
"""

# First: it quiets TensorFlow's start-up logging before anything loads it.
from mobilenet_flax import cli  # noqa: I001

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from absl import flags

from mobilenet_flax import checkpoints, class_names, errors, models

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')
# ImageNet's eval crop, for weights that record none (Keras conversions).
DEFAULT_CROP_FRACTION = 0.875


def find_images(paths: Iterable[str]) -> list[str]:
  """The files to classify, in argument order: files as given, directories
  walked (sorted, hidden entries skipped) for files with an image
  extension. Paths that do not exist are kept: they are reported later."""
  found = []
  for path in paths:
    if not os.path.isdir(path):
      found.append(path)
      continue
    for parent, dirs, files in os.walk(path, followlinks=True):
      dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
      found.extend(
        os.path.join(parent, name)
        for name in sorted(files)
        if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')
      )
  return found


@dataclasses.dataclass(frozen=True)
class Prediction:
  """The top classes of one image, or why it could not be classified."""

  image: str
  # (class index, name, probability), most probable first.
  top: tuple[tuple[int, str, float], ...] = ()
  error: str | None = None

  def to_json(self) -> dict[str, Any]:
    if self.error is not None:
      return {'image': self.image, 'error': self.error}
    return {
      'image': self.image,
      'predictions': [
        {'class': index, 'name': name, 'probability': probability}
        for index, name, probability in self.top
      ],
    }

  def to_text(self) -> str:
    lines = [self.image]
    lines += [f'  {p:7.4f}  {name}' for _, name, p in self.top]
    return '\n'.join(lines)


class Predictor:
  """Weights, their class names and the eval preprocessing, ready to
  classify image files.

  Args:
    weights: a weights directory (see the module docstring).
    resolution: input size; default: the one recorded with the weights.
    crop_fraction: central-crop fraction; default: the one recorded with
      the weights (a training run's `eval_crop_fraction`), else 0.875.
    batch_size: images per forward pass; the last batch is padded, so the
      model is compiled once.
  """

  def __init__(
    self,
    weights: str,
    *,
    resolution: int | None = None,
    crop_fraction: float | None = None,
    batch_size: int = 32,
  ):
    if batch_size < 1:
      raise errors.Error(f'batch_size must be >= 1, got {batch_size}.')
    self.variables, self.fields = checkpoints.load_pretrained(weights)
    info = checkpoints.pretrained_info(weights)
    self.resolution = int(resolution or self.fields['resolution'])
    if self.resolution < models.MIN_RESOLUTION:
      raise errors.Error(
        f'resolution must be >= {models.MIN_RESOLUTION}, got {self.resolution}.'
      )
    self.crop_fraction = float(
      crop_fraction or info['eval_crop_fraction'] or DEFAULT_CROP_FRACTION
    )
    self.class_names = class_names.for_model(
      self.fields['num_classes'], info['class_names']
    )
    self.batch_size = batch_size
    model = models.MobileNetV1(
      alpha=self.fields['alpha'], num_classes=self.fields['num_classes']
    )
    self._probabilities = jax.jit(
      lambda variables, x: jax.nn.softmax(
        model.apply(variables, x, train=False)
      )
    )
    self._preprocess = _eval_preprocessing(self.resolution, self.crop_fraction)

  def load(self, path: str) -> np.ndarray:
    """One image file as the model's input, [resolution, resolution, 3].

    Raises:
      ValueError: the file is missing or not a readable image.
    """
    import tensorflow as tf

    try:
      with open(path, 'rb') as f:
        encoded = f.read()
    except OSError as e:
      raise ValueError(e.strerror or str(e)) from None
    try:
      image = self._preprocess(tf.constant(encoded))
    except tf.errors.OpError as e:
      raise ValueError(
        f'not a readable image ({e.message.splitlines()[0]})'
      ) from None
    if image is None:
      raise ValueError(
        'not a readable image (expected JPEG, PNG, GIF, BMP or WebP data)'
      )
    return image

  def classify(
    self, paths: Sequence[str], top_k: int = 5
  ) -> Iterator[Prediction]:
    """Predictions for `paths`, in order; unreadable files give a
    Prediction with `error` set."""
    top_k = max(1, min(top_k, len(self.class_names)))
    pending: list[tuple[str, np.ndarray | None, str | None]] = []

    def flush() -> Iterator[Prediction]:
      images = [image for _, image, _ in pending if image is not None]
      probs = self._run(images) if images else np.zeros((0, 0))
      row = 0
      for path, image, error in pending:
        if image is None:
          yield Prediction(image=path, error=error)
          continue
        p = probs[row]
        row += 1
        best = np.argsort(-p, kind='stable')[:top_k]
        yield Prediction(
          image=path,
          top=tuple(
            (int(i), self.class_names[i], round(float(p[i]), 6)) for i in best
          ),
        )
      pending.clear()

    loaded = 0
    for path in paths:
      try:
        pending.append((path, self.load(path), None))
        loaded += 1
      except ValueError as e:
        pending.append((path, None, str(e)))
      if loaded == self.batch_size:
        yield from flush()
        loaded = 0
    yield from flush()

  def _run(self, images: list[np.ndarray]) -> np.ndarray:
    count = len(images)
    batch = np.zeros(
      (self.batch_size, self.resolution, self.resolution, 3), np.float32
    )
    batch[:count] = np.stack(images)
    return np.asarray(self._probabilities(self.variables, batch))[:count]


def _eval_preprocessing(resolution: int, crop_fraction: float):
  """The input pipeline's eval preprocessing of one encoded image, traced
  once; returns None for bytes that are no image the decoders read."""
  tf = cli.import_tensorflow()
  with cli.quiet_native_logs():
    from input_pipeline import preprocessing

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
  def preprocess(encoded):
    valid = preprocessing.is_valid_image(encoded)
    return valid, tf.cond(
      valid,
      lambda: preprocessing.preprocess_for_eval(
        encoded, resolution=resolution, crop_fraction=crop_fraction
      ),
      lambda: tf.zeros([resolution, resolution, 3], tf.float32),
    )

  def run(encoded):
    valid, image = preprocess(encoded)
    return image.numpy() if bool(valid) else None

  return run


def run(
  weights: str,
  inputs: Sequence[str],
  *,
  top_k: int = 5,
  as_json: bool = False,
  resolution: int | None = None,
  crop_fraction: float | None = None,
  batch_size: int = 32,
  out=None,
) -> list[Prediction]:
  """Classifies `inputs` (files and directories) and prints the results to
  `out` (stdout by default) as they come; returns them."""
  out = out or sys.stdout
  paths = find_images(inputs)
  if not paths:
    raise errors.Error(
      f'No image files in {", ".join(inputs)} (looked for '
      f'{", ".join(IMAGE_EXTENSIONS)}).'
    )
  predictor = Predictor(
    weights,
    resolution=resolution,
    crop_fraction=crop_fraction,
    batch_size=batch_size,
  )
  results = []
  for prediction in predictor.classify(paths, top_k):
    if as_json:
      print(json.dumps(prediction.to_json()), file=out, flush=True)
    elif prediction.error is None:
      print(prediction.to_text(), file=out, flush=True)
    if prediction.error is not None:
      print(
        f'skipping {prediction.image}: {prediction.error}',
        file=sys.stderr,
        flush=True,
      )
    results.append(prediction)
  return results


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string(
    'weights',
    None,
    'Weights directory: converted Keras weights, exported weights or a '
    'training workdir.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'top_k',
    5,
    'Classes to show per image.',
    lower_bound=1,
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    'json', False, 'One JSON object per image.', flag_values=flag_values
  )
  flags.DEFINE_integer(
    'resolution',
    None,
    'Input size; default: the one recorded with the weights.',
    flag_values=flag_values,
  )
  flags.DEFINE_float(
    'crop_fraction',
    None,
    'Central-crop fraction; default: the one recorded with the weights, '
    'else 0.875.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'batch_size',
    32,
    'Images per forward pass.',
    lower_bound=1,
    flag_values=flag_values,
  )
  flags.mark_flag_as_required('weights', flag_values=flag_values)


def main(argv: list[str]) -> None:
  if len(argv) < 2:
    cli.fail('give one or more image files or directories to classify.')
  fv = flags.FLAGS
  results = run(
    fv.weights,
    argv[1:],
    top_k=fv.top_k,
    as_json=fv.json,
    resolution=fv.resolution,
    crop_fraction=fv.crop_fraction,
    batch_size=fv.batch_size,
  )
  failed = [r.image for r in results if r.error is not None]
  if failed:
    cli.fail(
      f'{len(failed)} of {len(results)} files could not be classified: '
      + ', '.join(failed)
    )


if __name__ == '__main__':
  define_flags()
  cli.run(main)
