"""Sweeps: expansion, dry runs, the runner end to end, and the report."""

import itertools
import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from configs import default, gpu, quickstart, tpu
from mobilenet_flax import paper, report, sweep

ROOT = pathlib.Path(__file__).resolve().parent.parent
SWEEPS = ROOT / 'configs' / 'sweeps'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# The quickstart recipe shrunk to two steps; batch 16 splits over the four
# test devices. Without warm-up, the 0.125 point's train step is the one
# test_train.py's runs compile, so the compilation cache can serve it.
TINY = [
  '--config=configs/quickstart.py',
  '--config.resolution=32',
  '--config.num_train_steps=2',
  '--config.batch_size=16',
  '--config.warmup_epochs=0',
  '--config.eval_every_steps=1000',
]
GOOD_POINTS = [{'model.alpha': 0.125}, {'model.alpha': 0.25}]
# Valid as a config, fails once main.py looks for the weights (in seconds:
# a run on synthetic data never loads TensorFlow).
FAILING_POINT = {
  'model.alpha': 0.25,
  'dataset': 'synthetic',
  'init_from': '/no_such_weights',
}
FAILING_NAME = sweep.point_name(FAILING_POINT)


def write_sweep(path, points):
  path.write_text(f'def get_sweep():\n  return {points!r}\n')
  return str(path)


def normalized(text):
  """Lines with runs of spaces collapsed, so table rows compare simply."""
  return [' '.join(line.split()) for line in text.splitlines()]


def run_module(module, *args):
  """Runs `python -m module` in the repo root. It inherits the environment
  that conftest.py sets: four CPU devices and the shared XLA compilation
  cache, so repeated compiles of a point are cache hits."""
  return subprocess.run(
    [sys.executable, '-m', module, *args],
    capture_output=True,
    text=True,
    check=False,
    cwd=ROOT,
  )


# ---- Expansion --------------------------------------------------------------


@pytest.mark.parametrize(
  'name, expected',
  [
    ('paper_table6', [(a, 224) for a in paper.ALPHAS]),
    ('paper_table7', [(1.0, r) for r in paper.RESOLUTIONS]),
    ('grid16', list(itertools.product(paper.ALPHAS, paper.RESOLUTIONS))),
  ],
)
def test_paper_sweeps_expand_to_the_paper_points(name, expected):
  points = sweep.expand(str(SWEEPS / f'{name}.py'))
  assert [
    (p.overrides['model.alpha'], p.overrides['resolution']) for p in points
  ] == (expected)
  names = [p.name for p in points]
  assert len(set(names)) == len(names) == len(expected)
  assert names[0] == f'alpha_{expected[0][0]}_res_{expected[0][1]}'


def test_point_names_are_readable_and_safe():
  assert sweep.point_name({'model.alpha': 0.75, 'resolution': 192}) == (
    'alpha_0.75_res_192'
  )
  assert sweep.point_name({'model.alpha': 1.0, 'optimizer': 'momentum'}) == (
    'alpha_1.0_optimizer_momentum'
  )
  assert sweep.point_name({'dataset': 'imagenette/full-size-v2'}) == (
    'dataset_imagenette-full-size-v2'
  )


@pytest.mark.parametrize('config_module', [default, quickstart, tpu, gpu])
def test_every_sweep_file_validates(config_module):
  for path in sorted(SWEEPS.glob('*.py')):
    points = sweep.expand(str(path))
    sweep.resolve(points, config_module.get_config(), {})
    assert all(p.alpha and p.resolution for p in points), path


def test_bad_sweep_files_are_clear_errors(tmp_path):
  with pytest.raises(sweep.SweepError, match='repeats'):
    sweep.expand(write_sweep(tmp_path / 'twice.py', [{'model.alpha': 0.5}] * 2))
  with pytest.raises(sweep.SweepError, match='non-empty list'):
    sweep.expand(write_sweep(tmp_path / 'empty.py', []))
  (tmp_path / 'none.py').write_text('POINTS = []\n')
  with pytest.raises(sweep.SweepError, match='defines no get_sweep'):
    sweep.expand(str(tmp_path / 'none.py'))
  with pytest.raises(sweep.SweepError, match='No sweep file'):
    sweep.expand(str(tmp_path / 'absent.py'))


