"""The files of a run's workdir, and how to read them.

One owner for what training, evaluation, the sweep runner and the report
write and read besides checkpoints:

  <run>/results.json        a training run's outcome (train.py writes it)
  <run>/eval_results.json   a `--mode=eval` score of some weights
  <sweep>/sweep.json        a sweep's points and how each ended

JSON files are written whole or not at all (a temporary file renamed into
place), so a reader never sees half a file. Which top-1 a table shows (the
EMA weights' or the raw weights') is decided here too, so the sweep's
summary and the report agree.
"""

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from etils import epath

RESULTS_JSON = 'results.json'
EVAL_RESULTS_JSON = 'eval_results.json'
SWEEP_JSON = 'sweep.json'


def write_json(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
  """Writes `record` to `path` atomically (local paths and gs:// alike)."""
  path = epath.Path(path)
  tmp = path.parent / f'.{path.name}.{uuid.uuid4().hex}.tmp'
  tmp.write_text(json.dumps(record, indent=2))
  tmp.replace(path)


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
