"""Test-wide settings, applied before JAX is imported anywhere.

Four fake CPU devices make every pmapped test a real multi-device run, so a
missing cross-device reduction fails here rather than on a TPU. The
persistent compilation cache lets tests that build the same step share one
XLA compilation.
"""

import os
import tempfile

os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402

jax.config.update(
  'jax_compilation_cache_dir',
  os.environ.get(
    'MOBILENET_TEST_JAX_CACHE',
    os.path.join(tempfile.gettempdir(), 'mobilenet_flax_test_jax_cache'),
  ),
)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
