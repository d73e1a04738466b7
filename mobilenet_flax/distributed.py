"""Multi-process start-up: joining the JAX cluster and checking the workdir.

On a multi-host TPU slice every host runs the same program; JAX must be
told about the others (`jax.distributed.initialize`) before it touches a
device. Checkpoints are then written collectively, so the workdir must be
one place that every host sees (gs:// or a shared filesystem); a host-local
path would silently give each host a different, partial checkpoint.
"""

import glob
import os
import secrets

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from mobilenet_flax import errors

MODES = ('auto', 'on', 'off')
DEFAULT_COMPILATION_CACHE = os.path.expanduser('~/.cache/mobilenet_flax/jax')


def _on_cloud_tpu_vm() -> bool:
  # TPU VMs expose their chips as /dev/accel* (v2-v4) or /dev/vfio/<n>
  # (v5e and later).
  return bool(glob.glob('/dev/accel*') or glob.glob('/dev/vfio/[0-9]*'))


def _in_multitask_slurm_job() -> bool:
  return int(os.environ.get('SLURM_NTASKS', '1')) > 1


def initialize(
  mode: str = 'auto',
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins the JAX cluster when there is one.

  Args:
    mode: 'on' always initialises (JAX detects TPU slices, SLURM and
      others); 'off' never does; 'auto' does when a coordinator is given
      (arguments or JAX_COORDINATOR_ADDRESS), on a Cloud TPU VM, or in a
      multi-task SLURM job.
    coordinator_address: host:port of process 0, for clusters JAX cannot
      detect (e.g. several CPU processes on one machine).
    num_processes: number of processes, with `coordinator_address`.
    process_id: this process's index, with `coordinator_address`.
  """
  if mode not in MODES:
    raise ValueError(f'multihost must be one of {MODES}, got {mode!r}.')
  coordinator_address = coordinator_address or os.environ.get(
    'JAX_COORDINATOR_ADDRESS'
  )
  if mode == 'off':
    return
  if mode == 'auto' and not (
    coordinator_address or _on_cloud_tpu_vm() or _in_multitask_slurm_job()
  ):
    return
  kwargs = {}
  if coordinator_address:
    kwargs = dict(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
    )
  jax.distributed.initialize(**kwargs)
  if not jax.config.jax_compilation_cache_dir:
    # The train step is compiled ahead of its first call, then run through
    # pmap, which must find that compilation here rather than compile again
    # while the other hosts wait (train.CompiledOnFirstCall).
    jax.config.update('jax_compilation_cache_dir', DEFAULT_COMPILATION_CACHE)
  logging.info(
    'Joined the JAX cluster as process %d of %d (%d local, %d global devices).',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


class WorkdirNotSharedError(errors.Error, ValueError):
  """The processes of a multi-process run do not share the workdir."""


def check_shared_workdir(workdir: str) -> None:
  """Raises WorkdirNotSharedError (on every process) unless all processes
  see the same `workdir`.

  Each process writes a marker file, then each looks for everybody's
  markers: on a host-local path the other hosts' markers are missing.
  """
  if jax.process_count() == 1:
    return
  # One random token for this check, the same on every process.
  token = int(
    multihost_utils.broadcast_one_to_all(np.int64(secrets.randbelow(2**62)))
  )
  markers = epath.Path(workdir) / '.shared_workdir_check' / str(token)
  markers.mkdir(parents=True, exist_ok=True)
  (markers / f'process_{jax.process_index()}').write_text(str(os.getpid()))
  multihost_utils.sync_global_devices(f'workdir check {token} written')
  seen = np.array(
    [(markers / f'process_{i}').exists() for i in range(jax.process_count())]
  )
  everyone = multihost_utils.process_allgather(seen)
  multihost_utils.sync_global_devices(f'workdir check {token} read')
  if jax.process_index() == 0:
    markers.rmtree(missing_ok=True)
  if not everyone.all():
    blind = sorted({int(p) for p in np.nonzero(~everyone.all(axis=1))[0]})
    raise WorkdirNotSharedError(
      f'The workdir {workdir} is not shared by all {jax.process_count()} '
      f'processes: processes {blind} cannot see files the others wrote '
      '(a host-local path?). Checkpoints are written collectively, so use a '
      'path every host reaches: gs://BUCKET/... or a shared filesystem.'
    )
