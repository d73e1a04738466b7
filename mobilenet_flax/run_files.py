"""The files of a run's workdir, and how to read them.

One owner for what training, evaluation, the sweep runner and the report
write and read besides checkpoints:

  <run>/results.json        a training run's outcome (train.py writes it)
  <run>/eval_results.json   a `--mode=eval` score of some weights
  <sweep>/sweep.json        a sweep's points and how each ended
  <run>/run.lock            who is training in the workdir (WorkdirLock)

JSON files are written whole or not at all (a temporary file renamed into
place), so a reader never sees half a file. Which top-1 a table shows (the
EMA weights' or the raw weights') is decided here too, so the sweep's
summary and the report agree.
"""

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from absl import logging
from etils import epath

from mobilenet_flax import errors

try:
  import fcntl
except ImportError:  # Not on Windows: the lock falls back to its record.
  fcntl = None

RESULTS_JSON = 'results.json'
EVAL_RESULTS_JSON = 'eval_results.json'
SWEEP_JSON = 'sweep.json'
LOCK_FILE = 'run.lock'


class RunFileError(errors.Error, OSError):
  """A run file could not be written (a full disk, a read-only workdir)."""


def _reason(e: OSError) -> str:
  return e.strerror or str(e)


def write_json(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
  """Writes `record` to `path` atomically (local paths and gs:// alike).

  Raises RunFileError naming `path` (not the temporary file) and the cause.
  """
  path = epath.Path(path)
  tmp = path.parent / f'.{path.name}.{uuid.uuid4().hex}.tmp'
  try:
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
  except OSError as e:
    with contextlib.suppress(OSError):
      tmp.unlink(missing_ok=True)
    raise RunFileError(f'Could not write {path}: {_reason(e)}.') from e


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
  """The JSON object at `path`, or None when there is none or it is cut
  short (then the run that should write it has not finished)."""
  path = epath.Path(path)
  if not path.exists():
    return None
  try:
    record = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError):
    return None
  return record if isinstance(record, dict) else None


def read_results(run_dir: str | os.PathLike) -> dict[str, Any] | None:
  """A run's results.json, or None if there is none (yet)."""
  return read_json(epath.Path(run_dir) / RESULTS_JSON)


def write_results(run_dir: str | os.PathLike, results: Mapping[str, Any]):
  write_json(epath.Path(run_dir) / RESULTS_JSON, results)


def write_eval_results(run_dir: str | os.PathLike, results: Mapping[str, Any]):
  write_json(epath.Path(run_dir) / EVAL_RESULTS_JSON, results)


def read_sweep(sweep_dir: str | os.PathLike) -> dict[str, Any]:
  """sweep.json, or {} for a directory of runs made without the runner."""
  return read_json(epath.Path(sweep_dir) / SWEEP_JSON) or {}


def write_sweep(sweep_dir: str | os.PathLike, record: Mapping[str, Any]):
  write_json(epath.Path(sweep_dir) / SWEEP_JSON, record)


# ---------------------------------------------------------------------------
# One training run per workdir.


class WorkdirLockedError(errors.Error):
  """Another run is training in the workdir."""


def _boot_id() -> str | None:
  try:
    with open('/proc/sys/kernel/random/boot_id') as f:
      return f.read().strip()
  except OSError:
    return None


