"""Learning-rate schedules, the optimizer and the weight-decay mask."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util

from mobilenet_flax import config_lib, models


def create_learning_rate_fn(
  config: ml_collections.ConfigDict, derived: config_lib.Derived
) -> optax.Schedule:
  """Linear warm-up, then staircase exponential decay (slim) or cosine."""
  peak = derived.learning_rate
  warmup = derived.warmup_steps
  if config.lr_schedule == 'exponential':
    # Counted from the end of warm-up, so the peak lasts a full period.
    decay = optax.exponential_decay(
      peak,
      transition_steps=derived.decay_steps,
      decay_rate=config.lr_decay_factor,
      staircase=True,
    )
  else:
    decay = optax.cosine_decay_schedule(
      peak, decay_steps=max(derived.num_train_steps - warmup, 1)
    )
  if not warmup:
    return decay
  return optax.join_schedules(
    [optax.linear_schedule(0.0, peak, warmup), decay], [warmup]
  )


def create_optimizer(
  config: ml_collections.ConfigDict, learning_rate_fn: optax.Schedule
) -> optax.GradientTransformation:
  """L2 weight decay, then RMSprop with TF1 semantics (the paper's) or
  Nesterov momentum SGD.

  slim adds 0.5 * wd * sum(w^2) to the loss; its gradient wd * w joins the
  (cross-replica) gradient before the optimizer sees it, which is what
  `add_decayed_weights` in front of the optimizer does.
  """
  if config.optimizer == 'rmsprop':
    # TF1: the mean-square accumulator starts at 1, epsilon sits inside the
    # square root, and the learning rate is applied before momentum.
    optimizer = optax.rmsprop(
      learning_rate_fn,
      decay=config.rmsprop_decay,
      eps=config.rmsprop_epsilon,
      initial_scale=1.0,
      eps_in_sqrt=True,
      momentum=config.momentum,
    )
  else:
    optimizer = optax.sgd(
      learning_rate_fn, momentum=config.momentum, nesterov=True
    )
  if not config.weight_decay:
    return optimizer
  mask = functools.partial(
    weight_decay_mask, decay_depthwise=config.weight_decay_depthwise
  )
  return optax.chain(
    optax.add_decayed_weights(config.weight_decay, mask), optimizer
  )


def weight_decay_mask(params, *, decay_depthwise: bool = False):
  """True for the kernels L2 applies to: conv and dense kernels, without
  the depthwise ones unless asked; never biases or batch norm."""
  flat = traverse_util.flatten_dict(params)
  mask = {}
  for path, value in flat.items():
    decayed = path[-1] == 'kernel'
    if decayed and not decay_depthwise:
      decayed = models.layer_type(value.shape) != 'depthwise_3x3'
    mask[path] = decayed
  return traverse_util.unflatten_dict(mask)


def l2_loss(params, mask) -> jax.Array:
  """slim's regulariser: 0.5 * sum(w^2) over the masked kernels."""
  terms = jax.tree.map(
    lambda w, m: 0.5 * jnp.sum(jnp.square(w)) if m else jnp.zeros(()),
    params,
    mask,
  )
  return sum(jax.tree.leaves(terms))
