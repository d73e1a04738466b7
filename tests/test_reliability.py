"""Failure modes, tried as a user would meet them.

Two runs on one workdir, a lock left by kill -9, damaged checkpoints, a
full disk, NaN, bad command lines, training time across segments, and
SIGTERM's exit status. The command-line cases run main.py itself, so that
what is checked is what a user sees: the exit status and one `error:` line.

Everything trains a tiny model (alpha 0.125 at 32x32) on synthetic batches,
for a few steps; one trained workdir is shared by the tests that only need
checkpoints to exist (copied before anything damages it).
"""

import functools
import glob
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

import jax
import numpy as np
import pytest

from configs import quickstart
from mobilenet_flax import (
  checkpoints,
  cli,
  config_lib,
  errors,
  optim,
  run_files,
  steps,
  sweep,
  synthetic,
  train,
)
from tests import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What every run here uses, in-process and on main.py's command line alike,
# so that they compile the same train step (the persistent compilation
# cache then serves all but the first).
TINY = {
  'dataset': 'synthetic',
  'batch_size': 8,
  'warmup_epochs': 0.0,
  'log_every_steps': 1,
  'eval_every_steps': 1000,
  'checkpoint_every_steps': 2,
}
TINY_FLAGS = [
  '--config=configs/quickstart.py:alpha=0.125,res=32',
  *(f'--config.{k}={v}' for k, v in TINY.items()),
]
# synthetic's eval split has 50,000 examples; in-process runs score two
# batches instead.
TINY_DATA = types.SimpleNamespace(
  get_dataset_info=synthetic.get_dataset_info,
  create_train_dataset=synthetic.create_train_dataset,
  create_eval_dataset=lambda config, *, batch_size, **_: (
    [synthetic.random_batch(batch_size, config.resolution, seed=1)] * 2,
    2,
  ),
)
TIMEOUT = 300
# main.py runs on one CPU device: these runs overlap the test process's own
# work, and XLA's CPU collectives abort when a device's thread misses their
# 40-second rendezvous on a busy machine. Nothing here needs several
# devices; compiled with the suite's flags (conftest.py).
ONE_DEVICE_ENV = {
  **os.environ,
  'XLA_FLAGS': xla_flags.for_devices(1),
}


def tiny_config(**overrides):
  config = quickstart.get_config('alpha=0.125,res=32')
  for key, value in {**TINY, **overrides}.items():
    config[key] = value
  return config


def main_py(workdir, *flags, wait=True):
  """Runs main.py on `workdir`: the finished process (`.out` holds its
  output), or the running one when `wait` is False (then `finish` it)."""
  log = tempfile.NamedTemporaryFile('w+', suffix='.log')  # noqa: SIM115
  proc = subprocess.Popen(
    [sys.executable, 'main.py', *TINY_FLAGS, f'--workdir={workdir}', *flags],
    cwd=ROOT,
    env=ONE_DEVICE_ENV,
    # A file, not a pipe: a run nobody reads yet must not stall on it.
    stdout=log,
    stderr=subprocess.STDOUT,
  )
  proc.log = log
  if wait:
    finish(proc)
  return proc


def finish(proc):
  try:
    proc.wait(timeout=TIMEOUT)
  finally:
    proc.kill()
  proc.log.seek(0)
  proc.out = proc.log.read()
  return proc


def error_lines(output):
  return [line for line in output.splitlines() if line.startswith('error:')]


def assert_one_error_line(proc, *fragments):
  assert proc.returncode == 1, proc.out[-3000:]
  lines = error_lines(proc.out)
  assert len(lines) == 1, proc.out[-3000:]
  assert 'Traceback' not in proc.out, proc.out[-3000:]
  # The message's first line and its indented continuation lines.
  tail = proc.out[proc.out.index(lines[0]) :]
  for fragment in fragments:
    assert fragment in tail, tail
  return tail


def wait_for(predicate, proc, what):
  deadline = time.time() + TIMEOUT
  while not predicate():
    if proc.poll() is not None:
      finish(proc)
      pytest.fail(f'main.py exited before {what}:\n{proc.out[-3000:]}')
    if time.time() > deadline:
      proc.kill()
      finish(proc)
      pytest.fail(f'no {what} after {TIMEOUT} s:\n{proc.out[-3000:]}')
    time.sleep(0.1)