def _process_start(pid: int) -> str | None:
  """When `pid` started (clock ticks since boot), to tell a process from a
  later one that got the same pid; None where /proc is missing."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      # The command name (field 2) may hold spaces; field 22 counts from
      # the closing parenthesis.
      return f.read().rpartition(')')[2].split()[19]
  except (OSError, IndexError):
    return None


def _holder_record() -> dict[str, Any]:
  pid = os.getpid()
  return {
    'host': socket.gethostname(),
    'pid': pid,
    'started': datetime.datetime.now().astimezone().isoformat(' ', 'seconds'),
    'command': ' '.join(sys.argv),
    'boot_id': _boot_id(),
    'process_start': _process_start(pid),
  }


def _parse_record(text: str) -> dict[str, Any] | None:
  try:
    record = json.loads(text)
  except ValueError:
    return None
  return record if isinstance(record, dict) else None


def _is_running_here(record: Mapping[str, Any]) -> bool:
  """Whether the process `record` names is alive; only asked about a
  record written on this host."""
  if record.get('boot_id') and record['boot_id'] != _boot_id():
    return False  # Written before the host last booted.
  try:
    pid = int(record['pid'])
  except (KeyError, TypeError, ValueError):
    return True  # Cannot tell: assume it runs.
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Exists, owned by another user.
  started = record.get('process_start')
  now = _process_start(pid)
  return not (started and now and started != now)


def _describe(record: Mapping[str, Any] | None) -> str:
  if not record:
    return 'a run that has not recorded itself (yet)'
  return (
    f'pid {record.get("pid")} on host {record.get("host")}, started '
    f'{record.get("started")} ({record.get("command")})'
  )


class WorkdirLock:
  """Keeps a second training run out of a workdir: `<workdir>/run.lock`.

  The file records the holder (host, pid, start time, command). On a local
  filesystem the holder also keeps an exclusive `flock` on it, which the
  kernel drops when the process dies, however it dies; so a lock left by
  kill -9 on this host is taken over with a warning. A record from another
  host whose lock is not held cannot be judged from here (its run may be
  alive on a filesystem that does not share locks): that is an error, and
  deleting the file is the way out, which the message says. Where `flock`
  is unsupported (some network filesystems, gs://) the record alone
  decides: a holder on this host that no longer runs is taken over, any
  other holder is an error; there, two runs starting in the same instant
  are not told apart.

  Used as `with WorkdirLock(workdir): ...`; `release` removes the file.
  """

  def __init__(self, workdir: str | os.PathLike):
    self.path = epath.Path(workdir) / LOCK_FILE
    self._fd = None
    self._record = None

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    record = _holder_record()
    try:
      if fcntl is not None and '://' not in os.fspath(self.path):
        self._acquire_local(record)
      else:
        self._acquire_by_record(record)
    except OSError as e:
      raise RunFileError(
        f'Cannot write to the workdir {self.path.parent}: {_reason(e)} '
        f'(creating {self.path}). Training writes its checkpoints there: '
        'use a writable --workdir.'
      ) from e
    self._record = record

  def _locked_error(self, holder, *, here: bool) -> WorkdirLockedError:
    if here:
      way_out = 'Wait for it to finish, stop it, or use another --workdir.'
    else:
      way_out = (
        'Wait for it to finish or use another --workdir. If that run is no '
        f'longer running (its host went down, say), delete {self.path} and '
        'start again.'
      )
    return WorkdirLockedError(
      f'The workdir {self.path.parent} is in use by another run: '
      f'{_describe(holder)}.\n{way_out}'
    )

  def _take_over(self, holder: Mapping[str, Any]) -> None:
    logging.warning(
      'Taking over the lock of %s: %s is no longer running.',
      self.path.parent,
      _describe(holder),
    )

  def _acquire_local(self, record: dict[str, Any]) -> None:
    path = os.fspath(self.path)
    host = socket.gethostname()
    while True:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
          holder = _parse_record(_read_fd(fd))
          raise self._locked_error(
            holder, here=bool(holder) and holder.get('host') == host
          ) from None
        except OSError as e:
          if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
          # No locks on this filesystem: the record alone decides.
          os.close(fd)
          fd = None
          self._acquire_by_record(record)
          return
        # A run that finished meanwhile may have removed the file we opened:
        # lock the file at `path`, not a removed one.
        try:
          if os.fstat(fd).st_ino != os.stat(path).st_ino:
            continue
        except FileNotFoundError:
          continue
        text = _read_fd(fd)
        holder = _parse_record(text)
        if text.strip() and holder and holder.get('host') != host:
          raise self._locked_error(holder, here=False)
        if text.strip():
          # This host's kernel dropped the holder's lock: it has exited.
          self._take_over(holder or {})
        _write_fd(fd, json.dumps(record, indent=2))
        self._fd, fd = fd, None
        return
      finally:
        if fd is not None:
          os.close(fd)

  def _acquire_by_record(self, record: dict[str, Any]) -> None:
    if self.path.exists():
      holder = _parse_record(self.path.read_text())
      here = bool(holder) and holder.get('host') == socket.gethostname()
      if not (here and not _is_running_here(holder)):
        raise self._locked_error(holder, here=here)
      self._take_over(holder)
    self.path.write_text(json.dumps(record, indent=2))

  def release(self) -> None:
    """Removes the lock file if it is still this run's; never raises."""
    if self._record is None:
      return
    try:
      if self._fd is not None:
        path = os.fspath(self.path)
        if os.fstat(self._fd).st_ino == os.stat(path).st_ino:
          os.unlink(path)
      else:
        holder = _parse_record(self.path.read_text())
        if holder == self._record:
          self.path.unlink()
    except OSError as e:
      logging.warning('Could not remove %s: %s', self.path, e)
    finally:
      if self._fd is not None:
        os.close(self._fd)
      self._fd = self._record = None


def _read_fd(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  chunks = []
  while chunk := os.read(fd, 65536):
    chunks.append(chunk)
  return b''.join(chunks).decode('utf-8', 'replace')


def _write_fd(fd: int, text: str) -> None:
  data = text.encode()
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  while data:
    data = data[os.write(fd, data) :]
  os.fsync(fd)


# ---------------------------------------------------------------------------
# Which accuracy a table reports.


def is_completed(results: Mapping[str, Any] | None) -> bool:
  return bool(results) and results.get('status') == 'completed'


def metric_prefix(runs: Iterable[Mapping[str, Any] | None]) -> str:
  """'ema_' when every completed run has EMA metrics, else ''.

  One rule for a whole table: mixing EMA and raw figures across rows would
  compare different things.
  """
  done = [r for r in runs if is_completed(r)]
  if done and all('ema_top1' in (r.get('eval') or {}) for r in done):
    return 'ema_'
  return ''


def top_k_percent(
  results: Mapping[str, Any] | None, k: int, prefix: str
) -> float | None:
  """A completed run's top-k in percent, with `prefix` from
  `metric_prefix`; None when the run has not completed."""
  if not is_completed(results):
    return None
  value = (results.get('eval') or {}).get(f'{prefix}top{k}')
  return None if value is None else 100 * value
