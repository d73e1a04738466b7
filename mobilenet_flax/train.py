"""Training and evaluation under `jax.pmap`.

The functions follow the data: model and state construction, the pmapped
train and eval steps, host-side helpers that feed them, then
`train_and_evaluate`, which ties everything to a workdir, and `evaluate`,
which scores saved weights.

Nothing here imports TensorFlow at module level: the input pipeline is
imported inside the functions that read data, so the train step can be
benchmarked on machines without TensorFlow.
"""

import dataclasses
import functools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import jax_utils
from jax import lax
from jax.experimental import multihost_utils

from mobilenet_flax import (
  checkpoints,
  complexity,
  config_lib,
  distributed,
  models,
  optim,
  synthetic,
)

AXIS = 'batch'


# ---------------------------------------------------------------------------
# Model and train state.


def create_model(
  config: ml_collections.ConfigDict, num_classes: int, **overrides: Any
) -> models.MobileNetV1:
  """The model a config describes; batch norm syncs over the pmap axis."""
  fields = dict(
    alpha=config.alpha,
    num_classes=num_classes,
    dropout_rate=config.dropout_rate,
    activation=config.activation,
    bn_momentum=config.bn_momentum,
    bn_epsilon=config.bn_epsilon,
    axis_name=AXIS,
    dtype=jnp.bfloat16 if config.dtype == 'bfloat16' else jnp.float32,
    depthwise_impl=config.depthwise_impl,
    kernel_init=flax.linen.initializers.truncated_normal(config.init_stddev),
  )
  fields.update(overrides)
  return models.MobileNetV1(**fields)


def model_fields(config: ml_collections.ConfigDict, num_classes: int) -> dict:
  """What a checkpoint records to rebuild (and check) the model."""
  return dict(
    alpha=config.alpha, resolution=config.resolution, num_classes=num_classes
  )


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # Exponential moving average of `params`; an empty dict when off.
  ema_params: Any
  # Base key; each step folds in the step number and the device index.
  rng: jax.Array
  # First step whose loss or gradients were not finite, or -1. Once set,
  # updates stop, so the state stays the last good one.
  nonfinite_step: jax.Array


def initial_variables(
  model: models.MobileNetV1, resolution: int, rng: jax.Array
) -> dict:
  # Initialised outside pmap, so batch norm must not look for the axis.
  x = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
  init = jax.jit(model.clone(axis_name=None).init, static_argnames='train')
  return init(rng, x, train=False)


def create_train_state(
  config: ml_collections.ConfigDict,
  model: models.MobileNetV1,
  tx: optax.GradientTransformation,
  rng: jax.Array,
  variables: Mapping[str, Any] | None = None,
) -> TrainState:
  """A fresh state; `variables` (e.g. imported weights) replace the init."""
  init_rng, state_rng = jax.random.split(rng)
  if variables is None:
    variables = initial_variables(model, config.resolution, init_rng)
  params = variables['params']
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables['batch_stats'],
    opt_state=tx.init(params),
    ema_params=jax.tree.map(jnp.copy, params) if config.ema_decay else {},
    rng=state_rng,
    nonfinite_step=-jnp.ones((), jnp.int32),
  )


# ---------------------------------------------------------------------------
# Steps (run under pmap; each device sees its shard of the batch).