@pytest.fixture(scope='module')
def tmpfs(tmp_path_factory):
  """Mounts a tmpfs (a small or read-only disk): `tmpfs(size, read_only)`
  returns its path, or a reason why it cannot (not root, no mount)."""
  mounted = []

  def mount(size, read_only=False):
    if os.geteuid() != 0:
      return 'mounting a tmpfs (a full or read-only disk) needs root'
    path = tmp_path_factory.mktemp('tmpfs')
    options = f'size={size}' + (',ro' if read_only else '')
    done = subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
      capture_output=True,
      text=True,
    )
    if done.returncode:
      return f'cannot mount a tmpfs here: {done.stderr.strip()}'
    mounted.append(path)
    return path

  try:
    yield mount
  finally:
    for path in mounted:
      subprocess.run(['umount', '-l', str(path)], check=False)


def mounted(path_or_reason):
  if isinstance(path_or_reason, str):
    pytest.skip(path_or_reason)
  return path_or_reason


def _contest(a, record):
  """Starts run B on run A's workdir once A holds it (while A compiles);
  SIGTERMs A after its first checkpoint. Fills `record`: 'b', 'a'."""
  lock_file = os.path.join(a.workdir, run_files.LOCK_FILE)

  def a_holds_the_lock():
    try:
      with open(lock_file) as f:
        return json.load(f)['pid'] == a.pid
    except (OSError, ValueError, KeyError):
      return False

  try:
    wait_for(a_holds_the_lock, a, 'the lock')
    record['b'] = main_py(a.workdir, '--config.num_train_steps=100000')
    wait_for(
      lambda: os.path.isdir(os.path.join(a.workdir, 'checkpoints', '2')),
      a,
      'the first checkpoint',
    )
    a.send_signal(signal.SIGTERM)
    record['a'] = finish(a)
  except BaseException as e:  # Re-raised by the tests that need the runs.
    record['error'] = e


def _start_after_first_checkpoint(a, start):
  """Calls `start` (which starts a run) in a thread once run A has saved
  its first checkpoint, or has ended: A has then compiled the train step
  both use, and the started run loads it from the compilation cache
  instead of compiling it beside A. Returns a function that waits for the
  thread and returns the started run."""
  first = os.path.join(a.workdir, 'checkpoints', '2')
  started = {}

  def run():
    deadline = time.time() + TIMEOUT
    while (
      not os.path.isdir(first) and a.poll() is None and time.time() < deadline
    ):
      time.sleep(0.1)
    started['run'] = start()

  thread = threading.Thread(target=run, daemon=True)
  thread.start()

  def get():
    thread.join(TIMEOUT)
    return started['run']

  return get


