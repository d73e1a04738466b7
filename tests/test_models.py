"""MobileNetV1 module: shapes, fields and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_flax import models


def _init(model, resolution=32, batch=2):
  x = jax.random.uniform(
    jax.random.key(1), (batch, resolution, resolution, 3), minval=-1, maxval=1
  )
  return _jit(model.init)(jax.random.key(0), x, train=False), x


def _jit(fn):
  """`fn` compiled as one program: op by op, every layer's ops would each
  compile on their own, which takes longer for these whole models."""
  return jax.jit(fn, static_argnames=('train', 'mutable'))


@pytest.mark.parametrize('resolution', [32, 33, 64])
def test_logits_shape_any_resolution(resolution):
  model = models.create_model('mobilenet_v1_tiny', num_classes=7)
  variables, x = _init(model, resolution)
  logits = _jit(model.apply)(variables, x, train=False)
  assert logits.shape == (2, 7)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


def test_channel_rule_and_layer_names():
  model = models.MobileNetV1(alpha=0.25, num_classes=10)
  variables, _ = _init(model)
  params = variables['params']
  assert params['conv1']['kernel'].shape == (3, 3, 3, 8)
  # max(int(64 * 0.25), 8) = 16, then the depthwise keeps its input width.
  assert params['conv_pw_1']['kernel'].shape == (1, 1, 8, 16)
  assert params['conv_dw_2']['kernel'].shape == (3, 3, 1, 16)
  assert params['conv_pw_13']['kernel'].shape == (1, 1, 256, 256)
  assert params['logits']['kernel'].shape == (256, 10)
  assert params['logits']['bias'].shape == (10,)
  assert 'bias' not in params['conv_dw_5'] and 'bias' not in params['conv1']
  assert set(variables['batch_stats']['conv_pw_3_bn']) == {'mean', 'var'}


def test_train_mode_updates_batch_stats_and_uses_dropout():
  model = models.create_model('mobilenet_v1_tiny', dropout_rate=0.5)
  variables, x = _init(model)
  rngs = {'dropout': jax.random.key(2)}
  out1, state = _jit(model.apply)(
    variables, x, train=True, rngs=rngs, mutable=('batch_stats',)
  )
  old = variables['batch_stats']['conv1_bn']['mean']
  new = state['batch_stats']['conv1_bn']['mean']
  assert not np.allclose(old, new)
  out2, _ = _jit(model.apply)(
    variables,
    x,
    train=True,
    rngs={'dropout': jax.random.key(3)},
    mutable=('batch_stats',),
  )
  assert not np.allclose(out1, out2)


def test_bn_momentum_is_used():
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  means = {}
  for momentum in (0.9, 0.5):
    model = models.create_model(
      'mobilenet_v1_tiny', bn_momentum=momentum, dropout_rate=0.0
    )
    variables = _jit(model.init)(jax.random.key(0), x, train=False)
    _, state = _jit(model.apply)(
      variables, x, train=True, mutable=('batch_stats',)
    )
    means[momentum] = state['batch_stats']['conv1_bn']['mean']
  # Moving mean starts at 0: after one step it is (1 - momentum) * batch mean.
  np.testing.assert_allclose(means[0.5], 5 * means[0.9], rtol=1e-4, atol=1e-7)


def test_bfloat16_compute_keeps_float32_params():
  model = models.create_model('mobilenet_v1_tiny', dtype=jnp.bfloat16)
  variables, x = _init(model)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  logits = _jit(model.apply)(variables, x, train=False)
  assert logits.dtype == jnp.float32
  ref = _jit(models.create_model('mobilenet_v1_tiny').apply)(
    variables, x, train=False
  )
  np.testing.assert_allclose(logits, ref, rtol=0.1, atol=0.1)


def test_relu_and_relu6_differ():
  relu6 = models.create_model('mobilenet_v1_tiny', activation='relu6')
  relu = models.create_model('mobilenet_v1_tiny', activation='relu')
  variables, x = _init(relu6)
  # Train-mode batch norm makes the stem's outputs unit-scale; a scale of 10
  # pushes many of them past 6, where the two activations part.
  bn = variables['params']['conv1_bn']
  variables['params']['conv1_bn'] = {**bn, 'scale': bn['scale'] * 10}

  def logits(model):
    return _jit(model.apply)(
      variables,
      x,
      train=True,
      rngs={'dropout': jax.random.key(0)},
      mutable=('batch_stats',),
    )[0]

  a, b = logits(relu6), logits(relu)
  assert np.abs(a - b).max() > 1e-3 * np.abs(b).max()


def test_cross_replica_batch_norm_axis_name():
  model = models.create_model(
    'mobilenet_v1_tiny', axis_name='batch', dropout_rate=0.0
  )
  variables, _ = _init(models.create_model('mobilenet_v1_tiny'))
  x = jax.random.normal(jax.random.key(4), (4, 32, 32, 3))

  def stats(x):
    _, state = model.apply(variables, x, train=True, mutable=('batch_stats',))
    return state['batch_stats']['conv1_bn']['mean']

  # vmap with an axis name runs the same collective as pmap: each of the
  # four "devices" sees one image, and all must end with the same mean.
  per_device = jax.jit(jax.vmap(stats, axis_name='batch'))(x[:, None])
  whole_batch = jax.jit(
    lambda x: models.create_model('mobilenet_v1_tiny', dropout_rate=0.0).apply(
      variables, x, train=True, mutable=('batch_stats',)
    )[1]
  )(x)['batch_stats']['conv1_bn']['mean']
  np.testing.assert_allclose(per_device[0], per_device[3], rtol=1e-6)
  np.testing.assert_allclose(per_device[0], whole_batch, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    (dict(alpha=0), r'alpha must be in \(0, 4\]'),
    (dict(alpha=-0.5), r'alpha must be in \(0, 4\]'),
    # The same bounds as config validation: one rule for both.
    (dict(alpha=4.5), r'alpha must be in \(0, 4\]'),
    (dict(dtype='float16'), 'dtype must be one of'),
    (dict(num_classes=0), 'num_classes'),
    (dict(dropout_rate=1.0), 'dropout_rate'),
    (dict(activation='gelu'), 'activation'),
    (dict(conv_impl='fft'), 'conv_impl'),
  ],
)
def test_bad_fields_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    models.MobileNetV1(**kwargs)


@pytest.mark.parametrize(
  ('shape', 'message'),
  [
    ((32, 32, 3), 'rank 4'),
    ((1, 32, 32, 1), '3 channels'),
    ((1, 3, 32, 32), '3 channels'),
    ((1, 31, 64, 3), 'at least 32x32'),
  ],
)
def test_bad_inputs_raise(shape, message):
  model = models.create_model('mobilenet_v1_tiny')
  with pytest.raises(ValueError, match=message):
    model.init(jax.random.key(0), jnp.zeros(shape), train=False)


def test_unknown_variant():
  with pytest.raises(ValueError, match='Unknown model'):
    models.create_model('mobilenet_v2')
