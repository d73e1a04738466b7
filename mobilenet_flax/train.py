"""The host side of training: feeding the devices, the loop, evaluation,
checkpoints and the run's files.

The device side (train state, the pmapped steps) is `steps.py`. The two
entry points are at the end: `train_and_evaluate`, which trains a config in
a workdir (resuming when it holds checkpoints), and `evaluate`, which
scores saved weights. Both take the data source as an argument, so tests
and other callers can feed their own; by default it is `input_pipeline`
(tfds, imported only when needed: the train step never needs TensorFlow)
or `synthetic` batches.
"""

import contextlib
import dataclasses
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import jax_utils, traverse_util
from jax.experimental import multihost_utils

from mobilenet_flax import (
  checkpoints,
  cli,
  complexity,
  config_lib,
  distributed,
  errors,
  models,
  optim,
  run_files,
  steps,
  synthetic,
)

# ---------------------------------------------------------------------------
# Feeding the devices and scoring.


def shard(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Reshapes each array to (local devices, per-device batch, ...)."""
  n = jax.local_device_count()
  return {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}


def device_batches(batches: Any, prefetch: int = 2) -> Iterator[dict]:
  """Batches (a tf.data dataset or an iterable of numpy dicts), sharded and
  put on the devices ahead of use."""
  if hasattr(batches, 'as_numpy_iterator'):
    batches = batches.as_numpy_iterator()
  return jax_utils.prefetch_to_device(map(shard, batches), prefetch)


def evaluate_batches(
  p_eval_step: Callable, variables_repl: Any, batches: Iterator[dict]
) -> dict[str, float]:
  """Loss, top-1 and top-5 over every unmasked example of `batches`."""
  totals = None
  for batch in batches:
    sums = p_eval_step(variables_repl, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    raise ValueError('The eval split produced no batches.')
  totals = jax.tree.map(lambda x: float(x[0]), jax.device_get(totals))
  count = max(totals['count'], 1.0)
  return {
    'loss': totals['loss'] / count,
    'top1': totals['top1'] / count,
    'top5': totals['top5'] / count,
    'examples': int(totals['count']),
    'corrupt': int(totals['corrupt']),
  }


def evaluate_state(
  p_eval_step: Callable, state_repl: steps.TrainState, eval_ds: Any
) -> dict[str, float]:
  """Scores the raw weights and, when EMA is on, the EMA weights (their
  metrics prefixed `ema_`)."""
  sets = {'': state_repl.params}
  if state_repl.ema_params:
    sets['ema_'] = state_repl.ema_params
  results = {}
  for prefix, params in sets.items():
    variables = {'params': params, 'batch_stats': state_repl.batch_stats}
    metrics = evaluate_batches(p_eval_step, variables, device_batches(eval_ds))
    results.update({f'{prefix}{k}': v for k, v in metrics.items()})
  return results


# ---------------------------------------------------------------------------
# What the loop reports: TensorBoard events and one log line per event.


class _EventWriter:
  """TensorBoard events (process 0 only). The console gets the loop's own
  lines, not a copy of every scalar.

  Written with TensorBoard's record format and protos alone, without
  TensorFlow: a run on synthetic data never imports it, and a machine
  without TensorFlow still gets its curves.
  """

  def __init__(self, workdir: epath.Path, is_chief: bool):
    self._file = None
    if not is_chief:
      return
    try:
      from tensorboard.compat.proto import event_pb2, summary_pb2
      from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as e:
      logging.warning('No TensorBoard events (%s).', e)
      return

    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    # TensorFlow's naming, which TensorBoard looks for.
    name = (
      f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}'
      f'.{os.getpid()}.0.v2'
    )
    self._path = workdir / name
    self._file = self._path.open('wb')
    self._records = RecordWriter(self._file)
    self._write(self._event(file_version='brain.Event:2'))

  def _write(self, event: Any) -> None:
    event.wall_time = time.time()
    try:
      self._records.write(event.SerializeToString())
      # TensorBoard follows the file as it grows.
      self._file.flush()
    except OSError as e:
      # The curves are not worth a run: a full disk is reported by the
      # checkpoint that cannot be written.
      logging.warning(
        'No more TensorBoard events: writing %s: %s', self._path, e
      )
      self.close()

  def scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._file is not None:
      values = [
        self._summary.Value(tag=k, simple_value=float(v))
        for k, v in scalars.items()
      ]
      self._write(self._event(step=step, summary=self._summary(value=values)))

  def hparams(self, config: ml_collections.ConfigDict) -> None:
    if self._file is not None:
      from tensorboard.plugins.hparams import summary_v2 as hparams_summary

      flat = traverse_util.flatten_dict(config.to_dict(), sep='.')
      summary = hparams_summary.hparams_pb(
        {
          k: v if isinstance(v, int | float | str | bool) else str(v)
          for k, v in flat.items()
        }
      )
      self._write(self._event(step=0, summary=summary))

  def close(self) -> None:
    if self._file is not None:
      file, self._file = self._file, None
      with contextlib.suppress(OSError):
        file.close()


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


class _TrainLog:
  """Averages the step metrics between log lines and times the steps.

  The clock starts when the segment's first step has finished: that step
  includes compiling, and would make the first rate and ETA meaningless.
  Time spent in `paused()` (evaluating, saving) is left out as well, so
  images/s and the ETA are the training steps' own.
  """

  def __init__(self, writer: _EventWriter, num_train_steps: int):
    self._writer = writer
    self._num_train_steps = num_train_steps
    self._pending = []
    # (time, step) of the last log line, or of the end of the first step.
    self._clock = None

  def add(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
    self._pending.append(metrics)
    if self._clock is None:
      jax.block_until_ready(metrics)
      self._clock = (time.time(), step)

  @contextlib.contextmanager
  def paused(self, state: Any) -> Iterator[None]:
    # Steps still in flight are training time: wait for them first.
    jax.block_until_ready(state)
    start = time.time()
    try:
      yield
    finally:
      if self._clock is not None:
        clock, step = self._clock
        self._clock = (clock + time.time() - start, step)

  def write(self, step: int) -> None:
    host = jax.device_get(
      [jax.tree.map(lambda x: x[0], m) for m in self._pending]
    )
    summary = {
      k: float(np.mean([m[k] for m in host]))
      for k in (
        'loss',
        'cross_entropy',
        'accuracy',
        'learning_rate',
        'grad_norm',
      )
    }
    summary['corrupt_examples'] = float(sum(m['corrupt'] for m in host))
    (start, start_step), now = self._clock, time.time()
    speed = ''
    if step > start_step:
      timed = host[len(host) - (step - start_step) :]
      rate = sum(float(m['examples']) for m in timed) / max(now - start, 1e-9)
      eta = (self._num_train_steps - step) * (now - start) / (step - start_step)
      summary['images_per_second'] = rate
      summary['images_per_second_per_device'] = rate / jax.device_count()
      speed = f', {rate:.1f} images/s, ETA {_duration(eta)}'
    self._clock, self._pending = (now, step), []
    self._writer.scalars(step, {f'train_{k}': v for k, v in summary.items()})
    corrupt = summary['corrupt_examples']
    logging.info(
      'step %d/%d: loss %.4f, accuracy %.4f, lr %.4g%s%s',
      step,
      self._num_train_steps,
      summary['loss'],
      summary['accuracy'],
      summary['learning_rate'],
      speed,
      f', {corrupt:.0f} corrupt images' if corrupt else '',
    )


def _log_eval(step: int, results: Mapping[str, Any], num_batches: int):
  logging.info(
    'eval at step %d: %s over %d examples (%d batches)',
    step,
    ', '.join(
      f'{k}={v:.4f}' for k, v in results.items() if isinstance(v, float)
    ),
    results['examples'],
    num_batches,
  )


# ---------------------------------------------------------------------------
# Stopping: preemption and non-finite values.


class _PreemptionWatcher:
  """Turns SIGTERM (what a preempted TPU VM gets) into a flag the loop
  polls between steps, so the checkpoint is written from a consistent
  state."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    # With several processes, JAX's own preemption notifier owns SIGTERM.
    if (
      jax.process_count() == 1
      and threading.current_thread() is threading.main_thread()
    ):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint, then exiting.')
    self.requested = True

  def should_stop(self, step: int, manager_check: Callable[[int], bool]):
    # With several processes, JAX's preemption sync point makes every host
    # stop at the same step; alone, the flag is enough.
    if jax.process_count() > 1:
      return manager_check(step)
    return self.requested

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False


class NonFiniteError(errors.Error, FloatingPointError):
  """The loss, the gradients or the new state became NaN or infinite."""


def _check_finite(state_repl: steps.TrainState) -> None:
  bad = int(jax.device_get(state_repl.nonfinite_step[0]))
  if bad >= 0:
    raise NonFiniteError(
      f'Loss, gradients or weights were not finite at step {bad + 1}; '
      'training stopped without applying that update. Checkpoints saved '
      'before it are intact. Lower the learning rate, or check the data.'
    )


# ---------------------------------------------------------------------------
# Entry points.


def data_source(config: ml_collections.ConfigDict) -> Any:
  """`input_pipeline` (tfds; imports TensorFlow) or synthetic batches."""
  if config.dataset == synthetic.NAME:
    return synthetic
  # Imported here so that the model and the train step never need
  # TensorFlow.
  cli.import_tensorflow()
  with cli.quiet_native_logs():
    import input_pipeline

  return input_pipeline


@dataclasses.dataclass
class _Run:
  """What both entry points build from a config before any work."""

  config: ml_collections.ConfigDict
  workdir: epath.Path
  data: Any
  info: Any
  derived: config_lib.Derived
  model: models.MobileNetV1
  fields: dict[str, Any]
  # The dataset's class names in label order (empty when it has none);
  # recorded with the weights so that predictions can be named.
  class_names: list[str]


def _setup(
  config: ml_collections.ConfigDict, workdir: str, data: Any | None
) -> _Run:
  """The run's pieces from a config its entry point has validated."""
  data = data or data_source(config)
  info = data.get_dataset_info(config)
  derived = config_lib.derive(
    config,
    num_train_examples=info.num_train_examples,
    device_count=jax.device_count(),
    process_count=jax.process_count(),
  )
  model = steps.create_model(config, info.num_classes)
  return _Run(
    config=config,
    workdir=epath.Path(workdir),
    data=data,
    info=info,
    derived=derived,
    model=model,
    fields=models.recorded_fields(model, config.resolution),
    class_names=list(getattr(info, 'class_names', ())),
  )


def _initial_state(run: _Run, tx: Any) -> steps.TrainState:
  """A fresh train state, from `config.init_from`'s weights when set.

  Weights whose classifier has another number of classes than the dataset
  (fine-tuning ImageNet weights on a small dataset) give every layer but
  the classifier; the classifier starts from the same initialisation a
  run from scratch would have. Any other mismatch (alpha, a missing layer)
  is a CheckpointMismatchError.
  """
  rng = jax.random.PRNGKey(run.config.seed)
  variables = None
  if run.config.init_from:
    loaded, _ = checkpoints.load_pretrained(
      run.config.init_from,
      {'alpha': run.config.model.alpha, 'num_classes': None},
    )
    # The split `create_train_state` makes, so that a new classifier is
    # initialised exactly as in a run from scratch with the same seed.
    init_rng, _ = jax.random.split(rng)
    shapes = jax.eval_shape(
      lambda: steps.initial_variables(
        run.model, run.config.resolution, init_rng
      )
    )
    variables, report = checkpoints.reuse_pretrained(
      loaded, shapes, run.config.init_from
    )
    if report['new']:
      fresh = steps.initial_variables(
        run.model, run.config.resolution, init_rng
      )
      variables, report = checkpoints.reuse_pretrained(
        loaded, fresh, run.config.init_from
      )
      logging.info(
        'Fine-tuning from %s: reused %d layers (every layer but the '
        'classifier); new classifier %s for %d classes (the weights have '
        '%d), initialised as from scratch.',
        run.config.init_from,
        len(report['reused']),
        ', '.join(report['new']),
        run.info.num_classes,
        report['loaded_classes'],
      )
    else:
      logging.info(
        'Starting from %s: all %d layers reused.',
        run.config.init_from,
        len(report['reused']),
      )
  return steps.create_train_state(run.config, run.model, tx, rng, variables)


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, data: Any | None = None
) -> dict[str, Any]:
  """Trains, evaluating and checkpointing along the way; resumes if
  `workdir` holds checkpoints.

  Args:
    config: a config from `configs/` (validated here before any work).
    workdir: where checkpoints, TensorBoard events and `results.json` go.
    data: the data source (`get_dataset_info`, `create_train_dataset`,
      `create_eval_dataset`); default: `data_source(config)`.

  Returns:
    The contents of `results.json`: the config, final eval metrics,
    parameter and mult-add counts, and training time. `status` is
    'completed', or 'preempted' when SIGTERM stopped the run after a
    checkpoint.

  Raises:
    run_files.WorkdirLockedError: another run is training in `workdir`.
    checkpoints.CheckpointDamagedError: no checkpoint of `workdir`
      restores (damaged ones are moved aside and older ones tried first).
    checkpoints.CheckpointWriteError: a checkpoint could not be written.
    NonFiniteError: training produced a NaN or an infinity.
  """
  start_time = time.time()
  config_lib.validate(config)
  # The workdir before the data: one that cannot be created, is not shared
  # by all hosts or is in use is reported in seconds, before TensorFlow
  # loads and the dataset is prepared.
  workdir = epath.Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise run_files.RunFileError(
      f'Cannot create the workdir {workdir}: {e.strerror or e}.'
    ) from e
  distributed.check_shared_workdir(str(workdir))
  # Before anything is written: a second run in this workdir would mix its
  # checkpoints and results with this one's.
  with _workdir_lock(workdir):
    return _train(_setup(config, str(workdir), data), start_time)


