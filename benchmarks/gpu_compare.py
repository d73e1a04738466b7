r"""Our train step and forward pass against timm's MobileNet v1, on one GPU.

One process holds both frameworks. Every case is built (and compiled)
first; then `--rounds` rounds time each case in turn, so both sides see the
same GPU in the same state, and the medians over rounds are compared as
ratios (above 1: we are faster). Stages, each interleaved on its own:

* `train`: our real train step (`steps.build_train_step`: TF1 RMSprop,
  cross-replica batch norm, EMA, L2, the NaN guard) for each conv
  implementation and compute dtype, against timm `mobilenetv1_100`
  (channels_last, bfloat16 autocast, RMSprop), eager and `torch.compile`d.
* `large`: the same at the largest batch in `--large_batches` that fits
  (each framework may use `--memory_fraction` of the GPU, so both stay
  resident).
* `infer`: eval-mode throughput at `--infer_batch` and batch-1 latency
  (each call waited for).
* `profile`: a JAX profile of a few train steps per implementation: GPU
  time by XLA op, and the bytes XLA's cost analysis counts per step, as a
  fraction of the measured copy bandwidth.
* `micro` (run last): the 13 depthwise layers (forward, input gradient,
  kernel gradient) and the 13 pointwise layers, per implementation: where
  the conv time goes.

Prints progress to stderr and one JSON line (device, versions, date, every
median and ratio) to stdout; `--out` writes the same JSON to a file.
Imports no TensorFlow; without PyTorch or timm it times our side alone.

  python benchmarks/gpu_compare.py --out=benchmarks/results/h100.json
  # A CPU smoke run at tiny sizes (what CI runs):
  python benchmarks/gpu_compare.py --tiny
"""

import collections
import dataclasses
import datetime
import functools
import glob
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

# Both frameworks share the GPU: JAX takes memory as it needs it, up to its
# share, instead of 75% up front.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_float('alpha', 1.0, 'Width multiplier (timm has alpha 1.0).')
flags.DEFINE_integer('resolution', 224, 'Input height and width.')
flags.DEFINE_integer('batch', 256, 'Training batch of the `train` stage.')
flags.DEFINE_list(
  'large_batches', ['1024', '768', '512'], 'Tried in order by `large`.'
)
flags.DEFINE_list(
  'large_variants',
  [],
  'side:variant pairs for `large`, e.g. ours:grouped_conv,timm:compile; '
  'empty takes the fastest bfloat16 variant of each side from `train`.',
)
flags.DEFINE_integer('infer_batch', 256, 'Batch of the throughput run.')
flags.DEFINE_list(
  'impls', ['grouped_conv', 'shifted'], 'Our conv implementations.'
)
flags.DEFINE_list('dtypes', ['bfloat16', 'float32'], 'Our compute dtypes.')
flags.DEFINE_list(
  'torch_modes',
  ['eager', 'compile'],
  'timm variants: eager, compile (torch.compile default mode); batch-1 '
  'latency also tries compile with CUDA graphs (reduce-overhead).',
)
flags.DEFINE_list(
  'stages', ['micro', 'train', 'large', 'infer', 'profile'], 'What to run.'
)
flags.DEFINE_integer('rounds', 5, 'Interleaved rounds; medians reported.')
flags.DEFINE_integer('steps', 10, 'Train steps (or forward calls) per timing.')
flags.DEFINE_integer('latency_calls', 30, 'Batch-1 calls per timing.')
flags.DEFINE_float(
  'memory_fraction', 0.45, 'GPU memory each framework may use.'
)
flags.DEFINE_string('out', None, 'Also write the JSON result here.')
flags.DEFINE_bool(
  'tiny',
  False,
  'CPU smoke run: alpha 0.25, 32 px, batch 4, 2 rounds of 2 steps, '
  'grouped_conv and shifted in bfloat16 (timm only when alpha is 1.0).',
)


