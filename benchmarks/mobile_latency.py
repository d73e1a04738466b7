r"""Batch-1 latency of the exported LiteRT models beside JAX and PyTorch.

For each model size (default alpha 1.0 at 224 px and 0.25 at 128 px, random
weights: latency does not depend on their values) this script

1. saves random weights and exports them with `python -m
   mobilenet_flax.export` in a subprocess, as float32 `tflite` and as
   `tflite_int8` (calibrated on scikit-image's photos), so that this
   process never imports TensorFlow;
2. loads both files into LiteRT interpreters (XNNPACK delegate, as on
   phones) with 1 and with 2 threads, and jit-compiles our JAX eval-mode
   forward pass (`conv_impl='auto'`, the CPU formulation here);
3. times every case in interleaved rounds (each round times every case of
   every size once, `--runs` calls each, and runs the PyTorch peer
   `torch_mobilenet_v1.py --mode=infer --batch=1` once per size and thread
   count), so that all of them see the same machine load.

It prints one JSON line on stdout: per size and case the median over rounds
of the per-round median milliseconds, the smallest per-round median, the
per-round values, file sizes, and speedups (ratio above 1: the first named
is faster). Progress goes to stderr. Without `--peer_python` (default
`.venv-peer/bin/python`, `make peer` builds it) the PyTorch columns are
left out with a note.

  .venv/bin/python benchmarks/mobile_latency.py --rounds=3
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from mobilenet_flax import checkpoints, export, layers, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_list(
  'sizes', ['1.0-224', '0.25-128'], 'alpha-resolution pairs to time.'
)
flags.DEFINE_integer('rounds', 3, 'Interleaved rounds; medians are reported.')
flags.DEFINE_integer('runs', 20, 'Timed batch-1 calls per case and round.')
flags.DEFINE_integer('warmup', 3, 'Untimed calls before each timing.')
flags.DEFINE_list('threads', ['1', '2'], 'LiteRT thread counts.')
flags.DEFINE_string(
  'peer_python', '.venv-peer/bin/python', 'Python with torch (make peer).'
)
flags.DEFINE_string(
  'peer_script',
  os.path.join(ROOT, 'benchmarks', 'torch_mobilenet_v1.py'),
  'The PyTorch peer script.',
)
flags.DEFINE_integer(
  'calibration_images', 16, 'Calibration images for the int8 export.'
)
flags.DEFINE_string(
  'workdir', None, 'Keep weights and exported files here (default: temp).'
)


def log(message: str) -> None:
  print(f'mobile_latency: {message}', file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[float, int]:
  alpha, resolution = text.split('-')
  return float(alpha), int(resolution)


def save_random_weights(directory: str, alpha: float, resolution: int) -> None:
  model = models.MobileNetV1(alpha=alpha, conv_impl='grouped_conv')
  shape = (1, resolution, resolution, 3)
  init = jax.jit(lambda key: model.init(key, jnp.zeros(shape), train=False))
  variables = init(jax.random.key(0))
  checkpoints.save_pretrained(
    directory,
    variables,
    {'alpha': alpha, 'resolution': resolution, 'num_classes': 1000},
  )


def write_photos(directory: str) -> None:
  """scikit-image's photos as PNG files, for int8 calibration."""
  import skimage.data
  from PIL import Image

  os.makedirs(directory, exist_ok=True)
  names = ('astronaut', 'chelsea', 'coffee', 'rocket', 'camera', 'coins')
  for name in names:
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
      image = np.stack([image] * 3, axis=-1)
    Image.fromarray(image[..., :3]).save(os.path.join(directory, f'{name}.png'))


