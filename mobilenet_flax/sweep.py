r"""Runs a sweep declared in configs/sweeps/: one training run per point.

  python -m mobilenet_flax.sweep --sweep=configs/sweeps/grid16.py \
      --config=configs/quickstart.py --workdir=runs/grid16
  python -m mobilenet_flax.report --workdir=runs/grid16

A sweep file defines `get_sweep()`, a list of config overrides, one dict per
point (e.g. `{'alpha': 0.5, 'resolution': 160}`). Every point trains as its
own `main.py` process in `<workdir>/<point name>/`, with its output in
`log.txt` there (each try headed by its exact command). Overrides of the
base config given here (`--config.num_train_steps=50`) apply to every
point.

Every point's config is validated before anything runs. Points whose
`results.json` says 'completed' are skipped; others start, or resume from
their checkpoints (main.py does that on its own). A failed point is
reported and the sweep goes on; the exit status is non-zero if any failed.
`<workdir>/sweep.json` records the points and how each ended, for the report.

On a multi-host TPU slice, run the same sweep command on every host with a
gs:// workdir; logs then go to `--logdir` on each host.

`--dry_run` prints each point's `main.py` command and runs nothing: the
commands to launch elsewhere, one job per point. They name main.py and the
config file relative to the current directory.
"""

import collections
import copy
import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags
from etils import epath
from ml_collections import config_flags

from mobilenet_flax import cli, config_lib, errors, paper, run_files

MAIN_PY = pathlib.Path(__file__).resolve().parent.parent / 'main.py'
LOG_TXT = 'log.txt'
# Short names for the fields that make up point names.
_NAME_KEYS = {'model.alpha': 'alpha', 'resolution': 'res'}
_LOG_LINES_ON_FAILURE = 8


class SweepError(errors.Error, ValueError):
  """A sweep that cannot start: a bad sweep file or an invalid point."""


@dataclasses.dataclass
class Point:
  """One run of a sweep and, once run, how it ended."""

  name: str
  overrides: dict[str, Any]
  command: list[str] = dataclasses.field(default_factory=list)
  alpha: float | None = None
  resolution: int | None = None
  dataset: str | None = None
  # 'pending', 'running', 'completed', 'failed' or 'preempted'.
  status: str = 'pending'
  returncode: int | None = None
  seconds: float | None = None
  skipped: bool = False
  # The point's full config, as JSON values.
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out['command'] = shlex.join(self.command)
    del out['config']
    return out


# ---- Expanding a sweep file into points -----------------------------------