@pytest.fixture(scope='module', autouse=True)
def launched(tmp_path_factory, tmpfs):
  """The main.py runs of this module, started before its first test so
  that they run beside the in-process tests (their start-up, imports and
  compiling, is most of their time); the tests at the end of the file
  finish them and check what they did.

  'contested': run A, on whose workdir run B is started, then SIGTERM (in
  a thread, `_contest`); 'full_disk': a function returning a run on a
  tmpfs with room for two checkpoints, started once A has compiled;
  'read_only': a run on a read-only tmpfs; 'typo': a
  mistyped override. Where no tmpfs can be mounted, the value is the
  reason, and the test skips.
  """
  root = tmp_path_factory.mktemp('launched')
  runs = {
    'contested': main_py(
      root / 'contested', '--config.num_train_steps=100000', wait=False
    ),
    'typo': main_py(root / 'typo', '--config.alpah=0.5', wait=False),
  }
  runs['contested'].workdir = str(root / 'contested')
  # Room for two checkpoints (about 2.5 MB each) and not a third.
  full = tmpfs('6m')
  runs['full_disk'] = full
  if not isinstance(full, str):

    def full_disk():
      proc = main_py(
        full / 'run',
        '--config.num_train_steps=100000',
        '--config.checkpoint_every_steps=10',
        wait=False,
      )
      proc.workdir = str(full / 'run')
      return proc

    runs['full_disk'] = _start_after_first_checkpoint(
      runs['contested'], full_disk
    )
  read_only = tmpfs('1m', read_only=True)
  runs['read_only'] = read_only
  if not isinstance(read_only, str):
    runs['read_only'] = main_py(
      read_only, '--config.num_train_steps=2', wait=False
    )
    runs['read_only'].workdir = str(read_only)
  runs['contest'] = {}
  runs['contest_thread'] = threading.Thread(
    target=_contest, args=(runs['contested'], runs['contest']), daemon=True
  )
  runs['contest_thread'].start()
  yield runs
  for proc in runs.values():
    if callable(proc):  # Started once the runs before it have stopped.
      proc = proc()
    if isinstance(proc, subprocess.Popen) and proc.poll() is None:
      proc.kill()


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A completed 6-step run with checkpoints at steps 2, 4 and 6."""
  workdir = str(tmp_path_factory.mktemp('trained') / 'run')
  train.train_and_evaluate(
    tiny_config(num_train_steps=6), workdir, data=TINY_DATA
  )
  return workdir


def copy_of(workdir, tmp_path, name='copy'):
  target = str(tmp_path / name)
  shutil.copytree(workdir, target)
  return target


@functools.cache
def template_state():
  """A train state of the tiny config, for restoring into (built once:
  restoring reads only its structure)."""
  config = tiny_config()
  derived = config_lib.derive(
    config,
    num_train_examples=synthetic.NUM_TRAIN_EXAMPLES,
    device_count=jax.device_count(),
  )
  tx = optim.create_optimizer(
    config, optim.create_learning_rate_fn(config, derived)
  )
  model = steps.create_model(config, synthetic.NUM_CLASSES)
  return steps.create_train_state(config, model, tx, jax.random.PRNGKey(0))


FIELDS = {'alpha': 0.125, 'resolution': 32, 'num_classes': 1000}


def saved_state(workdir, step):
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=10)
  try:
    return ckpt.restore_raw(step)
  finally:
    ckpt.close()


def assert_same_tree(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------
# 1: one run per workdir (the lock itself; two real runs are at the end).


def _hold_lock(workdir):
  """A process that takes the workdir's lock and sleeps."""
  code = (
    'import sys, time\n'
    'from mobilenet_flax import run_files\n'
    'run_files.WorkdirLock(sys.argv[1]).acquire()\n'
    'print("locked", flush=True)\n'
    'time.sleep(600)\n'
  )
  proc = subprocess.Popen(
    [sys.executable, '-c', code, str(workdir)],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_lock_left_by_kill_9_is_taken_over_with_a_warning(tmp_path, caplog):
  holder = _hold_lock(tmp_path)
  try:
    with pytest.raises(run_files.WorkdirLockedError, match=f'pid {holder.pid}'):
      run_files.WorkdirLock(tmp_path).acquire()
  finally:
    holder.kill()  # SIGKILL: no clean-up runs.
    holder.wait()
  lock_file = tmp_path / run_files.LOCK_FILE
  assert json.loads(lock_file.read_text())['pid'] == holder.pid
  with caplog.at_level(logging.WARNING):
    with run_files.WorkdirLock(tmp_path):
      assert json.loads(lock_file.read_text())['pid'] == os.getpid()
  assert f'pid {holder.pid}' in caplog.text
  assert 'is no longer running' in caplog.text
  assert not lock_file.exists()


def test_lock_of_another_host_names_the_file_to_delete(tmp_path):
  lock_file = tmp_path / run_files.LOCK_FILE
  lock_file.write_text(
    json.dumps(
      {'host': 'elsewhere', 'pid': 1, 'started': '2020-01-01 00:00:00'}
    )
  )
  with pytest.raises(run_files.WorkdirLockedError) as e:
    run_files.WorkdirLock(tmp_path).acquire()
  assert 'pid 1 on host elsewhere, started 2020-01-01' in str(e.value)
  assert f'delete {lock_file}' in str(e.value)
  assert lock_file.exists()  # Left for the user to judge.


def test_lock_without_flock_judges_the_record(tmp_path, monkeypatch, caplog):
  # Filesystems without locks (and gs://) fall back to the record: a holder
  # on this host that no longer runs is taken over, a live one is not.
  monkeypatch.setattr(run_files, 'fcntl', None)
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  lock_file = tmp_path / run_files.LOCK_FILE
  lock_file.write_text(
    json.dumps({'host': socket.gethostname(), 'pid': dead.pid})
  )
  with caplog.at_level(logging.WARNING):
    lock = run_files.WorkdirLock(tmp_path)
    lock.acquire()
  assert f'pid {dead.pid}' in caplog.text
  with pytest.raises(run_files.WorkdirLockedError, match=f'pid {os.getpid()}'):
    run_files.WorkdirLock(tmp_path).acquire()
  lock.release()
  assert not lock_file.exists()


# ---------------------------------------------------------------------------
# 2: damaged checkpoints.


def _largest_data_file(step_dir):
  files = glob.glob(
    os.path.join(step_dir, 'state', 'ocdbt.process_*', 'd', '*')
  )
  return max(files, key=os.path.getsize)


def _damage(step_dir, how):
  if how == 'truncated data file':
    path = _largest_data_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)
  elif how == 'emptied data file':
    os.truncate(_largest_data_file(step_dir), 0)
  elif how == 'meta record removed':
    os.remove(os.path.join(step_dir, 'meta', 'metadata'))
  elif how == '_METADATA removed':
    os.remove(os.path.join(step_dir, 'state', '_METADATA'))
  elif how == 'step dir emptied':
    shutil.rmtree(step_dir)
    os.mkdir(step_dir)
  else:
    raise ValueError(how)


