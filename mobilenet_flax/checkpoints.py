"""Checkpoints: resumable training state and exported weights.

Training checkpoints live in `<workdir>/checkpoints/<step>/` and hold the whole
train state (parameters, batch statistics, optimizer state, EMA weights, RNG
key, step) beside a JSON record of the model fields and the data position.
Orbax writes each one to a temporary directory and renames it when complete,
so a crash or preemption mid-save leaves the previous checkpoints intact.

What can go wrong, and what TrainCheckpointer does about it:

* A damaged checkpoint (a file cut short or missing, an emptied step): it
  is moved to `<workdir>/checkpoints_damaged/<step>` with a warning and the
  previous one is tried; only when none restores does the run stop, with
  CheckpointDamagedError. A checkpoint of another model is not damage: it
  stays where it is and raises CheckpointMismatchError.
* A save that fails (a full disk): orbax writes in the background, so the
  training loop asks `check()` after every step; the failure surfaces as
  one CheckpointWriteError naming the step's path and the cause, and the
  partial files are removed. Earlier checkpoints are not touched.
* A non-finite value in the state: `save` refuses to write it
  (NonFiniteCheckpointError); the train step already stops before one can
  reach the state, so this is a second guard.

Exported weights (`save_pretrained`) are `{'params', 'batch_stats'}` plus a
`model.json` of the fields needed to rebuild the model, and where known the
classes' names and the eval crop. `reuse_pretrained` fits weights with
another classifier to a model (fine-tuning).
"""

import contextlib
import json
import logging as std_logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import serialization
from jax.experimental import multihost_utils

from mobilenet_flax import errors, models


class CheckpointMismatchError(errors.Error, ValueError):
  """A checkpoint that does not fit the model being built."""


class CheckpointDamagedError(errors.Error):
  """A checkpoint whose files cannot be read back."""


class CheckpointWriteError(errors.Error):
  """A checkpoint could not be written (a full disk, say)."""


class NonFiniteCheckpointError(errors.Error, FloatingPointError):
  """A state with NaN or infinite values was about to be saved."""


class WeightsNotFoundError(errors.Error, FileNotFoundError):
  """No exported weights and no training checkpoint where weights were
  asked for."""


def check_fields(
  found: Mapping[str, Any], expected: Mapping[str, Any], where: str
) -> None:
  """Raises CheckpointMismatchError naming every differing model field.

  `resolution` is only compared when both sides give one; the weights
  themselves work at any resolution, so evaluation may change it.
  """
  problems = []
  for key in models.RECORDED_FIELDS:
    if key not in expected or expected[key] is None:
      continue
    if key not in found:
      problems.append(f'{key}: missing in the checkpoint')
    elif not _same(found[key], expected[key]):
      problems.append(
        f'{key}: checkpoint has {found[key]!r}, config has {expected[key]!r}'
      )
  if problems:
    raise CheckpointMismatchError(
      f'Checkpoint at {where} was written for a different model:\n'
      + '\n'.join(f'  - {p}' for p in problems)
      + '\nUse a fresh --workdir, or set the config to match the checkpoint.'
    )


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, int | float) and isinstance(b, int | float):
    return abs(float(a) - float(b)) < 1e-9
  return a == b