def load_sweep(path: str) -> list[dict[str, Any]]:
  """Calls `get_sweep()` of the sweep file at `path`."""
  if not os.path.isfile(path):
    raise SweepError(f'No sweep file at {path!r}.')
  spec = importlib.util.spec_from_file_location(
    f'sweep_{pathlib.Path(path).stem}', path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise SweepError(f'{path} defines no get_sweep().')
  overrides = module.get_sweep()
  if not overrides or not all(isinstance(o, dict) and o for o in overrides):
    raise SweepError(
      f'get_sweep() in {path} must return a non-empty list of non-empty '
      f'dicts of config overrides, got {overrides!r}.'
    )
  return overrides


def point_name(overrides: dict[str, Any]) -> str:
  """A readable, stable directory name, e.g. 'alpha_0.75_res_192'."""
  parts = [
    f'{_NAME_KEYS.get(key, key)}_{format_value(value)}'
    for key, value in overrides.items()
  ]
  return re.sub(r'[^A-Za-z0-9._=-]+', '-', '_'.join(parts))


def format_value(value: Any) -> str:
  """`value` as ml_collections parses it back from `--config.k=...`."""
  return value if isinstance(value, str) else repr(value)


def expand(sweep_path: str) -> list[Point]:
  """The points of a sweep file, with unique names."""
  points = [Point(point_name(o), dict(o)) for o in load_sweep(sweep_path)]
  names = [p.name for p in points]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise SweepError(f'{sweep_path} repeats the points {duplicates}.')
  return points


# ---- Checking every point before running any --------------------------------


def resolve(
  points: Sequence[Point],
  base: ml_collections.ConfigDict,
  user_overrides: dict[str, Any],
) -> None:
  """Validates each point's config; fills in its alpha, resolution, dataset.

  Raises:
    SweepError: listing every point whose config is invalid, and any field
      that the command line and the sweep both set.
  """
  problems = []
  swept = sorted({k for p in points for k in p.overrides})
  clash = sorted(set(swept) & set(user_overrides))
  if clash:
    problems.append(
      f'The sweep sets {clash} for each point; drop '
      + ' '.join(f'--config.{k}' for k in clash)
      + ' from the command line.'
    )
  # One message per distinct problem, not one per point: a bad base config
  # would otherwise repeat it for every point.
  failing = collections.defaultdict(list)
  for point in points:
    try:
      config = apply_overrides(base, point.overrides)
      config_lib.validate(config)
    except (config_lib.ConfigError, SweepError, TypeError) as e:
      failing[str(e)].append(point.name)
      continue
    point.alpha = config.model.alpha
    point.resolution = config.resolution
    point.dataset = config.dataset
    point.config = json.loads(config.to_json_best_effort())
  for message, names in failing.items():
    which = (
      f'All {len(points)} points'
      if len(names) == len(points)
      else f'Point{"s" * (len(names) > 1)} {", ".join(names)}'
    )
    problems.append(f'{which}: {message}')
  if problems:
    raise SweepError(
      'The sweep cannot start.\n'
      + '\n'.join(textwrap.indent(p, '  ') for p in problems)
    )


def apply_overrides(
  base: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `base` with `overrides` set, as main.py would set them;
  keys may be dotted paths into nested blocks (`model.alpha`)."""
  config = copy.deepcopy(base)
  for key, value in overrides.items():
    *parents, field = key.split('.')
    block = config
    for parent in parents:
      block = block.get(parent) if parent in block else None
      if not isinstance(block, ml_collections.ConfigDict):
        break
    if not isinstance(block, ml_collections.ConfigDict) or field not in block:
      raise SweepError(f'{key!r} is not a field of the config.')
    block[field] = value
  return config


def main_py_path() -> str:
  """main.py as a path relative to the current directory where it can be."""
  path = os.path.relpath(MAIN_PY)
  return path if not path.startswith('..') else str(MAIN_PY)


def build_commands(
  points: Sequence[Point],
  *,
  python: str,
  config_file: str,
  user_overrides: dict[str, Any],
  workdir: str,
) -> None:
  """Sets each point's `main.py` command line."""
  user_flags = [
    f'--config.{k}={format_value(v)}' for k, v in user_overrides.items()
  ]
  # main.py's checkpointer (orbax) takes only absolute local paths; URLs
  # such as gs://... stay as they are.
  if not is_url(workdir):
    workdir = os.path.abspath(workdir)
  for point in points:
    point.command = [
      python,
      main_py_path(),
      f'--config={config_file}',
      f'--workdir={os.path.join(workdir, point.name)}',
      *user_flags,
      *(f'--config.{k}={format_value(v)}' for k, v in point.overrides.items()),
    ]


# ---- Running ----------------------------------------------------------------


def is_url(path: str) -> bool:
  return '://' in path


class _Stopper:
  """Passes SIGTERM on to the running point, so that it checkpoints, and
  stops the sweep once that point has exited."""

  def __init__(self):
    self.process = None
    self.stopping = False

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.stopping = True
    if self.process is not None and self.process.poll() is None:
      self.process.send_signal(signum)

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)


def run_point(
  point: Point, point_dir: str, log_path: str, stopper: _Stopper
) -> None:
  """Runs `point.command` to its end and sets the point's status."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  start = time.time()
  # Appending keeps the output of earlier, interrupted tries.
  with open(log_path, 'a') as log:
    log.write(
      f'\n==== {time.strftime("%Y-%m-%d %H:%M:%S")} '
      f'{shlex.join(point.command)}\n'
    )
    log.flush()
    stopper.process = subprocess.Popen(
      point.command, stdout=log, stderr=subprocess.STDOUT
    )
    point.returncode = stopper.process.wait()
    stopper.process = None
  point.seconds = time.time() - start
  if point.returncode == cli.EXIT_PREEMPTED:
    point.status = 'preempted'
  elif point.returncode != 0:
    point.status = 'failed'
  else:
    # Only process 0 of a multi-host run writes results.json, possibly a
    # moment after the other hosts' processes have exited: a clean exit
    # without it is a completed point.
    results = run_files.read_results(point_dir) or {}
    point.status = results.get('status', 'completed')


def log_tail(log_path: str, lines: int = _LOG_LINES_ON_FAILURE) -> str:
  """The last lines of a point's log, indented for the console."""
  try:
    with open(log_path) as log:
      tail = log.read().splitlines()[-lines:]
  except OSError:
    return ''
  return '\n'.join(f'    {line}' for line in tail)


def describe(
  point: Point, results: dict[str, Any] | None, log_path: str = ''
) -> str:
  """How a point ended, for its progress line."""
  top1 = run_files.top_k_percent(results, 1, run_files.metric_prefix([results]))
  accuracy = '' if top1 is None else f', top-1 {top1:.2f}%'
  if point.skipped:
    changed = changed_fields(point.config, results.get('config') or {})
    note = (
      f'; NOTE: it ran with other settings ({changed}); delete its '
      'directory to run it again'
      if changed
      else ''
    )
    return f'already completed{accuracy}; skipped{note}'
  if point.status == 'completed':
    return f'completed in {point.seconds:.0f} s{accuracy}'
  if point.status == 'preempted':
    return 'stopped after a checkpoint (SIGTERM); rerun the sweep to resume'
  return (
    f'FAILED (exit {point.returncode}) after {point.seconds:.0f} s; the '
    f'end of {log_path}:\n{log_tail(log_path)}'
  )


def changed_fields(config: dict[str, Any], earlier: dict[str, Any]) -> str:
  """The fields where an earlier run's config differs, as 'k: old -> new'."""
  changed = [
    f'{k}: {earlier.get(k)!r} -> {v!r}'
    for k, v in config.items()
    if k in earlier and earlier[k] != v
  ]
  return ', '.join(changed)


def earlier_points(
  workdir: str, points: Sequence[Point]
) -> list[dict[str, Any]]:
  """Points that sweep.json lists from earlier sweeps in the same workdir
  but this sweep lacks; kept so that the report still shows them."""
  names = {p.name for p in points}
  recorded = run_files.read_sweep(workdir).get('points', [])
  return [p for p in recorded if p['name'] not in names]


def summary(points: Sequence[Point], workdir: str) -> str:
  """A table of every point: status, top-1 and training time. Top-1 is the
  EMA weights' when every completed point has them (as in the report)."""
  results = {
    p.name: run_files.read_results(epath.Path(workdir) / p.name) for p in points
  }
  prefix = run_files.metric_prefix(results.values())
  rows = []
  for point in points:
    top1 = run_files.top_k_percent(results[point.name], 1, prefix)
    # The run's own training time, as in the report; for a failed point,
    # the time until it failed.
    seconds = (results[point.name] or {}).get(
      'wall_time_seconds', point.seconds
    )
    status = point.status + (' (earlier run)' if point.skipped else '')
    rows.append(
      [
        point.name,
        status,
        '-' if top1 is None else f'{top1:.2f}',
        '-' if seconds is None else f'{seconds:.0f}',
      ]
    )
  label = 'Top-1 (%, EMA)' if prefix else 'Top-1 (%)'
  return paper.markdown_table(
    ['Point', 'Status', label, 'Training time (s)'], rows
  )


def run_sweep(
  points: Sequence[Point],
  workdir: str,
  logdir: str,
  header: dict[str, Any],
) -> bool:
  """Runs the points in order; True if every point completed.

  On a multi-host slice every host runs the same sweep: all of them see the
  same results.json files in the shared workdir, so they skip and start the
  same points, and each point's main.py processes meet as one JAX cluster.
  """
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  earlier = earlier_points(workdir, points)

  def save():
    current = [p.to_json() for p in points]
    run_files.write_sweep(workdir, {**header, 'points': current + earlier})

  save()
  with _Stopper() as stopper:
    for index, point in enumerate(points, start=1):
      if stopper.stopping:
        # SIGTERM: the machine is going away, so start no more points.
        break
      point_dir = str(epath.Path(workdir) / point.name)
      log_path = os.path.join(logdir, point.name, LOG_TXT)
      prefix = f'[{index}/{len(points)}] {point.name}:'
      results = run_files.read_results(point_dir)
      if run_files.is_completed(results):
        point.status, point.skipped = 'completed', True
        print(f'{prefix} {describe(point, results)}', flush=True)
        continue
      print(f'{prefix} running (log: {log_path})', flush=True)
      point.status = 'running'
      save()
      run_point(point, point_dir, log_path, stopper)
      save()
      results = run_files.read_results(point_dir)
      print(f'{prefix} {describe(point, results, log_path)}', flush=True)
  save()
  print(f'\n{summary(points, workdir)}\n', flush=True)
  return all(p.status == 'completed' for p in points)


# ---- Command line -----------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program, so importing this
  module never claims flag names."""
  flags.DEFINE_string('sweep', None, 'Sweep file, e.g. configs/sweeps/x.py.')
  config_flags.DEFINE_config_file(
    'config',
    None,
    'Base config file of every point, e.g. configs/tpu.py; '
    '--config.<field>=<value> overrides apply to every point.',
    lock_config=True,
  )
  flags.DEFINE_string(
    'workdir',
    None,
    'Sweep directory (local, or gs://... for a multi-host slice); each '
    'point runs in a sub-directory.',
  )
  flags.DEFINE_string(
    'logdir',
    None,
    "Local directory for the points' log.txt files; default: the "
    'workdir, or ./sweep_logs when the workdir is a URL.',
  )
  flags.DEFINE_bool(
    'dry_run', False, "Print every point's main.py command; run nothing."
  )
  flags.DEFINE_string(
    'python', sys.executable, 'Python interpreter for the main.py commands.'
  )
  flags.mark_flags_as_required(['sweep', 'config', 'workdir'])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  config_file = config_flags.get_config_filename(FLAGS['config'])
  user_overrides = config_flags.get_override_values(FLAGS['config'])
  points = expand(FLAGS.sweep)
  resolve(points, FLAGS.config, user_overrides)
  build_commands(
    points,
    python=FLAGS.python,
    config_file=config_file,
    user_overrides=user_overrides,
    workdir=FLAGS.workdir,
  )
  if FLAGS.dry_run:
    for point in points:
      print(shlex.join(point.command))
    return
  header = {
    'sweep': FLAGS.sweep,
    'config': config_file,
    'config_overrides': {k: format_value(v) for k, v in user_overrides.items()},
  }
  logdir = FLAGS.logdir or (
    'sweep_logs' if is_url(FLAGS.workdir) else FLAGS.workdir
  )
  if not run_sweep(points, FLAGS.workdir, logdir, header):
    unfinished = [p.name for p in points if p.status != 'completed']
    print(
      f'{len(unfinished)} of {len(points)} points did not complete: '
      f'{", ".join(unfinished)}. Rerun the same command to retry them; '
      'completed points are skipped.',
      file=sys.stderr,
    )
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  cli.run(main, config_flags=('config', 'sweep'))