DAMAGES = (
  'truncated data file',
  'emptied data file',
  'meta record removed',
  '_METADATA removed',
  'step dir emptied',
)


@pytest.mark.parametrize('how', DAMAGES)
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(
  trained, tmp_path, caplog, capfd, how
):
  workdir = copy_of(trained, tmp_path)
  _damage(os.path.join(workdir, 'checkpoints', '6'), how)
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=3, training=True)
  with caplog.at_level(logging.WARNING):
    step, state, meta = ckpt.restore_latest(template_state(), FIELDS)
  # Orbax no longer lists the damaged step, so a resumed run saves it anew.
  assert ckpt.all_steps() == [2, 4]
  ckpt.close()
  assert step == 4 and int(state.step) == 4
  assert meta['model'] == FIELDS
  # Bit for bit the intact checkpoint.
  intact = saved_state(trained, 4)
  for key in ('params', 'batch_stats', 'opt_state', 'ema_params'):
    assert_same_tree(getattr(state, key), intact[key])
  moved = os.path.join(workdir, 'checkpoints_damaged', '6')
  assert os.path.isdir(moved)  # Kept, not deleted.
  assert not os.path.exists(os.path.join(workdir, 'checkpoints', '6'))
  assert 'step 6 is damaged' in caplog.text and moved in caplog.text
  # Not one traceback of orbax's closed event loop.
  assert 'Event loop is closed' not in capfd.readouterr().err


def test_follow_up_reports_of_a_failed_read_are_dropped(tmp_path, caplog):
  # When many arrays fail to read, asyncio logs each failed sibling task
  # (seen with main.py on a data file cut to 1,000 bytes); only the raised
  # error is reported. Other asyncio errors still show.
  checkpoints.TrainCheckpointer(str(tmp_path), keep=1).close()
  asyncio_logger = logging.getLogger('asyncio')
  damaged = ValueError('OUT_OF_RANGE: Error reading "params.x/0"')
  other = ValueError('something else')
  with caplog.at_level(logging.ERROR):
    for error in (damaged, other):
      asyncio_logger.error(
        'Task exception was never retrieved\nfuture: <Task>',
        exc_info=(ValueError, error, None),
      )
  assert 'OUT_OF_RANGE' not in caplog.text
  assert 'something else' in caplog.text


