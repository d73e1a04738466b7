"""What runs on the devices: the model and train state, the train and eval
steps, and their pmapped, compiled forms.

Everything here is a pure function of arrays; the host loop that feeds it,
logs and checkpoints lives in `train.py`. Nothing here imports TensorFlow,
so the step can be built and benchmarked on machines without it.
"""

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax import lax
from jax.experimental import multihost_utils

from mobilenet_flax import config_lib, models, optim

# The pmap axis: batch norm statistics, gradients and metrics are averaged
# over it.
AXIS = 'batch'


# ---------------------------------------------------------------------------
# Model and train state.


def create_model(
  config: ml_collections.ConfigDict, num_classes: int, **overrides: Any
) -> models.MobileNetV1:
  """The model a config describes; batch norm syncs over the pmap axis."""
  fields = dict(config.model, num_classes=num_classes, axis_name=AXIS)
  fields.update(overrides)
  return models.MobileNetV1(**fields)


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
  # First step whose loss, gradients or new state were not finite, or -1.
  # Once set, updates stop, so the state stays the last good one.
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
  """A fresh state; `variables` (e.g. imported weights) replace the init.

  Built as one compiled function: op by op, the optimizer and EMA slots
  compiled one small program per leaf shape, seconds per run on a CPU.
  """

  def build(rng, variables):
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

  return jax.jit(build)(rng, variables)


def replicate(tree: Any) -> Any:
  """`tree` with a copy of each array on every local device, laid out as
  `jax.pmap` takes it. Goes through the host: stacking on the device (what
  `flax.jax_utils.replicate` does) compiles a program per leaf shape."""
  devices = jax.local_devices()
  mesh = jax.sharding.Mesh(np.array(devices), ('replicas',))
  sharding = jax.NamedSharding(mesh, jax.P('replicas'))

  def put(x):
    x = np.asarray(x)
    copies = np.broadcast_to(x, (len(devices), *x.shape))
    return jax.device_put(copies, sharding)

  return jax.tree.map(put, tree)


def unreplicate(tree: Any) -> Any:
  """The first local device's copy of each array of a replicated `tree`,
  through the host for the same reason as `replicate`."""
  device = jax.local_devices()[0]

  def first(x):
    return jax.device_put(np.asarray(x.addressable_shards[0].data)[0], device)

  return jax.tree.map(first, tree)


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


def _all_finite(tree: Any) -> jax.Array:
  """Whether every float in `tree` is finite, as one reduction over all of
  them: a check per leaf (hundreds) made compiling several times slower."""
  leaves = [
    jnp.ravel(x)
    for x in jax.tree.leaves(tree)
    if jnp.issubdtype(x.dtype, jnp.floating)
  ]
  if not leaves:
    return jnp.array(True)
  dtype = jnp.result_type(*leaves)
  flat = jnp.concatenate([x.astype(dtype) for x in leaves])
  return jnp.all(jnp.isfinite(flat))


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
  """One optimisation step on the global batch.

  `tx` adds the L2 gradient itself; `decay_mask` and `weight_decay` only
  serve the logged loss, which includes the L2 term as slim's does.
  """
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

  # Everything a checkpoint saves must be finite, not only the loss: batch
  # statistics can overflow while the loss still looks fine.
  finite = (
    jnp.isfinite(loss)
    & jnp.isfinite(grad_norm)
    & _all_finite((params, batch_stats, opt_state, ema_params))
  )
  healthy = finite & (state.nonfinite_step < 0)
  keep = lambda new, old: jax.tree.map(  # noqa: E731
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


# ---------------------------------------------------------------------------
# Compiled, pmapped steps.


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


def make_eval_step(model: models.MobileNetV1) -> Callable:
  return CompiledOnFirstCall(
    jax.pmap(functools.partial(eval_step, model=model), axis_name=AXIS),
    'eval step',
  )


def build_train_step(
  config: ml_collections.ConfigDict,
  num_classes: int,
  num_train_examples: int,
  seed: int = 0,
) -> tuple[Callable, TrainState]:
  """The pmapped train step and a fresh replicated state, built as the
  training loop builds them; for benchmarks, which time the step on
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
  return p_train_step, replicate(state)
