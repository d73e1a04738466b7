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


# The files whose tests take longest (most of it compiling), longest first,
# by their times in a cold-cache `make test`. The Makefile hands whole
# files to the workers in this order (`--no-loadscope-reorder`; otherwise
# pytest-xdist sorts files by their number of tests): a long file started
# last would leave one worker idle while the other finishes it.
SLOWEST_FIRST = (
  'test_train.py',
  'test_export.py',
  'test_reliability.py',
  'test_sweep.py',
  'test_multihost.py',
  'test_no_tensorflow.py',
  'test_real_weights.py',
  'test_complexity.py',
  'test_layers.py',
  'test_models.py',
  'test_input_pipeline.py',
  'test_finetune.py',
  'test_predict.py',
  'test_keras_import.py',
)


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return (
      SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)
    )

  # A stable sort: tests keep their order within a file.
  items.sort(key=rank)