def test_resume_after_a_damaged_checkpoint_matches_an_uninterrupted_run(
  trained, tmp_path
):
  workdir = copy_of(trained, tmp_path)
  _damage(os.path.join(workdir, 'checkpoints', '6'), 'truncated data file')
  results = train.train_and_evaluate(
    tiny_config(num_train_steps=6), workdir, data=TINY_DATA
  )
  assert results['status'] == 'completed' and results['step'] == 6
  # Steps 5 and 6 trained again from step 4 give the same step 6.
  again, original = saved_state(workdir, 6), saved_state(trained, 6)
  for key in ('params', 'batch_stats', 'opt_state', 'ema_params'):
    assert_same_tree(again[key], original[key])
  # The time before the damage (recorded by step 4) plus this try's.
  first, second = results['segments']
  assert (first['start_step'], first['end_step']) == (0, 4)
  assert (second['start_step'], second['end_step']) == (4, 6)
  assert second['status'] == 'completed'
  assert results['wall_time_seconds'] == pytest.approx(
    first['seconds'] + second['seconds'], abs=2e-3
  )


def test_every_checkpoint_damaged_is_a_clear_error(trained, tmp_path):
  workdir = copy_of(trained, tmp_path)
  for step, how in zip((2, 4, 6), DAMAGES, strict=False):
    _damage(os.path.join(workdir, 'checkpoints', str(step)), how)
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=3, training=True)
  with pytest.raises(checkpoints.CheckpointDamagedError) as e:
    ckpt.restore_latest(template_state(), FIELDS)
  ckpt.close()
  assert 'Every checkpoint' in str(e.value) and 'damaged' in str(e.value)
  assert 'steps 2, 4, 6' in str(e.value)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints_damaged'))) == [
    '2',
    '4',
    '6',
  ]


def test_checkpoint_of_another_model_is_a_mismatch_not_damage(
  trained, tmp_path
):
  workdir = copy_of(trained, tmp_path)
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=3, training=True)
  # Recorded fields that differ.
  with pytest.raises(checkpoints.CheckpointMismatchError, match='alpha'):
    ckpt.restore_latest(template_state(), {**FIELDS, 'alpha': 0.25})
  # Intact arrays of other shapes under the same recorded fields.
  other = steps.create_train_state(
    tiny_config(),
    steps.create_model(tiny_config(), 10),
    optim.create_optimizer(tiny_config(), lambda step: 0.1),
    jax.random.PRNGKey(0),
  )
  ckpt.save(8, other, {'model': FIELDS, 'train_examples_seen': 0})
  ckpt.wait()
  with pytest.raises(checkpoints.CheckpointMismatchError, match='logits'):
    ckpt.restore_latest(template_state(), FIELDS)
  # Nothing was taken for damage and moved.
  assert ckpt.all_steps() == [4, 6, 8]
  ckpt.close()
  assert not os.path.exists(os.path.join(workdir, 'checkpoints_damaged'))


# ---------------------------------------------------------------------------
# 4: NaN.


def test_learning_rate_1e17_stops_and_no_checkpoint_holds_a_nonfinite(
  tmp_path,
):
  # The reported case: checkpoints every 5 steps while batch-norm variances
  # grow towards float32's limit, until the loss overflows. A 5-step
  # warm-up lets a few checkpoints be written first.
  workdir = str(tmp_path / 'run')
  config = tiny_config(
    num_train_steps=40,
    checkpoint_every_steps=5,
    base_learning_rate=1e17,
    warmup_epochs=5 / (synthetic.NUM_TRAIN_EXAMPLES // 8),
    keep_checkpoints=100,
  )
  with pytest.raises(train.NonFiniteError, match=r'at step (\d+)') as e:
    train.train_and_evaluate(config, workdir, data=TINY_DATA)
  bad_step = int(re.search(r'at step (\d+)', str(e.value))[1])
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=100)
  saved = ckpt.all_steps()
  assert saved and max(saved) < bad_step
  for step in saved:
    state = ckpt.restore_raw(step)
    for leaf in jax.tree.leaves(state):
      leaf = np.asarray(leaf)
      if np.issubdtype(leaf.dtype, np.floating):
        assert np.isfinite(leaf).all(), step
  ckpt.close()


