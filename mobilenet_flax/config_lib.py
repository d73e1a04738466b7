"""Config validation and the fields derived from a config.

Every check runs before any data is read or any device is touched, so a bad
value costs seconds, not a queued TPU slice. Derived values (the scaled
learning rate, steps per epoch, the per-process batch) are computed here
and nowhere else.
"""

import dataclasses
import math

import ml_collections

from mobilenet_flax import errors, models

OPTIMIZERS = ('rmsprop', 'momentum')
LR_SCHEDULES = ('exponential', 'cosine')
# What a config's `model` block may set: the model's own fields but those
# that the dataset (`num_classes`) and the training loop (`axis_name`) fill.
MODEL_CONFIG_FIELDS = frozenset(
  f.name
  for f in dataclasses.fields(models.MobileNetV1)
  if f.name not in ('num_classes', 'axis_name', 'parent', 'name')
)


class ConfigError(errors.Error, ValueError):
  """A config value that training cannot start with."""


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError listing every invalid field of `config`."""
  problems = []

  def check(ok: bool, message: str) -> None:
    if not ok:
      problems.append(message)

  model = config.get('model')
  if not isinstance(model, ml_collections.ConfigDict):
    problems.append('model must be a block of model fields (config.model).')
  else:
    unknown = sorted(set(model) - MODEL_CONFIG_FIELDS)
    check(
      not unknown,
      f'model has no field(s) {unknown}; it takes '
      f'{sorted(MODEL_CONFIG_FIELDS)}.',
    )
    problems.extend(f'model.{p}' for p in models.field_problems(dict(model)))
  check(
    isinstance(config.resolution, int)
    and config.resolution >= models.MIN_RESOLUTION,
    f'resolution must be an integer >= {models.MIN_RESOLUTION}, got '
    f'{config.resolution!r}.',
  )
  check(
    isinstance(config.dataset, str) and config.dataset,
    f'dataset must be a tfds dataset name, got {config.dataset!r}.',
  )
  check(
    isinstance(config.batch_size, int) and config.batch_size > 0,
    f'batch_size must be a positive integer, got {config.batch_size!r}.',
  )
  check(
    config.optimizer in OPTIMIZERS,
    f'optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}.',
  )
  check(
    config.lr_schedule in LR_SCHEDULES,
    f'lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}.',
  )
  check(
    config.base_learning_rate > 0,
    f'base_learning_rate must be > 0, got {config.base_learning_rate!r}.',
  )
  check(
    0 < config.lr_decay_factor <= 1,
    f'lr_decay_factor must be in (0, 1], got {config.lr_decay_factor!r}.',
  )
  check(
    config.lr_decay_epochs > 0,
    f'lr_decay_epochs must be > 0, got {config.lr_decay_epochs!r}.',
  )
  check(
    config.warmup_epochs >= 0,
    f'warmup_epochs must be >= 0, got {config.warmup_epochs!r}.',
  )
  check(
    config.num_train_steps == -1 or config.num_train_steps > 0,
    f'num_train_steps must be > 0, or -1 to train for num_epochs; got '
    f'{config.num_train_steps!r}.',
  )
  check(
    config.num_train_steps > 0 or config.num_epochs > 0,
    'Set num_epochs > 0 or num_train_steps > 0.',
  )
  check(
    config.weight_decay >= 0,
    f'weight_decay must be >= 0, got {config.weight_decay!r}.',
  )
  check(
    0 <= config.label_smoothing < 1,
    f'label_smoothing must be in [0, 1), got {config.label_smoothing!r}.',
  )
  check(
    0 <= config.ema_decay < 1,
    f'ema_decay must be in [0, 1) (0 turns EMA off), got {config.ema_decay!r}.',
  )
  lo, hi = config.crop_area_range
  check(
    0 < lo <= hi <= 1,
    f'crop_area_range must satisfy 0 < lo <= hi <= 1, got '
    f'{tuple(config.crop_area_range)}.',
  )
  check(
    0 < config.eval_crop_fraction <= 1,
    f'eval_crop_fraction must be in (0, 1], got {config.eval_crop_fraction!r}.',
  )
  check(
    config.checkpoint_every_steps > 0,
    f'checkpoint_every_steps must be > 0, got '
    f'{config.checkpoint_every_steps!r}.',
  )
  check(
    config.keep_checkpoints > 0,
    f'keep_checkpoints must be > 0, got {config.keep_checkpoints!r}.',
  )
  check(
    config.log_every_steps > 0,
    f'log_every_steps must be > 0, got {config.log_every_steps!r}.',
  )
  if problems:
    raise ConfigError(
      # One line, as every error the command line prints.
      'Invalid config: ' + ' '.join(problems)
    )


@dataclasses.dataclass(frozen=True)
class Derived:
  """Values that follow from a config, the dataset and the hardware."""

  global_batch_size: int
  per_process_batch_size: int
  learning_rate: float
  steps_per_epoch: int
  num_train_steps: int
  warmup_steps: int
  decay_steps: int
  eval_every_steps: int


def derive(
  config: ml_collections.ConfigDict,
  *,
  num_train_examples: int,
  device_count: int,
  process_count: int = 1,
) -> Derived:
  """Computes the derived fields; raises ConfigError if the batch does not
  split evenly over the devices."""
  batch = config.batch_size
  if batch % device_count:
    raise ConfigError(
      f'batch_size {batch} is not divisible by the {device_count} devices; '
      f'use a multiple of {device_count} (e.g. '
      f'{max(device_count, batch // device_count * device_count)}).'
    )
  steps_per_epoch = max(num_train_examples // batch, 1)
  if config.num_train_steps > 0:
    num_train_steps = config.num_train_steps
  else:
    num_train_steps = math.ceil(config.num_epochs * steps_per_epoch)
  if config.eval_every_steps > 0:
    eval_every_steps = config.eval_every_steps
  else:
    eval_every_steps = steps_per_epoch
  return Derived(
    global_batch_size=batch,
    per_process_batch_size=batch // process_count,
    learning_rate=config.base_learning_rate * batch / config.base_batch_size,
    steps_per_epoch=steps_per_epoch,
    num_train_steps=num_train_steps,
    warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    decay_steps=max(round(config.lr_decay_epochs * steps_per_epoch), 1),
    eval_every_steps=eval_every_steps,
  )