def cross_entropy(
  logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing."""
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
  return optax.softmax_cross_entropy(logits, targets)


def _top_k_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  k = min(k, logits.shape[-1])
  _, top = lax.top_k(logits, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def train_step(
  state: TrainState,
  batch: Mapping[str, jax.Array],
  *,
  model: models.MobileNetV1,
  tx: optax.GradientTransformation,
  learning_rate_fn: optax.Schedule,
  decay_mask: Any,
  weight_decay: float,
  label_smoothing: float,
  ema_decay: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on the global batch."""
  mask = batch['mask']
  # Dividing local sums by the global count makes the summed gradients the
  # exact gradient of the global mean, even with masked examples.
  count = lax.psum(jnp.sum(mask), AXIS)
  rng = jax.random.fold_in(state.rng, state.step)
  rng = jax.random.fold_in(rng, lax.axis_index(AXIS))

  def loss_fn(params):
    logits, new_vars = model.apply(
      {'params': params, 'batch_stats': state.batch_stats},
      batch['image'],
      train=True,
      rngs={'dropout': rng},
      mutable=['batch_stats'],
    )
    ce = cross_entropy(logits, batch['label'], label_smoothing)
    loss = jnp.sum(ce * mask) / jnp.maximum(count, 1)
    return loss, (logits, new_vars['batch_stats'])

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (data_loss, (logits, batch_stats)), grads = grad_fn(state.params)
  data_loss = lax.psum(data_loss, AXIS)
  grads = lax.psum(grads, AXIS)
  # L2 enters once, after the reduction: d/dw 0.5 * wd * w^2 = wd * w.
  grads = jax.tree.map(
    lambda g, w, m: g + weight_decay * w if m else g,
    grads,
    state.params,
    decay_mask,
  )
  loss = data_loss + weight_decay * optim.l2_loss(state.params, decay_mask)
  grad_norm = optax.global_norm(grads)

  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema_params = state.ema_params
  if ema_decay:
    # TF's num_updates warm-up: a short run's EMA is not stuck at the init.
    step = state.step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1 + step) / (10 + step))
    ema_params = jax.tree.map(
      lambda e, p: decay * e + (1 - decay) * p, state.ema_params, params
    )

  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  healthy = finite & (state.nonfinite_step < 0)
  keep = lambda new, old: jax.tree.map(
    lambda n, o: jnp.where(healthy, n, o), new, old
  )
  new_state = state.replace(
    step=state.step + 1,
    params=keep(params, state.params),
    batch_stats=keep(batch_stats, state.batch_stats),
    opt_state=keep(opt_state, state.opt_state),
    ema_params=keep(ema_params, state.ema_params),
    nonfinite_step=jnp.where(
      (state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step
    ),
  )
  correct = _top_k_correct(logits, batch['label'], 1) * mask
  metrics = {
    'loss': loss,
    'cross_entropy': data_loss,
    'accuracy': lax.psum(jnp.sum(correct), AXIS) / jnp.maximum(count, 1),
    'learning_rate': learning_rate_fn(state.step),
    'grad_norm': grad_norm,
    'examples': count,
    'corrupt': lax.psum(jnp.sum(batch['corrupt']), AXIS),
  }
  return new_state, metrics


def eval_step(
  variables: Mapping[str, Any],
  batch: Mapping[str, jax.Array],
  *,
  model: models.MobileNetV1,
) -> dict[str, jax.Array]:
  """Sums of loss and top-1/top-5 hits over the unmasked examples."""
  logits = model.apply(variables, batch['image'], train=False)
  mask = batch['mask']
  sums = {
    'loss': jnp.sum(cross_entropy(logits, batch['label']) * mask),
    'top1': jnp.sum(_top_k_correct(logits, batch['label'], 1) * mask),
    'top5': jnp.sum(_top_k_correct(logits, batch['label'], 5) * mask),
    'count': jnp.sum(mask),
    'corrupt': jnp.sum(batch['corrupt']),
  }
  return lax.psum(sums, AXIS)


class CompiledOnFirstCall:
  """A pmapped function, compiled explicitly at its first call.

  On a multi-host slice, processes that run a collective step wait only a
  short while (~30 s for CPU collectives) for their peers; a host still
  compiling would make the others fail. So every process compiles, then
  all meet at a barrier, then the step runs.
  """

  def __init__(self, fn: Callable, name: str):
    self._fn = fn
    self._name = name
    self._compiled = None

  @property
  def compiled(self) -> Any:
    """The executable (None before the first call), e.g. for its
    `cost_analysis()`."""
    return self._compiled

  def __call__(self, *args):
    if self._compiled is None:
      start = time.time()
      self._compiled = self._fn.lower(*args).compile()
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f'{self._name} compiled')
      logging.info(
        'Compiled the %s in %.1f s.', self._name, time.time() - start
      )
    if jax.process_count() > 1:
      # The executable takes global arrays; pmap assembles them from this
      # process's local ones, finding its compilation in JAX's persistent
      # cache (see `distributed.initialize`).
      return self._fn(*args)
    return self._compiled(*args)


