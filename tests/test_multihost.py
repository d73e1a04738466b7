"""Two processes on one machine, as two hosts of a slice would run.

Each process runs main.py (through tests/multihost_worker.py, which only
records what happens) with 2 fake CPU devices, joined by
`jax.distributed.initialize` over a localhost coordinator and gloo CPU
collectives. This is what was tested without a TPU: a real slice adds ICI,
gs:// storage and preemption notices that these tests do not exercise.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'multihost_worker.py')
TIMEOUT = 600


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_pair(tmp_path, workdirs, data_dir, *overrides, tag):
  """Runs both processes to completion; returns [(returncode, record,
  output)] in process order."""
  port = _free_port()
  env = dict(os.environ)
  # Two fake devices each, compiled with the suite's flags (conftest.py).
  env['XLA_FLAGS'] = xla_flags.for_devices(2)
  env['JAX_PLATFORMS'] = 'cpu'
  # main.py and the worker import the project from the checkout.
  env['PYTHONPATH'] = ROOT
  procs = []
  for pid, workdir in enumerate(workdirs):
    record = tmp_path / f'{tag}_record_{pid}.json'
    log = open(tmp_path / f'{tag}_log_{pid}.txt', 'w')  # noqa: SIM115
    cmd = [
      sys.executable,
      WORKER,
      '--config=configs/quickstart.py:alpha=0.125,res=32',
      f'--workdir={workdir}',
      f'--config.data_dir={data_dir}',
      '--config.batch_size=16',
      '--config.warmup_epochs=0',
      # A schedule that does not depend on num_train_steps: every pair then
      # runs the same compiled step, and the later pairs load it from the
      # compilation cache.
      '--config.lr_schedule=exponential',
      '--config.log_every_steps=1',
      '--config.eval_every_steps=1000',
      '--multihost=on',
      f'--coordinator_address=localhost:{port}',
      '--num_processes=2',
      f'--process_id={pid}',
      *overrides,
    ]
    procs.append(
      (
        subprocess.Popen(
          cmd,
          cwd=ROOT,
          env={**env, 'MULTIHOST_RECORD': str(record)},
          stdout=log,
          stderr=subprocess.STDOUT,
        ),
        record,
        log,
      )
    )
  out = []
  for proc, record, log in procs:
    try:
      proc.wait(timeout=TIMEOUT)
    finally:
      proc.kill()
      log.close()
    text = open(log.name).read()
    data = json.loads(record.read_text()) if record.exists() else None
    out.append((proc.returncode, data, text))
  return out


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  # Build the offline dataset once, in this process, so the two workers
  # do not race to prepare it.
  from configs import quickstart
  from input_pipeline import get_dataset_info

  path = str(tmp_path_factory.mktemp('tfds'))
  config = quickstart.get_config()
  config.data_dir = path
  get_dataset_info(config)
  return path


def test_two_processes_train_identically_checkpoint_once_and_resume(
  tmp_path, data_dir
):
  workdir = str(tmp_path / 'run')
  first = _run_pair(
    tmp_path,
    [workdir, workdir],
    data_dir,
    '--config.num_train_steps=3',
    '--config.checkpoint_every_steps=3',
    tag='first',
  )
  for code, record, text in first:
    assert code == 0, text[-4000:]
    assert record['process_count'] == 2
  (_, r0, _), (_, r1, _) = first
  assert [r0['process_index'], r1['process_index']] == [0, 1]
  # Every step leaves every device of both processes with the same params.
  assert r0['replicas_agree'] and r1['replicas_agree']
  assert len(r0['param_digests']) == 3
  assert r0['param_digests'] == r1['param_digests']
  assert len(set(r0['param_digests'])) == 3  # They really changed.
  # Each process reads its own share of the data: the eval shares are
  # disjoint and together are the whole 360-image test split.
  assert ['train', 0, 2] in r0['dataset_calls']
  assert ['train', 1, 2] in r1['dataset_calls']
  e0, e1 = set(r0['eval_examples']), set(r1['eval_examples'])
  assert len(e0) == len(r0['eval_examples']) > 0
  assert not e0 & e1
  assert len(e0 | e1) == 360
  # One checkpoint, in the shared workdir; metrics and results from
  # process 0 only.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3']
  results = json.loads(open(os.path.join(workdir, 'results.json')).read())
  assert results['device_count'] == 4
  assert results['eval']['examples'] == 360
  events = [f for f in os.listdir(workdir) if f.startswith('events.out')]
  assert len(events) == 1

  second = _run_pair(
    tmp_path,
    [workdir, workdir],
    data_dir,
    '--config.num_train_steps=5',
    '--config.checkpoint_every_steps=5',
    tag='second',
  )
  for code, record, text in second:
    assert code == 0, text[-4000:]
    assert record['start_step'] == 3
    assert len(record['param_digests']) == 2
  assert second[0][1]['param_digests'] == second[1][1]['param_digests']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == [
    '3',
    '5',
  ]


def test_host_local_workdir_is_a_clear_error(tmp_path, data_dir):
  # Two different directories stand in for one path that resolves to
  # different disks on different hosts.
  runs = _run_pair(
    tmp_path,
    [str(tmp_path / 'host0'), str(tmp_path / 'host1')],
    data_dir,
    '--config.num_train_steps=2',
    tag='local',
  )
  for code, record, text in runs:
    assert code == 1, text[-4000:]
    assert 'is not shared by all 2 processes' in text
    assert record['param_digests'] == []