class TrainCheckpointer:
  """Saves and restores the train state of one workdir.

  Args:
    workdir: the run's directory; checkpoints go to `<workdir>/checkpoints`.
    keep: how many checkpoints to keep.
    training: the checkpointer of the run that trains in `workdir` (which
      holds its lock): removes the temporary directories of saves that an
      earlier run left unfinished (killed mid-save). Readers of another
      run's workdir leave them alone: that run may be saving.
  """

  def __init__(self, workdir: str, *, keep: int, training: bool = False):
    _quiet_follow_up_reports()
    # Orbax wants absolute paths; gs:// and other URLs already are.
    if '://' not in workdir:
      workdir = os.path.abspath(workdir)
    self.directory = epath.Path(workdir) / 'checkpoints'
    self.damaged_directory = epath.Path(workdir) / 'checkpoints_damaged'
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=training
      ),
    )
    # The step whose save may still be running in the background.
    self._pending = None
    # The step of a save that failed, whose partial files close() removes.
    self._failed_step = None

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  # -- Saving ---------------------------------------------------------------

  def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
    """Starts saving `state` (host or device arrays, unreplicated) at `step`.

    The writing goes on in the background; `check` and `wait` report a
    failure. Raises CheckpointWriteError if the previous save failed or
    this one cannot start, NonFiniteCheckpointError if the state holds a
    NaN or an infinity (nothing is written then).
    """
    self.wait()
    if step in self._manager.all_steps():
      return
    host_state = serialization.to_state_dict(jax.device_get(state))
    bad = _nonfinite_leaves(host_state)
    if bad:
      shown = ', '.join(bad[:5]) + (', ...' if len(bad) > 5 else '')
      raise NonFiniteCheckpointError(
        f'Not saving step {step} to {self.directory / str(step)}: '
        f'{len(bad)} arrays hold NaN or infinite values ({shown}). The '
        'earlier checkpoints are intact.'
      )
    try:
      self._manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(host_state),
          meta=ocp.args.JsonSave(dict(meta)),
        ),
        force=True,
      )
    except _WRITE_ERRORS as e:
      raise self._write_error(step, e) from e
    self._pending = step

  def check(self) -> None:
    """Raises CheckpointWriteError if the save in the background has failed;
    returns at once while it is still running (cheap: call it every step)."""
    if self._pending is not None and not self._manager.is_saving_in_progress():
      self.wait()

  def wait(self) -> None:
    """Blocks until any save in flight is on disk; raises
    CheckpointWriteError if it failed."""
    step, self._pending = self._pending, None
    try:
      self._manager.wait_until_finished()
    except _WRITE_ERRORS as e:
      if step is None:
        raise
      raise self._write_error(step, e) from e

  def _remove_partial(self, step: int) -> None:
    if jax.process_index() == 0:
      for partial in self.directory.glob(f'{step}.orbax-checkpoint-tmp*'):
        with contextlib.suppress(OSError):
          partial.rmtree()

  def _write_error(self, step: int, error: Exception) -> CheckpointWriteError:
    """Removes what the failed save left, and says what happened."""
    path = self.directory / str(step)
    self._remove_partial(step)
    self._failed_step = step
    with contextlib.suppress(Exception):
      self._manager.reload()
    earlier = [s for s in self.all_steps() if s < step]
    kept = (
      f'The checkpoint of step {earlier[-1]} and earlier ones are intact: '
      'fix the cause, then run the same command to resume from there.'
      if earlier
      else 'No earlier checkpoint exists.'
    )
    return CheckpointWriteError(
      f'Could not write the checkpoint of step {step} to {path}: '
      f'{_cause(error)}.\n{kept}'
    )

  # -- Restoring ------------------------------------------------------------

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON record saved with `step`; CheckpointDamagedError if it
    cannot be read."""
    try:
      restored = self._manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
      )
      meta = restored['meta']
      if not isinstance(meta, Mapping):
        raise ValueError(f'the record is {type(meta).__name__}, not a dict')
    except Exception as e:
      raise self._damaged(step, e) from e
    return dict(meta)

  def restore(
    self, step: int, template: Any, expected: Mapping[str, Any]
  ) -> tuple[Any, dict[str, Any]]:
    """Restores the state at `step` into the structure of `template`.

    Raises CheckpointMismatchError for a checkpoint of another model (its
    recorded fields, or the shapes of its intact arrays, differ), and
    CheckpointDamagedError when its files cannot be read.
    """
    where = str(self.directory / str(step))
    meta = self.read_meta(step)
    check_fields(meta.get('model', {}), expected, where)
    target = serialization.to_state_dict(jax.device_get(template))
    target = jax.tree.map(_abstract, target)
    try:
      restored = self._manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(target)),
      )['state']
    except Exception as e:
      if _not_damage(e):
        raise
      # Damaged files, or intact ones of another structure? Without a
      # target, only damage stops a restore (restore_raw raises then).
      self.restore_raw(step)
      raise CheckpointMismatchError(
        f'Checkpoint at {where} does not match the train state: '
        f'{_first_line(e)}'
      ) from e
    _check_shapes(restored, target, where)
    return serialization.from_state_dict(template, restored), meta

  def restore_latest(
    self, template: Any, expected: Mapping[str, Any]
  ) -> tuple[int, Any, dict[str, Any]] | None:
    """The newest checkpoint that restores, as (step, state, meta); None
    when there is none.

    A damaged checkpoint is moved to `damaged_directory` (so that orbax no
    longer lists it, and a later save of its step is not skipped), named in
    a warning, and the one before it is tried. When every checkpoint is
    damaged, raises CheckpointDamagedError. CheckpointMismatchError passes
    through: another model's checkpoint is not damage.
    """
    damaged = []
    for step in reversed(self.all_steps()):
      outcome, error = 'ok', None
      try:
        state, meta = self.restore(step, template, expected)
      except CheckpointDamagedError as e:
        outcome, error = 'damaged', e
      except Exception as e:
        outcome, error = 'error', e
      outcome = _agree(outcome)
      if outcome == 'ok':
        return step, state, meta
      if outcome == 'error':
        if error is None or isinstance(error, CheckpointDamagedError):
          raise CheckpointDamagedError(
            f'Another process could not restore step {step} of '
            f'{self.directory}; its output says why.'
          )
        raise error
      moved = self._set_aside(step)
      logging.warning(
        'Checkpoint of step %d is damaged (%s); moved it to %s, trying the '
        'previous one.',
        step,
        _first_line(error.__cause__ or error) if error else 'on a peer',
        moved,
      )
      damaged.append(step)
    if damaged:
      raise CheckpointDamagedError(
        f'Every checkpoint in {self.directory} is damaged (steps '
        f'{", ".join(map(str, sorted(damaged)))}); they were moved to '
        f'{self.damaged_directory}. Running the same command again starts '
        'training from step 0; to resume instead, put back an intact copy of '
        'a checkpoint (from a backup) under checkpoints/.'
      )
    return None

  def restore_raw(self, step: int) -> dict[str, Any]:
    """The state at `step` as saved (nested dicts of numpy arrays);
    CheckpointDamagedError if its files cannot be read."""
    try:
      return self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
      )['state']
    except Exception as e:
      if _not_damage(e):
        raise
      raise self._damaged(step, e) from e

  def _damaged(self, step: int, error: Exception) -> Exception:
    if _not_damage(error):
      return error
    return CheckpointDamagedError(
      f'Checkpoint at {self.directory / str(step)} is damaged: '
      f'{_first_line(error)}'
    )

  def _set_aside(self, step: int) -> epath.Path:
    """Moves the step's directory out of orbax's sight; returns where to."""
    source = self.directory / str(step)
    target = self.damaged_directory / str(step)
    n = 1
    while target.exists():
      target = self.damaged_directory / f'{step}.{n}'
      n += 1
    if jax.process_index() == 0:
      self.damaged_directory.mkdir(parents=True, exist_ok=True)
      source.rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint {step} set aside')
    self._manager.reload()
    return target

  # -- The rest -------------------------------------------------------------

  def reached_preemption(self, step: int) -> bool:
    """True on every process once JAX's preemption sync point is reached
    (multi-process runs; SIGTERM marks it)."""
    return self._manager.reached_preemption(step)

  def close(self) -> None:
    """Waits for a save in flight (raising CheckpointWriteError if it
    failed), then releases orbax's resources."""
    try:
      self.wait()
    finally:
      self._manager.close()
      # Orbax's other writers of a failed save may still have been adding
      # files when it was first removed; now all of them have stopped.
      if self._failed_step is not None:
        self._remove_partial(self._failed_step)