def log(message: str) -> None:
  print(f'[{time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Cases and interleaved timing.


@dataclasses.dataclass
class Case:
  """Something to time: `run(n)` does n units of work and waits for them."""

  name: str
  run: Callable[[int], None]
  # Images per unit, for images/second; 0 reports milliseconds per unit.
  images: int
  units: int
  extra: dict = dataclasses.field(default_factory=dict)


def time_interleaved(cases: list[Case], rounds: int) -> dict[str, dict]:
  """Times every case once per round, in turn; medians over rounds."""
  samples = collections.defaultdict(list)
  for r in range(rounds):
    for case in cases:
      start = time.perf_counter()
      case.run(case.units)
      samples[case.name].append((time.perf_counter() - start) / case.units)
    log(f'  round {r + 1}/{rounds} done')
  results = {}
  for case in cases:
    seconds = statistics.median(samples[case.name])
    entry = {'seconds_per_unit': seconds, 'rounds': samples[case.name]}
    if case.images:
      entry['images_per_second'] = case.images / seconds
    else:
      entry['ms'] = 1000 * seconds
    entry.update(case.extra)
    results[case.name] = entry
    shown = (
      f'{entry["images_per_second"]:.1f} images/s'
      if case.images
      else f'{entry["ms"]:.3f} ms'
    )
    log(f'  {case.name}: {shown}')
  return results


def try_build(build: Callable[[], Case], errors: dict, name: str):
  """Builds (and warms up) a case; records the error instead of stopping."""
  start = time.perf_counter()
  try:
    case = build()
  except Exception as e:  # noqa: BLE001 - one failed case must not end the run.
    errors[name] = f'{type(e).__name__}: {str(e)[:500]}'
    log(f'  {name}: FAILED ({errors[name][:200]})')
    traceback.print_exc(limit=3, file=sys.stderr)
    return None
  case.extra['build_seconds'] = round(time.perf_counter() - start, 2)
  log(f'  built {name} in {case.extra["build_seconds"]:.1f} s')
  return case


# ---------------------------------------------------------------------------
# Our side.


def _config(impl: str, dtype: str, batch: int):
  from configs import default
  from mobilenet_flax import config_lib

  config = default.get_config(f'alpha={FLAGS.alpha},res={FLAGS.resolution}')
  config.batch_size = batch
  config.model.conv_impl = impl
  config.model.dtype = dtype
  config_lib.validate(config)
  return config


def _bytes_accessed(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 - not every backend reports costs.
    return None
  if isinstance(cost, list | tuple):
    cost = cost[0] if cost else {}
  value = (cost or {}).get('bytes accessed')
  return float(value) if value is not None else None


def ours_train(impl: str, dtype: str, batch: int) -> Case:
  import jax

  from mobilenet_flax import steps, synthetic, train

  config = _config(impl, dtype, batch)
  p_step, state = steps.build_train_step(
    config, synthetic.NUM_CLASSES, synthetic.NUM_TRAIN_EXAMPLES
  )
  images = next(
    train.device_batches([synthetic.random_batch(batch, FLAGS.resolution)])
  )
  holder = {'state': state}

  def run(n):
    state = holder['state']
    for _ in range(n):
      state, metrics = p_step(state, images)
    jax.block_until_ready(metrics)
    holder['state'] = state

  run(2)  # Compiles, then one warm step.
  extra = {'bytes_accessed_per_step': _bytes_accessed(p_step.compiled)}
  case = Case(f'train/ours/{impl}/{dtype}/b{batch}', run, batch, FLAGS.steps)
  case.extra.update(extra)
  case.extra['peak_memory_gb'] = _jax_peak_memory_gb()
  return case


def _jax_peak_memory_gb() -> float | None:
  import jax

  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return round(peak / 2**30, 2) if peak else None


def ours_infer(impl: str, dtype: str, batch: int, latency: bool) -> Case:
  import jax
  import numpy as np

  from mobilenet_flax import steps

  config = _config(impl, dtype, batch)
  model = steps.create_model(config, 1000, axis_name=None)
  variables = steps.initial_variables(
    model, FLAGS.resolution, jax.random.PRNGKey(0)
  )
  forward = jax.jit(functools.partial(model.apply, train=False))
  shape = (batch, FLAGS.resolution, FLAGS.resolution, 3)
  x = jax.device_put(
    np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
  )

  def run(n):
    for _ in range(n):
      y = forward(variables, x)
      if latency:
        y.block_until_ready()
    y.block_until_ready()

  run(3)
  if latency:
    return Case(
      f'latency/ours/{impl}/{dtype}/b{batch}', run, 0, FLAGS.latency_calls
    )
  return Case(f'infer/ours/{impl}/{dtype}/b{batch}', run, batch, FLAGS.steps)


def depthwise_layers(alpha: float, resolution: int):
  """(input size, channels, stride) of the 13 depthwise layers."""
  from mobilenet_flax import models

  size = -(-resolution // 2)
  channels = models.scaled_channels(models.STEM_CHANNELS, alpha)
  out = []
  for stride, pointwise in models.BLOCKS:
    out.append((size, channels, stride))
    size = -(-size // stride)
    channels = models.scaled_channels(pointwise, alpha)
  return out


def micro_cases(batch: int, dtype: str) -> list[Callable[[], Case]]:
  """Builders for depthwise (per implementation) and pointwise (conv or
  matrix product) layers, forward and each gradient, all 13 layers in one
  jitted call."""
  import jax
  import jax.numpy as jnp

  from mobilenet_flax import layers, models

  dt = jnp.dtype(dtype)
  shapes = depthwise_layers(FLAGS.alpha, FLAGS.resolution)
  key = iter(jax.random.split(jax.random.PRNGKey(1), 200))

  def normal(shape):
    return jax.random.normal(next(key), shape, jnp.float32).astype(dt)

  dw_x = [normal((batch, s, s, c)) for s, c, _ in shapes]
  dw_k = [normal((3, 3, c)) for _, c, _ in shapes]
  strides = [st for _, _, st in shapes]
  dw_g = [normal((batch, -(-s // st), -(-s // st), c)) for s, c, st in shapes]
  pw = []
  for (s, c, st), (_, cout) in zip(shapes, models.BLOCKS, strict=True):
    s = -(-s // st)
    pw.append((s, c, models.scaled_channels(cout, FLAGS.alpha)))
  pw_x = [normal((batch, s, s, c)) for s, c, _ in pw]
  pw_k = [normal((1, 1, c, co)) for _, c, co in pw]
  pw_g = [normal((batch, s, s, co)) for s, _, co in pw]

  def conv1x1(x, k):
    return jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  def matmul1x1(x, k):
    return layers.matmul_pointwise(x, k[0, 0])

  ops = {
    'depthwise/grouped_conv': layers.grouped_depthwise,
    'depthwise/shifted': layers.shifted_depthwise,
  }
  ops = {k: v for k, v in ops.items() if k.split('/')[1] in FLAGS.impls}
  builders = []

  def add(name, op, xs, ks, gs, strided):
    def call(x, k, i):
      return op(x, k, strides[i]) if strided else op(x, k)

    fns = {
      'forward': lambda xs, ks, gs: [
        call(x, k, i) for i, (x, k) in enumerate(zip(xs, ks, strict=True))
      ],
      'input_grad': lambda xs, ks, gs: [
        jax.vjp(lambda x, k=k, i=i: call(x, k, i), x)[1](g)[0]
        for i, (x, k, g) in enumerate(zip(xs, ks, gs, strict=True))
      ],
      'kernel_grad': lambda xs, ks, gs: [
        jax.vjp(lambda k, x=x, i=i: call(x, k, i), k)[1](g)[0]
        for i, (x, k, g) in enumerate(zip(xs, ks, gs, strict=True))
      ],
    }
    for part, fn in fns.items():
      jitted = jax.jit(fn)

      def build(jitted=jitted, part=part):
        def run(n):
          for _ in range(n):
            out = jitted(xs, ks, gs)
          jax.block_until_ready(out)

        run(2)
        return Case(f'micro/{name}/{part}/{dtype}/b{batch}', run, 0, 5)

      builders.append((f'micro/{name}/{part}', build))

  for name, op in ops.items():
    add(name, op, dw_x, dw_k, dw_g, strided=True)
  add('pointwise/conv', conv1x1, pw_x, pw_k, pw_g, strided=False)
  add('pointwise/matmul', matmul1x1, pw_x, pw_k, pw_g, strided=False)
  return builders


# ---------------------------------------------------------------------------
# timm's side.


def torch_available() -> str | None:
  """None when timm and PyTorch import, else why not."""
  if FLAGS.alpha != 1.0:
    return 'timm has no mobilenetv1 at this alpha'
  try:
    import timm  # noqa: F401
    import torch  # noqa: F401
  except ImportError as e:
    return f'not installed ({e})'
  return None


def _torch_device():
  import torch

  if torch.cuda.is_available():
    torch.cuda.set_per_process_memory_fraction(FLAGS.memory_fraction)
    return torch.device('cuda')
  return torch.device('cpu')


def _torch_sync(device):
  import torch

  if device.type == 'cuda':
    torch.cuda.synchronize()


def timm_train(mode: str, batch: int) -> Case:
  import timm
  import torch
  import torch.nn.functional as F

  device = _torch_device()
  model = timm.create_model('mobilenetv1_100', num_classes=1000)
  model = model.to(device).to(memory_format=torch.channels_last).train()
  # torch's RMSprop (foreach on CUDA) with the recipe's decay and momentum.
  optimizer = torch.optim.RMSprop(
    model.parameters(), lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9
  )
  forward = torch.compile(model) if mode == 'compile' else model
  x = torch.randn(batch, 3, FLAGS.resolution, FLAGS.resolution, device=device)
  x = x.contiguous(memory_format=torch.channels_last)
  y = torch.randint(0, 1000, (batch,), device=device)

  def step():
    with torch.autocast(device.type, dtype=torch.bfloat16):
      loss = F.cross_entropy(forward(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  def run(n):
    for _ in range(n):
      step()
    _torch_sync(device)

  run(3)
  case = Case(f'train/timm/{mode}/bfloat16/b{batch}', run, batch, FLAGS.steps)
  if device.type == 'cuda':
    peak = torch.cuda.max_memory_allocated() / 2**30
    case.extra['peak_memory_gb'] = round(peak, 2)
  return case


def timm_infer(mode: str, batch: int, latency: bool) -> Case:
  import timm
  import torch

  device = _torch_device()
  model = timm.create_model('mobilenetv1_100', num_classes=1000)
  model = model.to(device).to(memory_format=torch.channels_last).eval()
  if mode == 'compile':
    model = torch.compile(model)
  elif mode == 'compile_cudagraphs':
    model = torch.compile(model, mode='reduce-overhead')
  x = torch.randn(batch, 3, FLAGS.resolution, FLAGS.resolution, device=device)
  x = x.contiguous(memory_format=torch.channels_last)

  def run(n):
    with (
      torch.inference_mode(),
      torch.autocast(device.type, dtype=torch.bfloat16),
    ):
      for _ in range(n):
        model(x)
        if latency:
          _torch_sync(device)
    _torch_sync(device)

  run(5)
  if latency:
    return Case(
      f'latency/timm/{mode}/bfloat16/b{batch}', run, 0, FLAGS.latency_calls
    )
  return Case(f'infer/timm/{mode}/bfloat16/b{batch}', run, batch, FLAGS.steps)


# ---------------------------------------------------------------------------
# Where the time goes.


def copy_bandwidth() -> float:
  """Bytes read plus written per second by a large on-device copy-and-add
  (the practical ceiling of memory-bound work)."""
  import jax
  import jax.numpy as jnp

  n = (1 << 30) if jax.default_backend() == 'gpu' else (1 << 24)
  x = jnp.ones((n,), jnp.bfloat16)
  add = jax.jit(lambda x: x + 1)
  add(x).block_until_ready()
  times = []
  for _ in range(10):
    start = time.perf_counter()
    add(x).block_until_ready()
    times.append(time.perf_counter() - start)
  bytes_moved = 2 * x.size * x.dtype.itemsize
  del x
  return bytes_moved / statistics.median(times)


def _category(op: str, kernel: str) -> str:
  text = f'{op} {kernel}'.lower()
  if 'bw-filter' in text or 'wgrad' in text:
    return 'conv_kernel_grad'
  if 'bw-input' in text or 'dgrad' in text:
    return 'conv_input_grad'
  if 'conv' in text or 'cudnn' in text:
    return 'conv_forward'
  if 'gemm' in text or 'cublas' in text or 'dot' in text:
    return 'matmul'
  if 'reduce' in text or 'reduction' in text:
    return 'reduction_fusion'
  if 'fusion' in text or 'loop' in text:
    return 'elementwise_fusion'
  return 'other'


def kernel_profile(case: Case, steps: int = 3) -> dict:
  """GPU time per XLA op over `steps` units of `case`, from a JAX trace."""
  import jax
  from jax.profiler import ProfileData

  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir):
      case.run(steps)
    paths = glob.glob(f'{logdir}/**/*.xplane.pb', recursive=True)
    if not paths:
      return {'error': 'no trace written'}
    data = ProfileData.from_file(paths[0])
  # Per trace line: GPU time by XLA op. Stream lines hold the kernels;
  # other lines (modules, steps) aggregate the same time again.
  per_line = collections.defaultdict(collections.Counter)
  kernel_of = {}
  for plane in data.planes:
    if not plane.name.startswith('/device:GPU'):
      continue
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        op = str(stats.get('hlo_op', event.name))
        per_line[line.name][op] += event.duration_ns
        kernel_of.setdefault(op, event.name[:120])
  streams = [n for n in per_line if n.lower().startswith('stream')]
  by_op = collections.Counter()
  for name in streams or list(per_line)[:1]:
    by_op.update(per_line[name])
  lines = {n: sum(c.values()) for n, c in per_line.items()}
  total_ns = sum(by_op.values())
  categories = collections.Counter()
  for op, ns in by_op.items():
    categories[_category(op, kernel_of[op])] += ns
  per_step = lambda ns: round(ns / steps / 1e6, 4)  # noqa: E731
  return {
    'gpu_ms_per_step': per_step(total_ns),
    'by_category_ms': {k: per_step(v) for k, v in categories.most_common()},
    'top_ops_ms': [
      {'op': op, 'kernel': kernel_of[op], 'ms': per_step(ns)}
      for op, ns in by_op.most_common(40)
    ],
    'trace_lines_ms': {k: per_step(v) for k, v in lines.items()},
  }


# ---------------------------------------------------------------------------
# Putting it together.


def profile_case(case: Case, timed: dict, bandwidth: float) -> dict:
  """The kernel profile of a timed train case, with the bytes XLA counts
  per step against the step's time and the copy bandwidth."""
  profile = kernel_profile(case)
  step_bytes = case.extra.get('bytes_accessed_per_step')
  if step_bytes:
    seconds = timed['seconds_per_unit']
    profile['bytes_accessed_per_image_mb'] = round(
      step_bytes / case.images / 1e6, 2
    )
    profile['achieved_gb_per_s'] = round(step_bytes / seconds / 1e9, 1)
    profile['fraction_of_copy_bandwidth'] = round(
      step_bytes / seconds / bandwidth, 3
    )
  log(f'profile {case.name}: {json.dumps(profile)[:2000]}')
  return profile


def ratios(results: dict[str, dict]) -> dict[str, float]:
  """Ours / timm's best for each measure and batch (latency: timm / ours)."""
  best = {}
  for name, r in results.items():
    parts = name.split('/')
    if parts[0] not in ('train', 'train_large', 'infer', 'latency'):
      continue
    measure, side, variant, dtype, batch = parts
    if measure == 'train_large':
      variant, batch = f'{variant}/{batch}', 'largest'
    value = r.get('images_per_second') or -r['ms']
    key = (measure, side, batch)
    if key not in best or value > best[key][1]:
      best[key] = (f'{variant}/{dtype}', value)
  out = {}
  for (measure, side, batch), (variant, value) in best.items():
    if side != 'ours' or (measure, 'timm', batch) not in best:
      continue
    timm_variant, timm_value = best[(measure, 'timm', batch)]
    ratio = value / timm_value if value > 0 else timm_value / value
    out[f'{measure}/{batch}'] = {
      'ours_best': variant,
      'timm_best': timm_variant,
      'speedup_vs_timm': round(ratio, 3),
    }
  return out


def versions() -> dict[str, str]:
  out = {'python': platform.python_version()}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'torch', 'timm'):
    try:
      out[name] = __import__(name).__version__
    except ImportError:
      out[name] = None
  return out


def run_stage(name: str, builders, report: dict, rounds: int) -> dict:
  log(f'stage {name}: building {len(builders)} cases')
  errors = report.setdefault('errors', {})
  cases = [c for n, b in builders if (c := try_build(b, errors, n))]
  log(f'stage {name}: timing {len(cases)} cases, {rounds} rounds')
  results = time_interleaved(cases, rounds)
  report.setdefault('results', {}).update(results)
  _write(report)
  return results, cases


def _write(report: dict) -> None:
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, 'w') as f:
      json.dump(report, f, indent=1)


def _apply_tiny():
  """The --tiny sizes, for every flag not given on the command line."""
  tiny = dict(
    alpha=0.25,
    resolution=32,
    batch=4,
    large_batches=['8'],
    infer_batch=4,
    rounds=2,
    steps=2,
    latency_calls=2,
    impls=['grouped_conv', 'shifted'],
    dtypes=['bfloat16'],
  )
  for name, value in tiny.items():
    if not FLAGS[name].present:
      FLAGS[name].value = value


def main(argv):
  del argv
  if FLAGS.tiny:
    _apply_tiny()
  import jax

  jax_fraction = str(FLAGS.memory_fraction)
  os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', jax_fraction)
  device = jax.devices()[0]
  no_torch = torch_available()
  report = {
    'benchmark': 'gpu_compare',
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'backend': jax.default_backend(),
    'device_kind': device.device_kind,
    'versions': versions(),
    'alpha': FLAGS.alpha,
    'resolution': FLAGS.resolution,
    'batch': FLAGS.batch,
    'rounds': FLAGS.rounds,
    'steps_per_timing': FLAGS.steps,
    'timm': no_torch or 'mobilenetv1_100',
  }
  log(f'{report["device_kind"]}: {report["versions"]}')
  bandwidth = copy_bandwidth()
  report['copy_bandwidth_gb_per_s'] = round(bandwidth / 1e9, 1)
  log(f'copy bandwidth {bandwidth / 1e9:.0f} GB/s')
  rounds = FLAGS.rounds
  train_results = {}

  if 'train' in FLAGS.stages:
    builders = [
      (
        f'ours/{impl}/{dtype}',
        functools.partial(ours_train, impl, dtype, FLAGS.batch),
      )
      for dtype in FLAGS.dtypes
      for impl in FLAGS.impls
    ]
    if not no_torch:
      builders += [
        (f'timm/{mode}', functools.partial(timm_train, mode, FLAGS.batch))
        for mode in FLAGS.torch_modes
      ]
    train_results, cases = run_stage('train', builders, report, rounds)
    if 'profile' in FLAGS.stages:
      report['profiles'] = {
        case.name: profile_case(case, train_results[case.name], bandwidth)
        for case in cases
        if case.name.startswith('train/ours/')
        and jax.default_backend() == 'gpu'
      }
      _write(report)
    del cases
    _release_memory()

  if 'large' in FLAGS.stages:
    best = dict(v.split(':') for v in FLAGS.large_variants)
    best = best or _best_of(train_results)
    builders = []
    for side, variant in best.items():
      if side == 'timm' and no_torch:
        continue
      builders.append(
        (f'large/{side}', functools.partial(_largest, side, variant, report))
      )
    run_stage('large', builders, report, rounds)
    _release_memory()

  if 'infer' in FLAGS.stages:
    builders = []
    for latency, batch in ((False, FLAGS.infer_batch), (True, 1)):
      for impl in FLAGS.impls:
        builders.append(
          (
            f'ours/{impl}/infer/b{batch}',
            functools.partial(
              ours_infer, impl, FLAGS.dtypes[0], batch, latency
            ),
          )
        )
      if not no_torch:
        modes = list(FLAGS.torch_modes)
        if latency and 'compile' in modes:
          modes.append('compile_cudagraphs')
        builders += [
          (
            f'timm/{mode}/infer/b{batch}',
            functools.partial(timm_infer, mode, batch, latency),
          )
          for mode in modes
        ]
    run_stage('infer', builders, report, rounds)
    _release_memory()

  # Last: lowering the per-layer cases first made the train step's cache
  # key differ from one process to the next, so it never loaded from the
  # persistent compilation cache.
  if 'micro' in FLAGS.stages:
    run_stage('micro', micro_cases(FLAGS.batch, FLAGS.dtypes[0]), report, 3)

  report['speedups'] = ratios(report.get('results', {}))
  _write(report)
  print(json.dumps(report))


def _best_of(train_results: dict) -> dict[str, str]:
  """The fastest bfloat16 variant of each side in the `train` stage."""
  best = {}
  for name, r in train_results.items():
    _, side, variant, dtype, _ = name.split('/')
    if dtype != 'bfloat16':
      continue
    if side not in best or r['images_per_second'] > best[side][1]:
      best[side] = (variant, r['images_per_second'])
  return {side: variant for side, (variant, _) in best.items()}


def _largest(side: str, variant: str, report: dict) -> Case:
  """The first batch of `--large_batches` that builds, for one side."""
  errors = report.setdefault('errors', {})
  for batch in map(int, FLAGS.large_batches):
    try:
      if side == 'ours':
        case = ours_train(variant, 'bfloat16', batch)
      else:
        case = timm_train(variant, batch)
      case.name = case.name.replace('train/', 'train_large/', 1)
      return case
    except Exception as e:  # noqa: BLE001 - out of memory: try smaller.
      errors[f'large/{side}/b{batch}'] = f'{type(e).__name__}: {str(e)[:300]}'
      log(f'  {side} at batch {batch} failed: {str(e)[:200]}')
      _release_memory()
  raise RuntimeError(f'no batch of {FLAGS.large_batches} fits for {side}')


def _release_memory():
  import gc

  gc.collect()
  try:
    import torch

    if torch.cuda.is_available():
      torch.cuda.empty_cache()
  except ImportError:
    pass


if __name__ == '__main__':
  app.run(main)
