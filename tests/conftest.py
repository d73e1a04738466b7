"""Test-wide settings, applied before JAX is imported anywhere.

Four fake CPU devices make every pmapped test a real multi-device run, so a
missing cross-device reduction fails here rather than on a TPU. The
persistent compilation cache lets tests (and the programs they start, which
inherit the environment) that build the same step share one XLA
compilation. The tests run tiny models for a few steps, so compiling them
dominates the suite's time: LLVM optimisation level 0 compiles about a
third faster, and XLA's older elementwise code generator (fusion emitters
off) compiled the tiny train step in 5.3-7.7 s instead of 7.6-10.5 s (five
runs each), its steps no slower. The code may round floats in another
order, which the tests' tolerances already allow for; programs the tests
start get the same flags (with their own device count).
"""

import inspect
import os
import tempfile

from tests import xla_flags

os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' ' + xla_flags.for_devices(4)
)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR',
  os.path.join(tempfile.gettempdir(), 'mobilenet_flax_test_jax_cache'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


def _keep_executables_in_memory():
  """Many tests train or evaluate the same tiny model in this process, each
  run tracing and lowering its steps afresh. JAX finds the compiled program
  in the persistent cache, but reads and deserialises it every time (about
  0.9 s for a train step). This keeps each program it compiles or reads,
  under the same cache key (a hash of the program, its compile options and
  devices) and the same devices, and hands that back instead. Programs with
  host callbacks are never kept. If JAX changes these private functions,
  tests only lose the speed-up."""
  try:
    from jax._src import compiler
  except ImportError:
    return
  read = getattr(compiler, '_cache_read', None)
  compile_and_write = getattr(compiler, '_compile_and_write_cache', None)
  if read is None or compile_and_write is None:
    return
  read_sig = inspect.signature(read)
  compile_sig = inspect.signature(compile_and_write)
  kept = {}

  def key(arguments):
    try:
      devices = tuple(d.id for d in arguments['executable_devices'])
      return arguments['cache_key'], devices
    except (KeyError, TypeError, AttributeError):
      return None

  def cache_read(*args, **kwargs):
    k = key(read_sig.bind(*args, **kwargs).arguments)
    if k in kept:
      return kept[k]
    executable, compile_time = read(*args, **kwargs)
    if k is not None and executable is not None:
      kept[k] = executable, compile_time
    return executable, compile_time

  def compile_and_write_cache(*args, **kwargs):
    executable = compile_and_write(*args, **kwargs)
    arguments = compile_sig.bind(*args, **kwargs).arguments
    k = key(arguments)
    if k is not None and not arguments.get('host_callbacks', True):
      # The compile time is only JAX's bookkeeping of what a hit saves.
      kept[k] = executable, 0
    return executable

  compiler._cache_read = cache_read
  compiler._compile_and_write_cache = compile_and_write_cache


_keep_executables_in_memory()


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
