"""Checkpoints: resumable training state and exported weights.

Training checkpoints live in `<workdir>/checkpoints/<step>/` and hold the whole
train state (parameters, batch statistics, optimizer state, EMA weights, RNG
key, step) beside a JSON record of the model fields and the data position.
Orbax writes each one to a temporary directory and renames it when complete,
so a crash or preemption mid-save leaves the previous checkpoints intact.

Exported weights (`save_pretrained`) are `{'params', 'batch_stats'}` plus a
`model.json` of the fields needed to rebuild the model, and where known the
classes' names and the eval crop. `reuse_pretrained` fits weights with
another classifier to a model (fine-tuning).
"""

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import serialization

from mobilenet_flax import errors, models


class CheckpointMismatchError(errors.Error, ValueError):
  """A checkpoint that does not fit the model being built."""


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
  """Saves and restores the train state of one workdir."""

  def __init__(self, workdir: str, *, keep: int):
    # Orbax wants absolute paths; gs:// and other URLs already are.
    if '://' not in workdir:
      workdir = os.path.abspath(workdir)
    self.directory = epath.Path(workdir) / 'checkpoints'
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
    """Saves `state` (host or device arrays, unreplicated) at `step`."""
    if step in self._manager.all_steps():
      return
    host_state = serialization.to_state_dict(jax.device_get(state))
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(host_state),
        meta=ocp.args.JsonSave(dict(meta)),
      ),
      force=True,
    )

  def read_meta(self, step: int) -> dict[str, Any]:
    restored = self._manager.restore(
      step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )
    return dict(restored['meta'])

  def restore(
    self, step: int, template: Any, expected: Mapping[str, Any]
  ) -> tuple[Any, dict[str, Any]]:
    """Restores the state at `step` into the structure of `template`."""
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
    except (ValueError, KeyError) as e:
      raise CheckpointMismatchError(
        f'Checkpoint at {where} does not match the train state: {e}'
      ) from e
    _check_shapes(restored, target, where)
    return serialization.from_state_dict(template, restored), meta

  def restore_raw(self, step: int) -> dict[str, Any]:
    """The state at `step` as saved (nested dicts of numpy arrays)."""
    return self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )['state']

  def reached_preemption(self, step: int) -> bool:
    """True on every process once JAX's preemption sync point is reached
    (multi-process runs; SIGTERM marks it)."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    """Blocks until any save in flight is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


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
  raise FileNotFoundError(
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