def run_export(weights: str, fmt: str, output: str, *extra: str) -> dict:
  """Runs the export CLI in a subprocess; returns its sidecar."""
  cmd = [
    sys.executable,
    '-m',
    'mobilenet_flax.export',
    f'--weights={weights}',
    f'--format={fmt}',
    f'--output={output}',
    *extra,
  ]
  start = time.perf_counter()
  result = subprocess.run(
    cmd, cwd=ROOT, capture_output=True, text=True, check=False
  )
  if result.returncode:
    raise RuntimeError(f'{" ".join(cmd)} failed:\n{result.stderr[-3000:]}')
  log(f'exported {output} in {time.perf_counter() - start:.1f} s')
  with open(export.sidecar_path(output)) as f:
    return json.load(f)


def time_calls(call, runs: int, warmup: int) -> float:
  """Median milliseconds of `runs` calls after `warmup` untimed ones."""
  for _ in range(warmup):
    call()
  seconds = []
  for _ in range(runs):
    start = time.perf_counter()
    call()
    seconds.append(time.perf_counter() - start)
  return 1000 * statistics.median(seconds)


def litert_case(path: str, threads: int, image: np.ndarray):
  runner = export.LiteRTModel(path, num_threads=threads)
  # Quantizing the input is part of an int8 model's cost on a phone too,
  # but it is done once here so that only the interpreter is timed.
  runner.set_input(image)
  # The node list keeps the replaced nodes; one DELEGATE node that reads
  # the model's input and writes its output means XNNPACK runs it all.
  delegates = [
    op
    for op in runner.interpreter._get_ops_details()
    if op['op_name'] == 'DELEGATE'
  ]
  whole = len(delegates) == 1 and (
    runner.input['index'] in delegates[0]['inputs']
    and runner.output['index'] in delegates[0]['outputs']
  )
  return runner.invoke, whole


def jax_case(alpha: float, resolution: int, image: np.ndarray):
  model = models.MobileNetV1(alpha=alpha, conv_impl='auto')
  x = jax.device_put(image)
  variables = jax.jit(lambda key: model.init(key, x, train=False))(
    jax.random.key(0)
  )
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  start = time.perf_counter()
  jax.block_until_ready(forward(variables, x))
  log(
    f'compiled JAX {alpha}-{resolution} '
    f'({layers.resolve_impl("auto")}) in {time.perf_counter() - start:.1f} s'
  )
  return lambda: jax.block_until_ready(forward(variables, x))


def run_peer(alpha: float, resolution: int, threads: int) -> float | None:
  cmd = [
    FLAGS.peer_python,
    FLAGS.peer_script,
    '--mode=infer',
    '--batch=1',
    f'--alpha={alpha}',
    f'--resolution={resolution}',
    f'--steps={FLAGS.runs}',
    f'--warmup={FLAGS.warmup}',
    f'--threads={threads}',
  ]
  result = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if result.returncode:
    log(f'peer failed: {result.stderr.strip()[-500:]}')
    return None
  report = json.loads(result.stdout.strip().splitlines()[-1])
  return 1000 * report['seconds_per_step']


def suffix(threads: int | str) -> str:
  return f'{threads}_thread{"" if int(threads) == 1 else "s"}'


def speedups(medians: dict[str, float]) -> dict[str, float]:
  """other / this for the comparisons worth quoting (above 1: `this` is
  faster). LiteRT and PyTorch are compared at equal thread counts; our JAX
  forward uses every core, like the PyTorch run with the most threads."""
  pairs = []
  for threads in FLAGS.threads:
    f, q = f'litert_float_{suffix(threads)}', f'litert_int8_{suffix(threads)}'
    pytorch = f'pytorch_{suffix(threads)}'
    pairs += [(q, f), (f, 'jax'), (q, 'jax'), (f, pytorch), (q, pytorch)]
  pairs.append(('jax', f'pytorch_{suffix(max(FLAGS.threads, key=int))}'))
  out = {}
  for this, other in pairs:
    if medians.get(this) and medians.get(other):
      out[f'{this}_vs_{other}'] = round(medians[other] / medians[this], 3)
  return out