def test_invalid_points_are_all_reported_before_running():
  points = [
    sweep.Point('ok', {'model.alpha': 0.5}),
    sweep.Point('zero', {'model.alpha': 0.0}),
    sweep.Point('tiny', {'resolution': 16}),
    sweep.Point('typo', {'widht': 1}),
  ]
  with pytest.raises(sweep.SweepError) as error:
    sweep.resolve(points, quickstart.get_config(), {'model.alpha': 0.25})
  message = str(error.value)
  assert (
    "The sweep sets ['model.alpha'] for each point; drop "
    '--config.model.alpha' in message
  )
  assert 'Point zero: Invalid config' in message
  assert 'alpha must be in (0, 4], got 0.0.' in message
  assert 'Point tiny: Invalid config' in message
  assert "Point typo: 'widht' is not a field of the config." in message
  assert 'Point ok' not in message


def test_dry_run_prints_every_main_py_command(tmp_path):
  workdir = tmp_path / 'grid'
  result = run_module(
    'mobilenet_flax.sweep',
    '--sweep=configs/sweeps/grid16.py',
    '--config=configs/tpu.py',
    f'--workdir={workdir}',
    '--config.num_train_steps=50',
    '--config.data_dir=/data/tfds',
    '--python=python3',
    '--dry_run',
  )
  assert result.returncode == 0, result.stderr
  commands = [shlex.split(line) for line in result.stdout.splitlines()]
  assert len(commands) == 16
  for command, (alpha, res) in zip(
    commands, itertools.product(paper.ALPHAS, paper.RESOLUTIONS), strict=True
  ):
    assert command == [
      'python3',
      'main.py',
      '--config=configs/tpu.py',
      f'--workdir={workdir}/alpha_{alpha}_res_{res}',
      '--config.num_train_steps=50',
      '--config.data_dir=/data/tfds',
      f'--config.model.alpha={alpha}',
      f'--config.resolution={res}',
    ]
  assert not workdir.exists()


def test_invalid_sweep_runs_nothing(tmp_path):
  workdir = tmp_path / 'sweep'
  path = write_sweep(
    tmp_path / 'bad.py', [{'model.alpha': 0.5}, {'model.alpha': 5.0}]
  )
  result = run_module(
    'mobilenet_flax.sweep',
    f'--sweep={path}',
    '--config=configs/quickstart.py',
    f'--workdir={workdir}',
  )
  assert result.returncode == 1
  assert 'Point alpha_5.0: Invalid config' in result.stderr
  assert not workdir.exists()


# ---- The runner on stand-in commands -----------------------------------------


def fake_point(name, script, tmp_path):
  """A point whose command is a small Python script instead of main.py; the
  script sees its point directory as `point_dir`."""
  point_dir = tmp_path / 'runs' / name
  code = f'point_dir = {str(point_dir)!r}\n' + script
  return sweep.Point(name, {}, command=[sys.executable, '-c', code])


WRITE_COMPLETED = """
import json, os
os.makedirs(point_dir, exist_ok=True)
with open(os.path.join(point_dir, 'results.json'), 'w') as f:
  json.dump({'status': 'completed', 'eval': {'top1': 0.5}}, f)
"""


def test_runner_control_flow(tmp_path, capsys):
  points = [
    fake_point('a', WRITE_COMPLETED, tmp_path),
    fake_point('b', 'import sys; print("boom"); sys.exit(3)', tmp_path),
    # Hosts other than the first of a multi-host run exit cleanly without
    # writing results.json.
    fake_point('c', 'pass', tmp_path),
  ]
  workdir = str(tmp_path / 'runs')
  assert not sweep.run_sweep(points, workdir, workdir, {})
  assert [(p.status, p.returncode) for p in points] == [
    ('completed', 0),
    ('failed', 3),
    ('completed', 0),
  ]
  out = capsys.readouterr().out
  assert re.search(r'\[1/3\] a: completed in \d+ s, top-1 50.00%', out)
  assert '[2/3] b: FAILED (exit 3)' in out and '    boom' in out
  record = json.loads((tmp_path / 'runs' / 'sweep.json').read_text())
  assert [p['status'] for p in record['points']] == [
    'completed',
    'failed',
    'completed',
  ]
  # Run again: 'a' is skipped, the rest run again.
  points = [fake_point(n, 'pass', tmp_path) for n in 'abc']
  assert sweep.run_sweep(points, workdir, workdir, {})
  assert [p.skipped for p in points] == [True, False, False]