# What a failed write raises: OSError from file operations, ValueError from
# tensorstore (its status, e.g. RESOURCE_EXHAUSTED, in the message),
# RuntimeError and TimeoutError from orbax's threads and barriers. Anything
# else is a bug, and keeps its traceback.
_WRITE_ERRORS = (OSError, ValueError, RuntimeError)


def _nonfinite_leaves(tree: Any) -> list[str]:
  """The paths of the float arrays in `tree` that hold a NaN or an inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    x = np.asarray(leaf)
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
      bad.append(jax.tree_util.keystr(path))
  return bad


# Status codes of storage errors that say nothing about the checkpoint's
# files (no access, a timeout, a service down): those are raised as they
# are, never taken for damage.
_NOT_DAMAGE = (
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'RESOURCE_EXHAUSTED',
  'CANCELLED',
)


def _not_damage(error: BaseException) -> bool:
  if isinstance(
    error,
    errors.Error
    | PermissionError
    | MemoryError
    | TimeoutError
    | ConnectionError
    | InterruptedError,
  ):
    return True
  return any(code in str(error) for code in _NOT_DAMAGE)


def _first_line(error: BaseException) -> str:
  text = str(error).strip().strip('\'"').replace('\\n', '\n')
  line = text.splitlines()[0] if text else type(error).__name__
  return line if len(line) <= 400 else line[:397] + '...'


def _cause(error: BaseException) -> str:
  """What made a write fail, in words: the OS error when there is one
  (tensorstore reports it as `os_error_code='28'` inside its message)."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.strerror:
      return seen.strerror
    match = re.search(r"os_error_code='?(\d+)", str(seen))
    if match:
      return os.strerror(int(match.group(1)))
    seen = seen.__cause__ or seen.__context__
  return _first_line(error)


