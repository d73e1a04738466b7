"""Test-wide settings, applied before JAX is imported anywhere.

Four fake CPU devices make every pmapped test a real multi-device run, so a
missing cross-device reduction fails here rather than on a TPU. The
persistent compilation cache lets tests (and the programs they start, which
inherit the environment) that build the same step share one XLA
compilation. The tests run tiny models for a few steps, so compiling them
dominates the suite's time: LLVM optimisation level 0 compiles about a
third faster; the code it makes is slower, and may round floats in another
order, which the tests' tolerances already allow for.
"""

import os
import tempfile

import pytest

os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + (
  ' --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0'
)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR',
  os.path.join(tempfile.gettempdir(), 'mobilenet_flax_test_jax_cache'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


# Files whose tests mostly run other processes (main.py, the sweep runner,
# two-process runs, benchmark scripts). `make test` runs them one after
# the other on one worker (`--dist loadgroup`), beside the other worker's
# in-process tests: side by side they start 4-6 processes on the 2 cores,
# and XLA's CPU collectives then wait on threads that are not scheduled.
PROCESS_GROUP = 'processes'
PROCESS_FILES = (
  'test_reliability.py',
  'test_multihost.py',
  'test_sweep.py',
  'test_no_tensorflow.py',
)
# Then the other files, longest first (times of a cold-cache `make test`),
# a short one first so that the worker holding the process group is not
# also handed a long file: xdist gives each worker two units at the start
# and keeps this order (`--no-loadscope-reorder`).
ORDER = (
  *PROCESS_FILES,
  'test_configs.py',
  'test_train.py',
  'test_export.py',
  'test_real_weights.py',
  'test_complexity.py',
  'test_layers.py',
  'test_models.py',
  'test_input_pipeline.py',
  'test_finetune.py',
  'test_predict.py',
  'test_keras_import.py',
)


@pytest.hookimpl(tryfirst=True)  # Before xdist reads the groups.
def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return ORDER.index(name) if name in ORDER else len(ORDER)

  # A stable sort: tests keep their order within a file.
  items.sort(key=rank)
  for item in items:
    name = item.path.name
    # One group per file keeps a file's shared fixtures on one worker.
    group = PROCESS_GROUP if name in PROCESS_FILES else name
    item.add_marker(pytest.mark.xdist_group(group))
