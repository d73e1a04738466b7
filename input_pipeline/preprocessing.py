"""Image preprocessing on encoded bytes: validity check, crop, resize, scale.

Every function here takes one encoded image (a scalar string tensor) and works
the same eagerly and inside `tf.data`. Randomness is stateless: the caller
passes a seed, so a given (image, seed) pair always gives the same output.
"""

import tensorflow as tf

_JPEG_SIGNATURE = b'\xff\xd8\xff'
_JPEG_END = b'\xff\xd9'
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'IEND'
# Formats `tf.io.decode_image` also reads; only their signature is checked.
_OTHER_SIGNATURES = (b'GIF87a', b'GIF89a', b'BM', b'RIFF')
# Where the end marker must appear. A few writers append padding or metadata
# after it, so the marker is searched in the tail rather than at the very end.
_END_MARKER_WINDOW = 256

# TF-slim's Inception crop (and the flax ImageNet example) asks the crop to
# cover at least 10% of the whole-image box, which makes 0.1 the effective
# lower bound of any smaller `area_range`.
_MIN_OBJECT_COVERED = 0.1


def is_jpeg(encoded):
  return tf.strings.substr(encoded, 0, len(_JPEG_SIGNATURE)) == _JPEG_SIGNATURE


def is_png(encoded):
  return tf.strings.substr(encoded, 0, len(_PNG_SIGNATURE)) == _PNG_SIGNATURE


def _tail_contains(encoded, pattern):
  """Whether `pattern` occurs in the last `_END_MARKER_WINDOW` bytes."""
  length = tf.strings.length(encoded)
  start = tf.maximum(length - _END_MARKER_WINDOW, 0)
  tail = tf.io.decode_raw(tf.strings.substr(encoded, start, length), tf.uint8)
  size = tf.size(tail)
  count = tf.maximum(size - len(pattern) + 1, 0)
  matches = tf.ones([count], tf.bool)
  for offset, byte in enumerate(pattern):
    matches &= tf.equal(tail[offset : offset + count], byte)
  return tf.reduce_any(matches)


def is_valid_image(encoded):
  """Cheap check of encoded bytes, done before any decoder sees them.

  A JPEG must start with SOI and have its EOI marker near the end; a PNG must
  start with the PNG signature and have its IEND chunk near the end. That
  catches empty records and truncated files, the usual damage. GIF, BMP and
  WebP only need their signature; anything else is invalid. Damage this
  cannot see is left to the guard in `input_pipeline.pipeline`.

  Args:
    encoded: scalar string tensor.

  Returns:
    Scalar bool tensor.
  """
  encoded = tf.convert_to_tensor(encoded, tf.string)
  return tf.case(
    [
      (is_jpeg(encoded), lambda: _tail_contains(encoded, _JPEG_END)),
      (is_png(encoded), lambda: _tail_contains(encoded, _PNG_END)),
    ],
    default=lambda: _has_other_signature(encoded),
  )


def _has_other_signature(encoded):
  return tf.reduce_any(
    [
      tf.strings.substr(encoded, 0, len(signature)) == signature
      for signature in _OTHER_SIGNATURES
    ]
  )


def decode_and_crop(encoded, window_fn):
  """Decodes only the crop window of an image, as RGB uint8 [h, w, 3].

  For JPEG the window is computed from the header and passed to the decoder
  (`decode_and_crop_jpeg` skips the DCT blocks outside it). Other formats
  decode the whole image, then slice.

  Args:
    encoded: scalar string tensor holding a JPEG, PNG, GIF, BMP or WebP image.
    window_fn: maps an image shape [height, width, channels] to a crop window
      (offset_y, offset_x, height, width) of int32 scalars.

  Returns:
    uint8 tensor [height, width, 3].
  """

  def from_jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    window = tf.stack(window_fn(shape))
    return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

  def from_other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    offset_y, offset_x, height, width = window_fn(tf.shape(image))
    return tf.slice(image, [offset_y, offset_x, 0], [height, width, 3])

  return tf.cond(is_jpeg(encoded), from_jpeg, from_other)