def _agree(outcome: str) -> str:
  """The outcome every process acts on: the worst of theirs."""
  if jax.process_count() == 1:
    return outcome
  order = ('ok', 'damaged', 'error')
  codes = multihost_utils.process_allgather(np.int32(order.index(outcome)))
  return order[int(np.max(codes))]


def _quiet_follow_up_reports() -> None:
  """Keeps tensorstore's follow-up noise out of the output.

  When arrays of a checkpoint fail to read or write, orbax raises the first
  failure and stops its event loop. What is left of the others is reported
  one traceback per array (hundreds): tensorstore's callbacks report
  'Event loop is closed' as unraisable exceptions, and asyncio logs each
  failed sibling task as 'Task exception was never retrieved'. The failure
  itself is raised and reported; those reports say nothing more, so they
  are dropped. Any other unraisable exception or asyncio record goes on as
  before.
  """
  previous = sys.unraisablehook
  if not getattr(previous, '_drops_closed_event_loop', False):

    def hook(unraisable):
      value = unraisable.exc_value
      if (
        isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'
      ):
        return
      previous(unraisable)

    hook._drops_closed_event_loop = True
    sys.unraisablehook = hook
  asyncio_logger = std_logging.getLogger('asyncio')
  if not any(isinstance(f, _SiblingFailures) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_SiblingFailures())


class _SiblingFailures(std_logging.Filter):
  """Drops asyncio's 'exception was never retrieved' for tensorstore's
  errors (a ValueError whose message starts with a status code, such as
  `OUT_OF_RANGE: Error reading ...`)."""

  def filter(self, record):
    if 'exception was never retrieved' not in str(record.msg):
      return True
    error = record.exc_info[1] if record.exc_info else None
    return not (
      isinstance(error, ValueError)
      and re.match(r'[A-Z_]{6,}: ', str(error)) is not None
    )