@contextlib.contextmanager
def _workdir_lock(workdir: epath.Path) -> Iterator[None]:
  """Holds the workdir's lock (run_files.WorkdirLock) for the run.

  Process 0 takes it for all processes of a multi-process run; the others
  learn whether it could, so that all stop when it could not.
  """
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = run_files.WorkdirLock(workdir)
      lock.acquire()
    except Exception as e:
      lock, error = None, e
  if jax.process_count() > 1:
    locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not int(locked) and error is None:
      raise run_files.WorkdirLockedError(
        f'Process 0 could not lock the workdir {workdir}; its output says why.'
      )
  if error is not None:
    raise error
  try:
    yield
  finally:
    if lock is not None:
      lock.release()


def _train(run: _Run, start_time: float) -> dict[str, Any]:
  """The body of `train_and_evaluate`, run while holding the lock."""
  config, derived = run.config, run.derived
  is_chief = jax.process_index() == 0
  writer = _EventWriter(run.workdir, is_chief)

  learning_rate_fn = optim.create_learning_rate_fn(config, derived)
  tx = optim.create_optimizer(config, learning_rate_fn)
  state = _initial_state(run, tx)
  ckpt = checkpoints.TrainCheckpointer(
    str(run.workdir), keep=config.keep_checkpoints, training=True
  )
  examples_seen, history = 0, []
  # The newest checkpoint that restores: damaged ones are moved aside (with
  # a warning) and older ones tried.
  restored = ckpt.restore_latest(state, run.fields)
  if restored is not None:
    latest, state, meta = restored
    examples_seen = meta['train_examples_seen']
    history = meta.get('segments', [])
    logging.info(
      'Resumed from step %d (%d examples seen).', latest, examples_seen
    )
  else:
    writer.hparams(config)
  start_step = int(state.step)

  train_iter = device_batches(
    run.data.create_train_dataset(
      config,
      batch_size=derived.per_process_batch_size,
      seed=config.seed,
      start_example=examples_seen // jax.process_count(),
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
  )
  # Built once, so that `cache_eval` keeps the encoded records in memory
  # across evaluations.
  eval_ds, num_eval_batches = run.data.create_eval_dataset(
    config,
    batch_size=derived.per_process_batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  p_train_step = steps.make_train_step(
    config, run.model, tx, learning_rate_fn, state.params
  )
  p_eval_step = steps.make_eval_step(run.model)
  profiler = _profiler(config, run.workdir, is_chief)

  def segments(step: int, status: str) -> list[dict[str, Any]]:
    """Every training segment so far, this one included."""
    if step == start_step:
      return history
    this = {
      'start_step': start_step,
      'end_step': step,
      'seconds': round(time.time() - start_time, 3),
      'status': status,
    }
    return [*history, this]

  # The segments the last save recorded; results.json reports the same, so
  # that a later run that restores them (re-running a finished run) writes
  # the same training time.
  saved_segments = history

  def save(step: int, state_repl: steps.TrainState, status: str) -> None:
    nonlocal saved_segments
    _check_finite(state_repl)
    saved = segments(step, status)
    ckpt.save(
      step,
      steps.unreplicate(state_repl),
      {
        'model': run.fields,
        # Cumulative, so the data position survives a change of batch size
        # between restarts.
        'train_examples_seen': examples_seen
        + (step - start_step) * derived.global_batch_size,
        'segments': saved,
        'config': config.to_json_best_effort(),
        'class_names': run.class_names,
      },
    )
    saved_segments = saved

  state_repl = steps.replicate(state)
  del state
  logging.info(
    'Training %g MobileNet-%d on %s from step %d to %d: %d steps/epoch, '
    'global batch %d on %d devices, learning rate %.4g.',
    run.model.alpha,
    config.resolution,
    config.dataset,
    start_step,
    derived.num_train_steps,
    derived.steps_per_epoch,
    derived.global_batch_size,
    jax.device_count(),
    derived.learning_rate,
  )
  status = 'completed'
  eval_results, last_eval_step = {}, None
  train_log = _TrainLog(writer, derived.num_train_steps)
  step = start_step
  # Whatever ends the loop (done, preempted, NaN, a crash), a save in
  # flight is finished before control leaves: an exception must not lose
  # the last good checkpoint.
  stopped_by_error = True
  try:
    with _PreemptionWatcher() as preemption:
      while step < derived.num_train_steps:
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          batch = next(train_iter)
          state_repl, metrics = p_train_step(state_repl, batch)
        step += 1
        # A checkpoint written in the background may have failed (a full
        # disk): stop at once, not at the next save.
        ckpt.check()
        train_log.add(step, metrics)
        if profiler:
          profiler(step)
        if (
          step % config.log_every_steps == 0 or step == derived.num_train_steps
        ):
          _check_finite(state_repl)
          train_log.write(step)
        if step % derived.eval_every_steps == 0:
          with train_log.paused(state_repl):
            eval_results = evaluate_state(p_eval_step, state_repl, eval_ds)
          last_eval_step = step
          writer.scalars(
            step, {f'eval_{k}': v for k, v in eval_results.items()}
          )
          _log_eval(step, eval_results, num_eval_batches)
        if preemption.should_stop(step, ckpt.reached_preemption):
          status = 'preempted'
          save(step, state_repl, status)
          break
        # The last step's checkpoint is saved after the final evaluation,
        # as 'completed': one checkpoint per step, recording how it ended.
        if (
          step % config.checkpoint_every_steps == 0
          and step < derived.num_train_steps
        ):
          with train_log.paused(state_repl):
            save(step, state_repl, 'running')

      if status == 'completed':
        if last_eval_step != step:
          eval_results = evaluate_state(p_eval_step, state_repl, eval_ds)
          writer.scalars(
            step, {f'eval_{k}': v for k, v in eval_results.items()}
          )
          _log_eval(step, eval_results, num_eval_batches)
        save(step, state_repl, status)
    stopped_by_error = False
  finally:
    try:
      # Waits for the last save; raises CheckpointWriteError if it failed.
      ckpt.close()
    except Exception as e:
      if not stopped_by_error:
        raise
      # The error that stopped the loop is the one to report.
      logging.warning('The last checkpoint save failed too: %s', e)
    finally:
      writer.close()

  results = _results(run, step, status, eval_results, saved_segments)
  if is_chief:
    run_files.write_results(run.workdir, results)
  return results


def _profiler(
  config: ml_collections.ConfigDict, workdir: epath.Path, is_chief: bool
) -> Callable[[int], Any] | None:
  """clu's profiler hook, when `config.profile` asks for a trace."""
  if not (config.profile and is_chief):
    return None
  from clu import periodic_actions

  return periodic_actions.Profile(logdir=str(workdir), num_profile_steps=5)


def _results(
  run: _Run,
  step: int,
  status: str,
  eval_results: dict,
  segments: list[dict[str, Any]],
) -> dict[str, Any]:
  counts = complexity.count(
    run.model.clone(axis_name=None), run.config.resolution
  )
  return {
    'status': status,
    'step': step,
    'num_train_steps': run.derived.num_train_steps,
    'epochs': step / run.derived.steps_per_epoch,
    'model': run.fields,
    'params': counts.params,
    'batch_stats': counts.batch_stats,
    'mult_adds': counts.mult_adds,
    'eval': eval_results,
    'dataset': run.config.dataset,
    'eval_split': run.info.eval_split,
    # The dataset's names for the model's outputs (empty if it has none).
    'class_names': run.class_names,
    # Training time over every segment (a resumed run adds up its tries);
    # each segment runs from the start of its process to its last save.
    'wall_time_seconds': round(sum(s['seconds'] for s in segments), 3),
    'segments': segments,
    'device_count': jax.device_count(),
    'backend': jax.default_backend(),
    'config': json.loads(run.config.to_json_best_effort()),
  }


def evaluate(
  config: ml_collections.ConfigDict, workdir: str, data: Any | None = None
) -> dict:
  """Scores saved weights on the whole eval split.

  Weights come from `config.init_from` (exported or imported weights, or
  another run's workdir) when set, else from the latest checkpoint in
  `workdir`. Logs the scores, then writes `eval_results.json` to
  `workdir`.
  """
  config_lib.validate(config)
  run = _setup(config, workdir, data)
  source = config.init_from or workdir
  expected = {'alpha': config.model.alpha, 'num_classes': run.info.num_classes}
  variables, fields = checkpoints.load_pretrained(source, expected)
  eval_ds, _ = run.data.create_eval_dataset(
    config,
    batch_size=run.derived.per_process_batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  metrics = evaluate_batches(
    steps.make_eval_step(run.model),
    steps.replicate(variables),
    device_batches(eval_ds),
  )
  results = {
    'weights': str(source),
    'weights_model': fields,
    'model': run.fields,
    'dataset': config.dataset,
    'eval_split': run.info.eval_split,
    'eval': metrics,
  }
  # Logged before anything is written: the scores survive an unwritable
  # workdir.
  logging.info(
    'eval of %s on %s/%s: top-1 %.4f, top-5 %.4f, loss %.4f over %d examples',
    source,
    config.dataset,
    run.info.eval_split,
    metrics['top1'],
    metrics['top5'],
    metrics['loss'],
    metrics['examples'],
  )
  if jax.process_index() == 0:
    run.workdir.mkdir(parents=True, exist_ok=True)
    run_files.write_eval_results(run.workdir, results)
  return results
