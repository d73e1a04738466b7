"""One process of the two-process test (tests/test_multihost.py).

Runs main.py's entry point unchanged, with light instrumentation that
records, for the test to compare across processes: a digest of the
parameters after every train step (and whether all local replicas agree),
the step training started from, and a digest of every real eval example
this process scored. The record is written to $MULTIHOST_RECORD on exit.
"""

import atexit
import hashlib
import inspect
import json
import os
import types

import jax
import numpy as np

import main as entry
from mobilenet_flax import cli, steps, train

record = {
  'process_index': None,
  'process_count': None,
  'start_step': None,
  'param_digests': [],
  'replicas_agree': True,
  'eval_examples': [],
  'dataset_calls': [],
}


def _replica_digests(tree):
  """One digest per local device of the pmapped (replicated) `tree`."""
  leaves = jax.tree.leaves(tree)
  digests = []
  for r in range(jax.local_device_count()):
    h = hashlib.sha256()
    for leaf in leaves:
      h.update(np.ascontiguousarray(leaf.addressable_shards[r].data).tobytes())
    digests.append(h.hexdigest())
  return digests


def _instrumented_make_train_step(*args, **kwargs):
  step_fn = _original_make_train_step(*args, **kwargs)

  def step(state, batch):
    if record['start_step'] is None:
      first_replica = np.asarray(state.step.addressable_data(0))
      record['start_step'] = int(first_replica.reshape(-1)[0])
    state, metrics = step_fn(state, batch)
    digests = _replica_digests(state.params)
    record['replicas_agree'] &= len(set(digests)) == 1
    record['param_digests'].append(digests[0])
    return state, metrics

  return step


def _instrumented_data_source(config):
  source = _original_data_source(config)

  def create_train_dataset(config, **kwargs):
    record['dataset_calls'].append(
      ['train', kwargs['process_index'], kwargs['process_count']]
    )
    return source.create_train_dataset(config, **kwargs)

  def create_eval_dataset(config, **kwargs):
    record['dataset_calls'].append(
      ['eval', kwargs['process_index'], kwargs['process_count']]
    )
    dataset, num_batches = source.create_eval_dataset(config, **kwargs)
    return _RecordingEval(dataset), num_batches

  return types.SimpleNamespace(
    get_dataset_info=source.get_dataset_info,
    create_train_dataset=create_train_dataset,
    create_eval_dataset=create_eval_dataset,
  )


class _RecordingEval:
  """Re-iterable like a tf.data dataset (raw and EMA weights each take a
  pass); records the real examples of the first pass."""

  def __init__(self, dataset):
    self._dataset = dataset
    self._passes = 0

  def __iter__(self):
    first = self._passes == 0
    self._passes += 1
    for batch in self._dataset.as_numpy_iterator():
      if first:
        for image, mask in zip(batch['image'], batch['mask'], strict=True):
          if mask:
            record['eval_examples'].append(
              hashlib.sha256(image.tobytes()).hexdigest()
            )
      yield batch


def _write_cache_from_every_process():
  """JAX writes persistent-cache entries from process 0 only (to spare
  shared filesystems the contention). On CPU a cache key includes the
  devices a program runs on, so process 1's programs never match process
  0's entries: without this, process 1 compiles cold in every pair while
  process 0 loads from the cache and waits for it at the first collective.
  The test's cache is a local directory and the keys differ, so the writes
  cannot contend. Only a speed-up: if JAX moves these functions, process 1
  compiles cold again."""
  try:
    from jax._src import compilation_cache, compiler
  except ImportError:
    return
  original = getattr(compiler, '_cache_write', None)
  put = getattr(compilation_cache, 'put_executable_and_time', None)
  if original is None or put is None:
    return

  signature = inspect.signature(original)
  needed = (
    'cache_key',
    'module_name',
    'executable',
    'backend',
    'compile_time_secs',
    'host_callbacks',
  )

  def cache_write(*args, **kwargs):
    given = signature.bind(*args, **kwargs).arguments
    if (
      jax.process_index() == 0
      or any(name not in given for name in needed)
      or given['host_callbacks']
    ):
      return original(*args, **kwargs)
    put(
      given['cache_key'],
      given['module_name'],
      given['executable'],
      given['backend'],
      int(given['compile_time_secs']),
    )
    return None

  compiler._cache_write = cache_write


def _write_record():
  if jax.process_count() > 0:
    record['process_index'] = jax.process_index()
    record['process_count'] = jax.process_count()
  with open(os.environ['MULTIHOST_RECORD'], 'w') as f:
    json.dump(record, f)


_original_make_train_step = steps.make_train_step
_original_data_source = train.data_source
steps.make_train_step = _instrumented_make_train_step
train.data_source = _instrumented_data_source
_write_cache_from_every_process()
atexit.register(_write_record)

if __name__ == '__main__':
  cli.run(entry.main)