def _abstract(x: Any) -> Any:
  x = np.asarray(x)
  return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _check_shapes(restored: Any, target: Any, where: str) -> None:
  flat_r = dict(jax.tree_util.tree_leaves_with_path(restored))
  for path, want in jax.tree_util.tree_leaves_with_path(target):
    got = flat_r.get(path)
    if got is None or tuple(np.shape(got)) != tuple(want.shape):
      raise CheckpointMismatchError(
        f'Checkpoint at {where}: {jax.tree_util.keystr(path)} has shape '
        f'{None if got is None else np.shape(got)}, the model expects '
        f'{want.shape}.'
      )


# ---------------------------------------------------------------------------
# Exported weights.

MODEL_JSON = 'model.json'


def save_pretrained(
  directory: str,
  variables: Mapping[str, Any],
  fields: Mapping[str, Any],
  *,
  class_names: Sequence[str] | None = None,
  eval_crop_fraction: float | None = None,
) -> epath.Path:
  """Writes `{'params', 'batch_stats'}` and `model.json` to `directory`.

  `model.json` holds the model fields and, when given, the classes' names
  in label order (`class_names`) and the central-crop fraction of the eval
  preprocessing the weights were scored with (`eval_crop_fraction`), which
  `predict` uses.
  """
  path = epath.Path(directory).resolve()
  path.mkdir(parents=True, exist_ok=True)
  host = jax.device_get(
    {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  )
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path / 'variables', host, force=True)
  record = dict(fields)
  if class_names:
    record['class_names'] = list(class_names)
  if eval_crop_fraction is not None:
    record['eval_crop_fraction'] = float(eval_crop_fraction)
  # Written last: its presence marks a complete export.
  (path / MODEL_JSON).write_text(json.dumps(record, indent=2))
  return path


def _model_fields(record: Mapping[str, Any]) -> dict[str, Any]:
  """The model fields of a model.json or checkpoint record, without the
  descriptive keys (class names, preprocessing) saved beside them."""
  return {k: v for k, v in record.items() if k in models.RECORDED_FIELDS}