def make_train_step(
  config: ml_collections.ConfigDict,
  model: models.MobileNetV1,
  tx: optax.GradientTransformation,
  learning_rate_fn: optax.Schedule,
  params: Any,
) -> Callable:
  """The pmapped train step with the config's constants bound."""
  step = functools.partial(
    train_step,
    model=model,
    tx=tx,
    learning_rate_fn=learning_rate_fn,
    decay_mask=optim.weight_decay_mask(
      params, decay_depthwise=config.weight_decay_depthwise
    ),
    weight_decay=config.weight_decay,
    label_smoothing=config.label_smoothing,
    ema_decay=config.ema_decay,
  )
  return CompiledOnFirstCall(
    jax.pmap(step, axis_name=AXIS, donate_argnums=(0,)), 'train step'
  )


def build_train_step(
  config: ml_collections.ConfigDict,
  num_classes: int,
  num_train_examples: int,
  seed: int = 0,
) -> tuple[Callable, TrainState]:
  """The pmapped train step and a fresh replicated state, built as
  `train_and_evaluate` builds them; for benchmarks, which time the step on
  device-resident batches."""
  derived = config_lib.derive(
    config,
    num_train_examples=num_train_examples,
    device_count=jax.device_count(),
  )
  model = create_model(config, num_classes)
  learning_rate_fn = optim.create_learning_rate_fn(config, derived)
  tx = optim.create_optimizer(config, learning_rate_fn)
  state = create_train_state(config, model, tx, jax.random.PRNGKey(seed))
  p_train_step = make_train_step(
    config, model, tx, learning_rate_fn, state.params
  )
  return p_train_step, jax_utils.replicate(state)


def make_eval_step(model: models.MobileNetV1) -> Callable:
  return CompiledOnFirstCall(
    jax.pmap(functools.partial(eval_step, model=model), axis_name=AXIS),
    'eval step',
  )


# ---------------------------------------------------------------------------
# Host side: feeding devices, evaluation, metrics.


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


def _eval_variable_sets(state: TrainState) -> dict[str, dict]:
  """The weights to score: raw, and EMA when it is on."""
  sets = {'': {'params': state.params, 'batch_stats': state.batch_stats}}
  if state.ema_params:
    sets['ema_'] = {
      'params': state.ema_params,
      'batch_stats': state.batch_stats,
    }
  return sets


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  flat = {}
  for key, value in config.items():
    flat[key] = (
      value if isinstance(value, int | float | str | bool) else str(value)
    )
  return flat


class _LoggingWriter:
  """Console-only stand-in for clu's writers where TensorFlow (which clu's
  writers import) is not installed."""

  def write_scalars(self, step, scalars):
    logging.info(
      '[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in scalars.items())
    )

  def write_hparams(self, hparams):
    logging.info('Hyperparameters: %s', hparams)

  def flush(self):
    pass


def _create_writer(workdir: epath.Path, is_chief: bool) -> Any:
  """TensorBoard event files and the console on process 0; the console
  only elsewhere."""
  try:
    from clu import metric_writers
  except ImportError as e:
    logging.warning('No TensorBoard events (%s); logging to console only.', e)
    return _LoggingWriter()
  return metric_writers.create_default_writer(
    workdir, just_logging=not is_chief
  )


def _create_hooks(
  config: ml_collections.ConfigDict,
  workdir: epath.Path,
  writer: Any,
  num_train_steps: int,
) -> list[Callable[[int], Any]]:
  """clu's progress report (steps/second, ETA) and optional profiler."""
  try:
    from clu import periodic_actions
  except ImportError:
    return []
  hooks = [
    periodic_actions.ReportProgress(
      num_train_steps=num_train_steps, writer=writer, every_secs=60
    )
  ]
  if config.profile and jax.process_index() == 0:
    hooks.append(
      periodic_actions.Profile(logdir=str(workdir), num_profile_steps=5)
    )
  return hooks


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


class NonFiniteError(FloatingPointError):
  """The loss or the gradients became NaN or infinite."""


def _check_finite(state_repl: TrainState) -> None:
  bad = int(jax.device_get(state_repl.nonfinite_step[0]))
  if bad >= 0:
    raise NonFiniteError(
      f'Loss or gradients were not finite at step {bad + 1}; training '
      'stopped without applying that update. Checkpoints saved before it '
      'are intact. Lower the learning rate, or check the data.'
    )


# ---------------------------------------------------------------------------
# Entry points.


@dataclasses.dataclass
class _Run:
  """Everything `train_and_evaluate` builds before its loop."""

  config: ml_collections.ConfigDict
  workdir: epath.Path
  info: Any
  derived: config_lib.Derived
  model: models.MobileNetV1
  fields: dict[str, Any]