def main(argv):
  del argv
  # Orbax logs every save at INFO; this script's own progress is enough.
  logging.set_verbosity(logging.WARNING)
  sizes = [parse_size(s) for s in FLAGS.sizes]
  threads = [int(t) for t in FLAGS.threads]
  peer = os.path.exists(FLAGS.peer_python)
  notes = []
  if not peer:
    notes.append(
      f'PyTorch peer skipped: no {FLAGS.peer_python} (run `make peer`).'
    )
    log(notes[-1])
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='mobile_latency_')
  photos = os.path.join(workdir, 'photos')
  write_photos(photos)

  cases = {}  # size -> case name -> callable
  info = {}
  for alpha, res in sizes:
    key = f'{alpha}-{res}'
    weights = os.path.join(workdir, f'weights_{key}')
    save_random_weights(weights, alpha, res)
    float_path = os.path.join(workdir, f'mobilenet_{key}.tflite')
    int8_path = os.path.join(workdir, f'mobilenet_{key}_int8.tflite')
    float_info = run_export(weights, 'tflite', float_path)
    int8_info = run_export(
      weights,
      'tflite_int8',
      int8_path,
      f'--representative_dir={photos}',
      f'--representative_count={FLAGS.calibration_images}',
    )
    image = np.random.default_rng(0).uniform(-1, 1, (1, res, res, 3))
    image = image.astype(np.float32)
    cases[key] = {}
    delegated = {}
    for n in threads:
      for kind, path in (('float', float_path), ('int8', int8_path)):
        name = f'litert_{kind}_{suffix(n)}'
        cases[key][name], delegated[name] = litert_case(path, n, image)
    cases[key]['jax'] = jax_case(alpha, res, image)
    info[key] = {
      'alpha': alpha,
      'resolution': res,
      'float_bytes': float_info['size_bytes'],
      'int8_bytes': int8_info['size_bytes'],
      'int8_over_float_size': round(
        int8_info['size_bytes'] / float_info['size_bytes'], 3
      ),
      'float_ops': float_info['ops'],
      'int8_ops': int8_info['ops'],
      # Whether XNNPACK runs the whole graph, per LiteRT case.
      'xnnpack_runs_whole_graph': delegated,
    }

  per_round = {key: {} for key in cases}
  for r in range(FLAGS.rounds):
    for key, size_cases in cases.items():
      for name, call in size_cases.items():
        ms = time_calls(call, FLAGS.runs, FLAGS.warmup)
        per_round[key].setdefault(name, []).append(round(ms, 3))
      for n in threads if peer else ():
        alpha, res = info[key]['alpha'], info[key]['resolution']
        ms = run_peer(alpha, res, n)
        if ms is not None:
          name = f'pytorch_{suffix(n)}'
          per_round[key].setdefault(name, []).append(round(ms, 3))
      summary = ', '.join(f'{n} {v[-1]:.2f}' for n, v in per_round[key].items())
      log(f'round {r + 1}/{FLAGS.rounds} {key}: {summary} ms')

  results = {}
  for key, rounds in per_round.items():
    medians = {n: round(statistics.median(v), 3) for n, v in rounds.items()}
    results[key] = {
      **info[key],
      'median_ms': medians,
      # The least disturbed round: on a shared machine, closest to what an
      # idle one gives.
      'min_ms': {n: min(v) for n, v in rounds.items()},
      'per_round_ms': rounds,
      'speedups': speedups(medians),
    }
  versions = {'jax': jax.__version__, 'python': platform.python_version()}
  try:
    from importlib.metadata import version

    versions['ai_edge_litert'] = version('ai-edge-litert')
    versions['tensorflow'] = version('tensorflow-cpu')
  except Exception:  # Versions are informative only.
    pass
  print(
    json.dumps(
      {
        'benchmark': 'mobile_latency',
        'batch': 1,
        'cpu_count': os.cpu_count(),
        'cpu': _cpu_name(),
        'rounds': FLAGS.rounds,
        'runs': FLAGS.runs,
        'jax_conv_impl': layers.resolve_impl('auto'),
        'versions': versions,
        'results': results,
        'notes': notes,
        'workdir': workdir,
      }
    )
  )


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


if __name__ == '__main__':
  app.run(main)