def load_pretrained(
  directory: str, expected: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Loads exported weights, or the latest checkpoint of a training workdir.

  Returns the variables `{'params', 'batch_stats'}` (EMA weights in place of
  `params` when a training checkpoint has them and `use_ema`) and the model
  fields. `pretrained_info` reads what else is recorded beside them.
  """
  path = _absolute(directory)
  expected = expected or {}
  if (path / MODEL_JSON).exists():
    fields = _model_fields(json.loads((path / MODEL_JSON).read_text()))
    check_fields(fields, expected, str(path))
    with ocp.StandardCheckpointer() as checkpointer:
      variables = checkpointer.restore(path / 'variables')
    return dict(variables), fields
  if (path / 'checkpoints').exists():
    manager = TrainCheckpointer(os.fspath(path), keep=1_000_000)
    step = manager.latest_step()
    if step is not None:
      meta = manager.read_meta(step)
      check_fields(meta.get('model', {}), expected, str(path))
      restored = manager.restore_raw(step)
      manager.close()
      params = restored['ema_params'] or restored['params']
      logging.info(
        'Loaded %s weights of step %d from %s.',
        'EMA' if restored['ema_params'] else 'raw',
        step,
        path,
      )
      return {
        'params': params,
        'batch_stats': restored['batch_stats'],
      }, _model_fields(meta['model'])
  raise WeightsNotFoundError(
    f'No weights at {path}: expected model.json and variables/ (from '
    '`python -m mobilenet_flax.keras_import`) or a training workdir with '
    'checkpoints/.'
  )


def _absolute(directory: str) -> epath.Path:
  """`directory` as an absolute path (orbax refuses relative ones); URLs
  such as gs://... already are."""
  directory = os.fspath(directory)
  if '://' not in directory:
    directory = os.path.abspath(directory)
  return epath.Path(directory)


def pretrained_info(directory: str) -> dict[str, Any]:
  """What is recorded beside the weights `load_pretrained` reads from
  `directory`: `class_names` (a list in label order, or None) and
  `eval_crop_fraction` (or None). Training checkpoints record the dataset's
  class names and the run's config; exports record what `save_pretrained`
  was given (Keras conversions: neither)."""
  path = _absolute(directory)
  info = {'class_names': None, 'eval_crop_fraction': None}
  if (path / MODEL_JSON).exists():
    record = json.loads((path / MODEL_JSON).read_text())
    info.update({k: record.get(k) for k in info})
  elif (path / 'checkpoints').exists():
    manager = TrainCheckpointer(os.fspath(path), keep=1_000_000)
    step = manager.latest_step()
    meta = manager.read_meta(step) if step is not None else {}
    manager.close()
    info['class_names'] = meta.get('class_names') or None
    config = meta.get('config')
    if isinstance(config, str):
      try:
        config = json.loads(config)
      except json.JSONDecodeError:
        config = None
    if isinstance(config, dict):
      info['eval_crop_fraction'] = config.get('eval_crop_fraction')
  return info


def export_pretrained(workdir: str, directory: str) -> epath.Path:
  """Exports the weights `load_pretrained(workdir)` reads (a training run's
  latest checkpoint, EMA weights when kept) with their class names and eval
  crop to `directory`, a standalone weights folder."""
  variables, fields = load_pretrained(workdir)
  info = pretrained_info(workdir)
  return save_pretrained(
    directory,
    variables,
    fields,
    class_names=info['class_names'],
    eval_crop_fraction=info['eval_crop_fraction'],
  )


def reuse_pretrained(
  loaded: Mapping[str, Any], model_variables: Mapping[str, Any], where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Fits loaded weights to a model whose classifier may differ (fine-tuning).

  Every array of `model_variables` (the model's freshly initialised
  variables, or their shapes) is taken from `loaded` where the shapes
  agree. The classifier (`logits`) keeps its fresh initialisation when the
  loaded one has another number of classes. Any other difference, a missing
  or extra layer or another shape, is a CheckpointMismatchError naming it.

  Returns:
    (variables, report): the variables to start from, and what was done:
    `reused` and `new` (sorted layer names) and `loaded_classes`.
  """
  flat_loaded = {
    jax.tree_util.keystr(p): v
    for p, v in jax.tree_util.tree_leaves_with_path(loaded)
  }
  classifier = "['params']['logits']"
  out, problems, new_layers = {}, [], set()
  leaves = jax.tree_util.tree_leaves_with_path(model_variables)
  for path, fresh in leaves:
    key = jax.tree_util.keystr(path)
    layer = path[1].key if len(path) > 1 else key
    got = flat_loaded.pop(key, None)
    if got is None:
      problems.append(f'{key}: missing in the weights')
    elif tuple(np.shape(got)) == tuple(np.shape(fresh)):
      out[key] = np.asarray(got)
      continue
    elif key.startswith(classifier):
      new_layers.add(layer)
    else:
      problems.append(
        f'{key}: the weights have shape {tuple(np.shape(got))}, the model '
        f'{tuple(np.shape(fresh))}'
      )
    out[key] = fresh
  problems.extend(f'{key}: not in the model' for key in sorted(flat_loaded))
  if problems:
    shown = problems[:8] + (
      [f'... and {len(problems) - 8} more'] if len(problems) > 8 else []
    )
    raise CheckpointMismatchError(
      f'Weights at {where} do not fit the model:\n'
      + '\n'.join(f'  - {p}' for p in shown)
      + '\nOnly the classifier may differ (another class count); check '
      'alpha and the model fields.'
    )
  variables = jax.tree_util.tree_unflatten(
    jax.tree_util.tree_structure(model_variables),
    [out[jax.tree_util.keystr(p)] for p, _ in leaves],
  )
  reused = sorted(
    {path[1].key for path, _ in leaves if len(path) > 1} - new_layers
  )
  loaded_logits = loaded.get('params', {}).get('logits', {}).get('bias')
  return variables, {
    'reused': reused,
    'new': sorted(new_layers),
    'loaded_classes': None
    if loaded_logits is None
    else int(np.shape(loaded_logits)[-1]),
  }