def test_sigterm_stops_the_sweep_after_the_point_checkpoints(tmp_path):
  # The point asks for SIGTERM to be sent to the runner (this process),
  # which must pass it on and wait for the point to save and exit.
  preempted = """
import json, os, signal, sys, time
def stop(signum, frame):
  os.makedirs(point_dir, exist_ok=True)
  with open(os.path.join(point_dir, 'results.json'), 'w') as f:
    json.dump({'status': 'preempted', 'eval': {}}, f)
  sys.exit(0)
signal.signal(signal.SIGTERM, stop)
os.kill(os.getppid(), signal.SIGTERM)
time.sleep(60)
"""
  points = [
    fake_point('a', preempted, tmp_path),
    fake_point('b', WRITE_COMPLETED, tmp_path),
  ]
  workdir = str(tmp_path / 'runs')
  assert not sweep.run_sweep(points, workdir, workdir, {})
  assert [p.status for p in points] == ['preempted', 'pending']
  assert points[0].seconds < 30


# ---- The runner end to end ---------------------------------------------------


@pytest.fixture(scope='module')
def swept(tmp_path_factory):
  """Runs a three-point sweep whose middle point fails; returns the
  workdir, the sweep file's path and the runner's CompletedProcess."""
  tmp = tmp_path_factory.mktemp('sweep')
  data_dir = tmp_path_factory.mktemp('tfds')
  points = [GOOD_POINTS[0], FAILING_POINT, GOOD_POINTS[1]]
  args = [
    f'--sweep={write_sweep(tmp / "tiny.py", points)}',
    f'--workdir={tmp / "runs"}',
    *TINY,
    f'--config.data_dir={data_dir}',
  ]
  return tmp / 'runs', args, run_module('mobilenet_flax.sweep', *args)


def test_runner_runs_every_point_and_reports_the_failure(swept):
  workdir, _, result = swept
  assert result.returncode == 1, result.stdout + result.stderr
  out = result.stdout
  assert '[1/3] alpha_0.125: completed in' in out
  assert f'[2/3] {FAILING_NAME}: FAILED (exit 1)' in out
  # The failure's cause, from the end of its log, is on the console.
  assert '/no_such_weights' in out.split('FAILED')[1].split('[3/3]')[0]
  assert '[3/3] alpha_0.25: completed in' in out
  assert '1 of 3 points did not complete' in result.stderr
  record = json.loads((workdir / 'sweep.json').read_text())
  assert [(p['name'], p['status']) for p in record['points']] == [
    ('alpha_0.125', 'completed'),
    (FAILING_NAME, 'failed'),
    ('alpha_0.25', 'completed'),
  ]
  assert record['config'] == 'configs/quickstart.py'
  assert record['config_overrides']['num_train_steps'] == '2'


def test_each_point_runs_the_printed_command_in_its_own_workdir(swept):
  workdir, _, _ = swept
  for overrides in GOOD_POINTS:
    point_dir = workdir / sweep.point_name(overrides)
    results = json.loads((point_dir / 'results.json').read_text())
    assert results['status'] == 'completed'
    assert results['step'] == 2
    assert results['model'] == {
      'alpha': overrides['model.alpha'],
      'resolution': 32,
      'num_classes': 10,
    }
    log = (point_dir / 'log.txt').read_text()
    line = log.splitlines()[1]
    assert f'--config.model.alpha={overrides["model.alpha"]}' in line


def test_report_on_the_sweep(swept, tmp_path):
  workdir, _, _ = swept
  result = run_module(
    'mobilenet_flax.report', f'--workdir={workdir}', f'--output_dir={tmp_path}'
  )
  assert result.returncode == 0, result.stderr
  text = (tmp_path / 'report.md').read_text()
  assert text in result.stdout
  assert 'quickstart data (digits), NOT ImageNet' in text.splitlines()[2]
  lines = normalized(text)
  for name, status in [
    ('alpha_0.125', 'completed'),
    (FAILING_NAME, 'failed'),
    ('alpha_0.25', 'completed'),
  ]:
    assert any(
      line.startswith(f'| {name} |') and line.endswith(f'| {status} |')
      for line in lines
    ), name
  # The paper's rows stay, marked missing: these runs are at 32 pixels.
  assert (
    '| 1.0 MobileNet-224 | missing | 70.6 | - | - | 569 | - | 4.2 |' in lines
  )
  for name in (report.MULT_ADDS_PNG, report.PARAMS_PNG):
    png = (tmp_path / name).read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    assert f'Wrote {tmp_path / name}' in result.stdout