def test_save_refuses_a_nonfinite_state(trained, tmp_path):
  workdir = copy_of(trained, tmp_path)
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=5, training=True)
  step, state, meta = ckpt.restore_latest(template_state(), FIELDS)
  variances = np.array(state.batch_stats['conv1_bn']['var'])
  variances[0] = np.inf
  poisoned = state.replace(
    batch_stats={
      **state.batch_stats,
      'conv1_bn': {**state.batch_stats['conv1_bn'], 'var': variances},
    }
  )
  with pytest.raises(
    checkpoints.NonFiniteCheckpointError, match=r"\['conv1_bn'\]\['var'\]"
  ):
    ckpt.save(8, poisoned, meta)
  ckpt.wait()
  assert ckpt.all_steps() == [2, 4, 6]
  ckpt.close()
  assert not glob.glob(os.path.join(workdir, 'checkpoints', '8*'))


# ---------------------------------------------------------------------------
# 5: errors found in-process (the command-line ones are at the end).


def test_missing_weights_are_a_user_error_and_free_the_workdir(tmp_path):
  workdir = tmp_path / 'run'
  config = tiny_config(init_from='/nonexistent')
  with pytest.raises(
    checkpoints.WeightsNotFoundError, match='No weights at /nonexistent'
  ):
    train.train_and_evaluate(config, str(workdir), data=TINY_DATA)
  # --mode=eval in a workdir without checkpoints.
  with pytest.raises(
    checkpoints.WeightsNotFoundError, match=f'No weights at {tmp_path}'
  ):
    train.evaluate(tiny_config(), str(tmp_path), data=TINY_DATA)
  # One `error:` line in main.py; callers catching FileNotFoundError still do.
  assert issubclass(checkpoints.WeightsNotFoundError, errors.Error)
  assert issubclass(checkpoints.WeightsNotFoundError, FileNotFoundError)
  assert not (workdir / run_files.LOCK_FILE).exists()


def test_unwritable_eval_results_keep_the_logged_scores(trained, tmpfs, caplog):
  read_only = mounted(tmpfs('1m', read_only=True))
  config = tiny_config(init_from=trained)
  with caplog.at_level(logging.INFO):
    with pytest.raises(run_files.RunFileError) as e:
      train.evaluate(config, str(read_only), data=TINY_DATA)
  # Named for the file the user asked for, not a temporary one.
  assert str(e.value) == (
    f'Could not write {read_only}/eval_results.json: Read-only file system.'
  )
  assert isinstance(e.value, errors.Error)  # One `error:` line in main.py.
  assert f'eval of {trained} on synthetic/validation: top-1' in caplog.text


# ---------------------------------------------------------------------------
# 6: training time across segments.


def _results(workdir):
  return json.loads(open(os.path.join(workdir, 'results.json')).read())


def test_rerun_and_eval_keep_the_recorded_training_time(trained, tmp_path):
  workdir = copy_of(trained, tmp_path)
  before = _results(workdir)
  segments = before['segments']
  assert [(s['start_step'], s['end_step'], s['status']) for s in segments] == [
    (0, 6, 'completed')
  ]
  assert before['wall_time_seconds'] == segments[0]['seconds'] > 0
  # The time results.json reports is the one the last checkpoint recorded,
  # which is what a later run restores.
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=3)
  assert ckpt.read_meta(6)['segments'] == segments
  ckpt.close()
  again = train.train_and_evaluate(
    tiny_config(num_train_steps=6), workdir, data=TINY_DATA
  )
  assert again['segments'] == segments
  after = _results(workdir)
  assert after['wall_time_seconds'] == before['wall_time_seconds']
  assert after['segments'] == segments
  train.evaluate(tiny_config(), workdir, data=TINY_DATA)
  assert _results(workdir) == after
  assert os.path.exists(os.path.join(workdir, 'eval_results.json'))


# ---------------------------------------------------------------------------
# The main.py runs that `launched` started: 1, 3, 5, 6 and 7 end to end.


@pytest.fixture(scope='module')
def contested(launched):
  """{'workdir', 'a', 'b'}: run A, stopped by SIGTERM after its first
  checkpoint, and run B, started on A's workdir while A held it."""
  launched['contest_thread'].join(TIMEOUT)
  record = launched['contest']
  if 'error' in record:
    raise record['error']
  return {'workdir': record['a'].workdir, **record}


