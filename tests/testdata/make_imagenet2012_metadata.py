"""Writes the tfds metadata of a prepared `imagenet2012` 5.1.0 (no images).

`tfds.testing.mock_data(data_dir=tests/testdata)` reads these files, so tests
see the real split sizes and features without the 150 GB dataset. tfds used
to ship them but no longer does. Numbers are those of a real preparation with
tfds 4.x: 1,281,167 train images in 1,024 shards, 50,000 validation images
in 64 shards and 100,000 (unlabelled) test images in 128 shards, stored as
ArrayRecord; shard lengths follow tfds' even sharding.

  python tests/testdata/make_imagenet2012_metadata.py
"""

import os
import tempfile

import tensorflow_datasets as tfds

VERSION = '5.1.0'
# (split, examples, shards, bytes on disk)
SPLITS = (
  ('train', 1_281_167, 1024, 146_999_114_192),
  ('validation', 50_000, 64, 6_711_099_535),
  ('test', 100_000, 128, 13_619_139_599),
)


def shard_lengths(num_examples, num_shards):
  """tfds' even sharding: shard i ends at round((i + 1) * n / shards)."""
  ends = [round((i + 1) * num_examples / num_shards) for i in range(num_shards)]
  return [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def main():
  out_dir = os.path.join(os.path.dirname(__file__), 'imagenet2012', VERSION)
  with tempfile.TemporaryDirectory() as data_dir:
    builder = tfds.builder(
      f'imagenet2012:{VERSION}', data_dir=data_dir, file_format='array_record'
    )
    info = builder.info
    info.set_splits(
      tfds.core.SplitDict(
        [
          tfds.core.SplitInfo(
            name=name,
            shard_lengths=shard_lengths(examples, shards),
            num_bytes=num_bytes,
          )
          for name, examples, shards, num_bytes in SPLITS
        ]
      )
    )
    os.makedirs(out_dir, exist_ok=True)
    info.write_to_directory(out_dir)
  print('wrote', sorted(os.listdir(out_dir)), 'to', out_dir)


if __name__ == '__main__':
  main()