def test_rerun_skips_finished_points(swept, tmp_path):
  workdir, args, _ = swept
  logs = {
    name: (workdir / name / 'log.txt').read_text()
    for name in map(sweep.point_name, GOOD_POINTS)
  }
  args = [a for a in args if not a.startswith('--sweep=')]
  good = write_sweep(tmp_path / 'good.py', GOOD_POINTS)
  result = run_module('mobilenet_flax.sweep', f'--sweep={good}', *args)
  assert result.returncode == 0, result.stdout + result.stderr
  assert '[1/2] alpha_0.125: already completed' in result.stdout
  assert '[2/2] alpha_0.25: already completed' in result.stdout
  assert 'NOTE' not in result.stdout
  for name, log in logs.items():
    assert (workdir / name / 'log.txt').read_text() == log
  # The failed point of the earlier sweep stays on record for the report.
  record = json.loads((workdir / 'sweep.json').read_text())
  assert [p['status'] for p in record['points']] == [
    'completed',
    'completed',
    'failed',
  ]


# ---- The report on hand-made results ----------------------------------------


def fake_results(alpha, resolution, top1, dataset='imagenet2012'):
  return {
    'status': 'completed',
    'step': 100,
    'num_train_steps': 100,
    'epochs': 1.0,
    'model': {'alpha': alpha, 'resolution': resolution, 'num_classes': 1000},
    'params': 4_231_976,
    'batch_stats': 21_888,
    'mult_adds': 568_740_352,
    'eval': {
      'loss': 1.0,
      'top1': top1 - 0.01,
      'top5': 0.9,
      'examples': 50_000,
      'ema_top1': top1,
      'ema_top5': 0.895,
      'ema_examples': 50_000,
    },
    'dataset': dataset,
    'eval_split': 'validation',
    'wall_time_seconds': 12.0,
  }


def make_workdir(path, results, statuses):
  """A sweep directory: `results` {name: results.json}, `statuses`
  {name: (alpha, resolution, status)} for sweep.json."""
  for name, data in results.items():
    (path / name).mkdir(parents=True)
    (path / name / 'results.json').write_text(json.dumps(data))
  points = [
    {
      'name': n,
      'alpha': a,
      'resolution': r,
      'status': s,
      'dataset': 'imagenet2012',
    }
    for n, (a, r, s) in statuses.items()
  ]
  (path / 'sweep.json').write_text(json.dumps({'points': points}))
  return str(path)


def test_report_shows_missing_and_failed_points(tmp_path):
  workdir = make_workdir(
    tmp_path,
    {'alpha_1.0_res_224': fake_results(1.0, 224, 0.700)},
    {
      'alpha_1.0_res_224': (1.0, 224, 'completed'),
      'alpha_0.5_res_224': (0.5, 224, 'pending'),
      'alpha_0.25_res_224': (0.25, 224, 'failed'),
    },
  )
  text = report.write_report(workdir)['markdown']
  assert 'NOT ImageNet' not in text
  assert (
    '2 completed' not in text and '1 completed, 1 failed, 1 missing' in text
  )
  lines = normalized(text)
  # Table 6: ours (EMA), the paper's, the difference; exact counts beside.
  assert (
    '| 1.0 MobileNet-224 | 70.0 | 70.6 | -0.6 | 569 | 569 | 4.23 | 4.2 |'
    in (lines)
  )
  assert (
    '| 0.5 MobileNet-224 | missing | 63.7 | - | - | 149 | - | 1.3 |' in lines
  )
  assert (
    '| 0.25 MobileNet-224 | failed | 50.6 | - | - | 41 | - | 0.5 |' in lines
  )
  assert any(
    line.startswith('| alpha_0.5_res_224 |') and line.endswith('| missing |')
    for line in lines
  )
  # Released grid: top-1 and top-5 against TF-slim's.
  assert any(
    line.startswith('| 1.0 MobileNet-224 | 70.0 | 70.9 | -0.9 | 89.5 | 89.9 |')
    for line in lines
  )
  assert 'EMA weights' in text
  for name in (report.MULT_ADDS_PNG, report.PARAMS_PNG):
    assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_report_without_sweep_json_and_raw_weights(tmp_path):
  raw = fake_results(0.5, 160, 0.6, dataset='imagenette/full-size-v2')
  raw['eval'] = {'top1': 0.6, 'top5': 0.9, 'examples': 3925}
  (tmp_path / 'a').mkdir()
  (tmp_path / 'a' / 'results.json').write_text(json.dumps(raw))
  text = report.write_report(str(tmp_path))['markdown']
  assert 'imagenette/full-size-v2 data, NOT ImageNet' in text
  assert 'raw weights' in text and 'EMA' not in text
  assert any(
    line.startswith('| a ') and '60.00' in line for line in text.splitlines()
  )