def data_source(config: ml_collections.ConfigDict) -> Any:
  """`input_pipeline` (tfds; imports TensorFlow) or synthetic batches."""
  if config.dataset == synthetic.NAME:
    return synthetic
  # Imported here so that the model and the train step never need
  # TensorFlow.
  import input_pipeline

  return input_pipeline


def _setup(config: ml_collections.ConfigDict, workdir: str) -> _Run:
  config_lib.validate(config)
  info = data_source(config).get_dataset_info(config)
  derived = config_lib.derive(
    config,
    num_train_examples=info.num_train_examples,
    device_count=jax.device_count(),
    process_count=jax.process_count(),
  )
  model = create_model(config, info.num_classes)
  return _Run(
    config=config,
    workdir=epath.Path(workdir),
    info=info,
    derived=derived,
    model=model,
    fields=model_fields(config, info.num_classes),
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> dict[str, Any]:
  """Trains, evaluating and checkpointing along the way; resumes if
  `workdir` holds checkpoints.

  Args:
    config: a config from `configs/` (validated here before any work).
    workdir: where checkpoints, TensorBoard events and `results.json` go.

  Returns:
    The contents of `results.json`: the config, final eval metrics,
    parameter and mult-add counts, and wall time. `status` is 'completed',
    or 'preempted' when SIGTERM stopped the run after a checkpoint.
  """
  start_time = time.time()
  run = _setup(config, workdir)
  data = data_source(config)
  derived = run.derived
  run.workdir.mkdir(parents=True, exist_ok=True)
  distributed.check_shared_workdir(str(run.workdir))
  is_chief = jax.process_index() == 0
  writer = _create_writer(run.workdir, is_chief)
  logging.info('Derived: %s', derived)

  learning_rate_fn = optim.create_learning_rate_fn(config, derived)
  tx = optim.create_optimizer(config, learning_rate_fn)
  rng = jax.random.PRNGKey(config.seed)
  variables = None
  if config.init_from:
    variables, _ = checkpoints.load_pretrained(
      config.init_from, {'alpha': config.alpha, 'num_classes': None}
    )
  state = create_train_state(config, run.model, tx, rng, variables)

  ckpt = checkpoints.TrainCheckpointer(
    str(run.workdir), keep=config.keep_checkpoints
  )
  examples_seen = 0
  latest = ckpt.latest_step()
  if latest is not None:
    state, meta = ckpt.restore(latest, state, run.fields)
    examples_seen = meta['train_examples_seen']
    logging.info(
      'Resumed from step %d (%d examples seen).', latest, examples_seen
    )
  else:
    writer.write_hparams(_flat_hparams(config))
  start_step = int(state.step)

  train_ds = data.create_train_dataset(
    config,
    batch_size=derived.per_process_batch_size,
    seed=config.seed,
    start_example=examples_seen // jax.process_count(),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  train_iter = device_batches(train_ds)
  p_train_step = make_train_step(
    config, run.model, tx, learning_rate_fn, state.params
  )
  p_eval_step = make_eval_step(run.model)

  def save(step, state_repl):
    _check_finite(state_repl)
    ckpt.save(
      step,
      jax_utils.unreplicate(state_repl),
      {
        'model': run.fields,
        # Cumulative, so the data position survives a change of batch size
        # between restarts.
        'train_examples_seen': examples_seen
        + (step - start_step) * derived.global_batch_size,
        'config': config.to_json_best_effort(),
      },
    )

  # Built once, so that `cache_eval` keeps the encoded records in
  # memory across evaluations.
  eval_ds, num_batches = data.create_eval_dataset(
    config,
    batch_size=derived.per_process_batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )

  def run_eval(step, state_repl):
    results = {}
    for prefix, variables_repl in _eval_variable_sets(state_repl).items():
      metrics = evaluate_batches(
        p_eval_step, variables_repl, device_batches(eval_ds)
      )
      results.update({f'{prefix}{k}': v for k, v in metrics.items()})
    writer.write_scalars(step, {f'eval_{k}': v for k, v in results.items()})
    logging.info(
      'Eval at step %d: %s over %d examples (%d batches).',
      step,
      ', '.join(
        f'{k}={v:.4f}' for k, v in results.items() if isinstance(v, float)
      ),
      results['examples'],
      num_batches,
    )
    return results

  hooks = _create_hooks(config, run.workdir, writer, derived.num_train_steps)

  state_repl = jax_utils.replicate(state)
  del state
  logging.info(
    'Training %s from step %d to %d: %d steps/epoch, global batch %d on %d '
    'devices.',
    config.dataset,
    start_step,
    derived.num_train_steps,
    derived.steps_per_epoch,
    derived.global_batch_size,
    jax.device_count(),
  )
  status = 'completed'
  eval_results, last_eval_step = {}, None
  pending = []
  last_log = time.time()
  step = start_step
  # Whatever ends the loop (done, preempted, NaN, a crash), a save in
  # flight is finished before control leaves: an exception must not
  # lose the last good checkpoint.
  try:
    with _PreemptionWatcher() as preemption:
      while step < derived.num_train_steps:
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          batch = next(train_iter)
          state_repl, metrics = p_train_step(state_repl, batch)
        step += 1
        pending.append(metrics)
        for hook in hooks:
          hook(step)
        if (
          step % config.log_every_steps == 0 or step == derived.num_train_steps
        ):
          _check_finite(state_repl)
          seconds = time.time() - last_log
          summary = _summarise(pending, seconds)
          summary['images_per_second_per_device'] = (
            summary['images_per_second'] / jax.device_count()
          )
          writer.write_scalars(
            step, {f'train_{k}': v for k, v in summary.items()}
          )
          logging.info(
            'step %d/%d: loss %.4f, accuracy %.4f, lr %.4g, %.1f images/s, '
            'ETA %s',
            step,
            derived.num_train_steps,
            summary['loss'],
            summary['accuracy'],
            summary['learning_rate'],
            summary['images_per_second'],
            _duration(
              (derived.num_train_steps - step) * seconds / len(pending)
            ),
          )
          pending, last_log = [], time.time()
        if step % derived.eval_every_steps == 0:
          eval_results, last_eval_step = run_eval(step, state_repl), step
        if step % config.checkpoint_every_steps == 0:
          save(step, state_repl)
        if preemption.should_stop(step, ckpt.reached_preemption):
          save(step, state_repl)
          status = 'preempted'
          break

      if status == 'completed':
        if last_eval_step != step:
          eval_results = run_eval(step, state_repl)
        save(step, state_repl)
  finally:
    ckpt.wait()
    ckpt.close()
    writer.flush()

  results = _results(run, step, status, eval_results, time.time() - start_time)
  if is_chief:
    (run.workdir / 'results.json').write_text(json.dumps(results, indent=2))
  return results


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


def _summarise(pending: list[dict], seconds: float) -> dict[str, float]:
  host = jax.device_get([jax.tree.map(lambda x: x[0], m) for m in pending])
  summary = {
    k: float(np.mean([m[k] for m in host]))
    for k in ('loss', 'cross_entropy', 'accuracy', 'learning_rate', 'grad_norm')
  }
  examples = float(sum(m['examples'] for m in host))
  summary['corrupt_examples'] = float(sum(m['corrupt'] for m in host))
  summary['images_per_second'] = examples / max(seconds, 1e-9)
  return summary


def _results(
  run: _Run, step: int, status: str, eval_results: dict, seconds: float
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
    'wall_time_seconds': seconds,
    'device_count': jax.device_count(),
    'backend': jax.default_backend(),
    'config': json.loads(run.config.to_json_best_effort()),
  }


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Scores saved weights on the whole eval split.

  Weights come from `config.init_from` (exported or imported weights, or
  another run's workdir) when set, else from the latest checkpoint in
  `workdir`. Writes `eval_results.json` to `workdir`.
  """
  run = _setup(config, workdir)
  source = config.init_from or workdir
  expected = {'alpha': config.alpha, 'num_classes': run.info.num_classes}
  variables, fields = checkpoints.load_pretrained(source, expected)
  eval_ds, _ = data_source(config).create_eval_dataset(
    config,
    batch_size=run.derived.per_process_batch_size,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  metrics = evaluate_batches(
    make_eval_step(run.model),
    jax_utils.replicate(variables),
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
  logging.info('Eval of %s: %s', source, metrics)
  if jax.process_index() == 0:
    run.workdir.mkdir(parents=True, exist_ok=True)
    (run.workdir / 'eval_results.json').write_text(
      json.dumps(results, indent=2)
    )
  return results
