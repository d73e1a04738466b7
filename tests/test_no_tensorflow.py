"""The model, the train step and the speed benchmark run without TensorFlow.

GPU benchmark machines may have JAX but no TensorFlow; only the input
pipeline and the Keras-file side of the converter may need it.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Makes TensorFlow (and friends) unimportable, as if not installed: a None
# entry in sys.modules fails `import tensorflow` with ModuleNotFoundError,
# and `importlib.util.find_spec` returns None as it does for a missing
# package. (A finder that raises instead breaks libraries that only ask
# whether TensorFlow is there: etils does, and JAX's compilation cache
# then reads and writes nothing.)
BLOCKER = """
import sys
for name in ('tensorflow', 'tensorflow_datasets', 'keras'):
  sys.modules[name] = None
"""


def _run_blocked(code, *args):
  return _run(BLOCKER + code, *args)


def _run(code, *args):
  return subprocess.run(
    [sys.executable, '-c', code, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
    env={**os.environ, 'PYTHONPATH': ROOT},
  )


def test_blocker_works():
  result = _run_blocked(
    'import importlib.util\n'
    "assert importlib.util.find_spec('tensorflow') is None\n"
    'import tensorflow'
  )
  assert result.returncode != 0
  assert 'ModuleNotFoundError' in result.stderr
  assert 'import of tensorflow halted' in result.stderr


def test_core_modules_import_without_tensorflow():
  result = _run_blocked(
    'import mobilenet_flax.models, mobilenet_flax.complexity, '
    'mobilenet_flax.train, mobilenet_flax.checkpoints, '
    'mobilenet_flax.keras_import, mobilenet_flax.synthetic, configs.default\n'
    # Still the blocker's None: nothing put a module there.
    "assert sys.modules['tensorflow'] is None\n"
    "print('imported')"
  )
  assert result.returncode == 0, result.stderr
  assert 'imported' in result.stdout


def test_training_writes_its_events_without_tensorflow(tmp_path):
  """A run on synthetic batches end to end, as on a machine without
  TensorFlow: it completes, with its checkpoint and TensorBoard events."""
  workdir = tmp_path / 'run'
  result = _run_blocked(
    'import os, types\n'
    'from configs import quickstart\n'
    'from mobilenet_flax import synthetic, train\n'
    "config = quickstart.get_config('alpha=0.125,res=32')\n"
    "config.dataset = 'synthetic'\n"
    'config.batch_size = 8\n'
    'config.num_train_steps = 1\n'
    'config.warmup_epochs = 0.0\n'
    'config.eval_every_steps = 1000\n'
    # Synthetic's eval split is 50,000 images; one batch is enough here.
    'data = types.SimpleNamespace(\n'
    '  get_dataset_info=synthetic.get_dataset_info,\n'
    '  create_train_dataset=synthetic.create_train_dataset,\n'
    '  create_eval_dataset=lambda config, *, batch_size, **_: (\n'
    '    [synthetic.random_batch(batch_size, 32, seed=1)], 1))\n'
    'results = train.train_and_evaluate(config, sys.argv[1], data=data)\n'
    "assert sys.modules['tensorflow'] is None\n"
    "print(results['status'])",
    str(workdir),
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['completed']
  assert (workdir / 'checkpoints' / '1').is_dir()
  (events,) = workdir.glob('events.out.tfevents.*')
  assert events.stat().st_size > 100


def test_train_throughput_benchmark_runs_without_tensorflow():
  result = _run_blocked(
    "import runpy; sys.argv = ['train_throughput.py'] + sys.argv[1:]\n"
    "runpy.run_path('benchmarks/train_throughput.py', run_name='__main__')",
    # gpu_compare's --tiny train step below, so that it is compiled once
    # and loaded from the compilation cache there.
    '--alpha=0.25',
    '--resolution=32',
    '--batch=4',
    '--dtype=bfloat16',
    '--conv_impl=shifted',
    '--steps=1',
    '--warmup=1',
    '--repeats=1',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  line = result.stdout.strip().splitlines()[-1]
  report = json.loads(line)
  assert report['benchmark'] == 'train_throughput'
  assert report['images_per_second'] > 0
  assert report['devices'] == 4  # conftest's fake devices reach the child.


def test_gpu_compare_benchmark_runs_tiny_without_tensorflow(tmp_path):
  """The H100 side-by-side script, at its CPU smoke-test sizes: every stage
  but the GPU-only profile builds, times and reports; no timm here, so our
  side alone (one conv implementation keeps the compiles few)."""
  out = tmp_path / 'gpu_compare.json'
  result = _run_blocked(
    "import runpy; sys.argv = ['gpu_compare.py'] + sys.argv[1:]\n"
    "runpy.run_path('benchmarks/gpu_compare.py', run_name='__main__')",
    '--tiny',
    '--impls=shifted',
    # The large stage at the train stage's batch: its own code path, but
    # the same compiled step.
    '--large_batches=4',
    '--stages=micro,train,large,infer',
    '--rounds=1',
    f'--out={out}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report == json.loads(out.read_text())
  assert report['benchmark'] == 'gpu_compare'
  assert report['errors'] == {}
  assert report['timm'].startswith('timm has no mobilenetv1 at this alpha')
  results = report['results']
  assert results['train/ours/shifted/bfloat16/b4']['images_per_second'] > 0
  assert (
    results['train_large/ours/shifted/bfloat16/b4']['images_per_second'] > 0
  )
  assert results['infer/ours/shifted/bfloat16/b4']['images_per_second'] > 0
  assert results['latency/ours/shifted/bfloat16/b1']['ms'] > 0
  for part in ('forward', 'input_grad', 'kernel_grad'):
    assert results[f'micro/depthwise/shifted/{part}/bfloat16/b4']['ms'] > 0
    for pointwise in ('conv', 'matmul'):
      assert (
        results[f'micro/pointwise/{pointwise}/{part}/bfloat16/b4']['ms'] > 0
      )
  # Nothing to compare against without timm: no ratio is made up.
  assert report['speedups'] == {}
  assert report['copy_bandwidth_gb_per_s'] > 0


def test_tensorflow_loads_without_keras_and_keras_imports_after():
  # cli.import_tensorflow skips the Keras import TensorFlow makes at start-up
  # (the input pipeline, export and predict use it); Keras itself must still
  # load afterwards, for keras_import.
  result = _run(
    'import sys\n'
    'from mobilenet_flax import cli\n'
    'tf = cli.import_tensorflow()\n'
    'assert tf.constant(2).numpy() == 2\n'
    "assert 'keras' not in sys.modules and 'sklearn' not in sys.modules\n"
    'import keras\n'
    'print(keras.layers.Dense(3).units, tf.keras.layers.Dense(4).units)'
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['3', '4']