def test_second_run_on_a_workdir_stops_at_once_naming_the_holder(contested):
  a, b, workdir = contested['a'], contested['b'], contested['workdir']
  message = assert_one_error_line(
    b,
    f'The workdir {workdir} is in use by another run',
    f'pid {a.pid} on host {socket.gethostname()}',
    'started 20',
  )
  assert 'main.py' in message
  # B stopped before training, writing nothing: A's events file is the
  # only one, and A's results are A's.
  assert 'Training ' not in b.out
  events = glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert len(events) == 1 and f'.{a.pid}.' in events[0]
  # A released the lock when it ended.
  assert not os.path.exists(os.path.join(workdir, run_files.LOCK_FILE))


def test_sigterm_exits_75_after_its_checkpoint(contested):
  a, workdir = contested['a'], contested['workdir']
  assert a.returncode == cli.EXIT_PREEMPTED == 75, a.out[-3000:]
  assert not error_lines(a.out) and 'Traceback' not in a.out
  results = run_files.read_results(workdir)
  assert results['status'] == 'preempted'
  assert os.path.isdir(
    os.path.join(workdir, 'checkpoints', str(results['step']))
  )
  assert results['segments'][-1]['status'] == 'preempted'


def test_sweep_records_exit_75_as_preempted(tmp_path):
  point = sweep.Point(
    name='p', overrides={}, command=[sys.executable, '-c', 'exit(75)']
  )
  with sweep._Stopper() as stopper:
    sweep.run_point(point, str(tmp_path), str(tmp_path / 'log'), stopper)
  assert point.returncode == 75 and point.status == 'preempted'


def test_resumed_run_adds_up_its_segments(contested, tmp_path):
  # The run that SIGTERM stopped, resumed for two more steps.
  workdir = copy_of(contested['workdir'], tmp_path)
  preempted = _results(workdir)
  stop = preempted['step']
  results = train.train_and_evaluate(
    tiny_config(num_train_steps=stop + 2), workdir, data=TINY_DATA
  )
  first, second = results['segments']
  assert first == preempted['segments'][0]
  assert (first['start_step'], first['end_step'], first['status']) == (
    0,
    stop,
    'preempted',
  )
  assert (second['start_step'], second['end_step'], second['status']) == (
    stop,
    stop + 2,
    'completed',
  )
  assert results['wall_time_seconds'] == pytest.approx(
    first['seconds'] + second['seconds'], abs=2e-3
  )
  assert _results(workdir)['wall_time_seconds'] == results['wall_time_seconds']


def test_full_disk_stops_with_one_error_and_keeps_earlier_checkpoints(
  launched,
):
  proc = finish(mounted(launched['full_disk'])())
  workdir = proc.workdir
  message = assert_one_error_line(
    proc,
    'Could not write the checkpoint of step 30 to '
    f'{workdir}/checkpoints/30: No space left on device',
    'step 20 and earlier ones are intact',
  )
  assert 'Event loop is closed' not in proc.out, message
  # Stopped when the write failed, not at the next save (step 40).
  last = max(int(s) for s in re.findall(r'step (\d+)/', proc.out))
  assert 30 <= last < 40
  # The partial step is gone; the earlier ones restore.
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=3)
  assert ckpt.all_steps() == [10, 20]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == [
    '10',
    '20',
  ]
  step, state, _ = ckpt.restore_latest(template_state(), FIELDS)
  ckpt.close()
  assert step == 20 and int(state.step) == 20
  assert not os.path.exists(os.path.join(workdir, run_files.LOCK_FILE))


def test_command_line_mistakes_give_one_error_line(launched):
  assert_one_error_line(
    finish(launched['typo']),
    '--config.alpah: no such config field',
    'did you mean --config.model.alpha?',
  )


def test_read_only_workdir_gives_one_error_line(launched):
  proc = finish(mounted(launched['read_only']))
  assert_one_error_line(
    proc, f'Cannot write to the workdir {proc.workdir}: Read-only file system'
  )