def central_window(shape, fraction):
  """TF's `central_crop` window: keeps `fraction` of each side, centered."""
  height, width = shape[0], shape[1]
  border = 0.5 * (1.0 - fraction)
  offset_y = tf.cast(tf.cast(height, tf.float32) * border, tf.int32)
  offset_x = tf.cast(tf.cast(width, tf.float32) * border, tf.int32)
  return offset_y, offset_x, height - 2 * offset_y, width - 2 * offset_x


def random_window(
  shape,
  seed,
  *,
  area_range,
  aspect_ratio_range,
  max_attempts,
  fallback_fraction,
):
  """Inception-style random crop window, or a central one if sampling fails.

  `sample_distorted_bounding_box` returns the whole image when none of its
  attempts fits the area and aspect ranges; that case (and a sampled crop
  that happens to be the whole image) becomes the evaluation crop instead.
  """
  whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
    shape,
    bounding_boxes=whole_image,
    seed=seed,
    min_object_covered=_MIN_OBJECT_COVERED,
    aspect_ratio_range=aspect_ratio_range,
    area_range=area_range,
    max_attempts=max_attempts,
    use_image_if_no_bounding_boxes=True,
  )
  sampled = begin[0], begin[1], size[0], size[1]
  failed = (size[0] == shape[0]) & (size[1] == shape[1])
  return tf.cond(
    failed,
    lambda: central_window(shape, fallback_fraction),
    lambda: sampled,
  )


def resize(image, resolution):
  """Bilinear resize to [resolution, resolution], as float32 in [0, 255]."""
  image = tf.image.resize(image, [resolution, resolution], method='bilinear')
  # Bilinear weights are convex, but clip anyway so rounding never leaves
  # the [-1, 1] range after scaling.
  return tf.clip_by_value(image, 0.0, 255.0)


def scale_to_unit_range(image):
  """Maps [0, 255] to [-1, 1], the TF-slim / Keras MobileNet convention."""
  return image / 127.5 - 1.0


def preprocess_for_train(
  encoded,
  seed,
  *,
  resolution,
  area_range=(0.05, 1.0),
  aspect_ratio_range=(3 / 4, 4 / 3),
  max_attempts=100,
  fallback_fraction=0.875,
  random_flip=True,
):
  """Random crop, resize, random flip and scaling of one encoded image.

  Args:
    encoded: scalar string tensor, a valid image (see `is_valid_image`).
    seed: int tensor of shape [2]; the output is a function of (image, seed).
    resolution: output height and width.
    area_range: range of the crop's fraction of the image area.
    aspect_ratio_range: range of the crop's width / height.
    max_attempts: crop samples tried before falling back to a central crop.
    fallback_fraction: side fraction kept by the fallback central crop.
    random_flip: whether to flip left-right with probability 1/2.

  Returns:
    float32 tensor [resolution, resolution, 3] in [-1, 1].
  """
  crop_seed, flip_seed = tf.unstack(
    tf.random.experimental.stateless_split(seed, num=2)
  )
  window_fn = lambda shape: random_window(
    shape,
    crop_seed,
    area_range=area_range,
    aspect_ratio_range=aspect_ratio_range,
    max_attempts=max_attempts,
    fallback_fraction=fallback_fraction,
  )
  image = resize(decode_and_crop(encoded, window_fn), resolution)
  if random_flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return scale_to_unit_range(image)


def preprocess_for_eval(encoded, *, resolution, crop_fraction=0.875):
  """Central crop, resize and scaling of one encoded image.

  Args:
    encoded: scalar string tensor, a valid image (see `is_valid_image`).
    resolution: output height and width.
    crop_fraction: fraction of each side kept by the central crop.

  Returns:
    float32 tensor [resolution, resolution, 3] in [-1, 1].
  """
  window_fn = lambda shape: central_window(shape, crop_fraction)
  image = resize(decode_and_crop(encoded, window_fn), resolution)
  return scale_to_unit_range(image)
