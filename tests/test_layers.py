"""The conv implementations agree: outputs, gradients and variables."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mobilenet_flax import layers, models

TOL = dict(rtol=1e-5, atol=1e-5)

# (batch, height, width, channels): even, odd, non-square, and maps smaller
# than the kernel.
DEPTHWISE_SHAPES = [
  (2, 8, 8, 4),
  (1, 7, 7, 3),
  (2, 9, 6, 5),
  (3, 2, 3, 3),
  (1, 1, 1, 2),
]


def _normal(key, shape):
  return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def _outputs_and_grads(module, variables, x, cotangent):
  """y = module(x) and the VJP of `cotangent` w.r.t. x and the kernel."""

  def apply(params, x):
    return module.apply({'params': params}, x)

  @jax.jit
  def run(params, x, cotangent):
    y, vjp = jax.vjp(apply, params, x)
    d_params, dx = vjp(cotangent)
    return y, dx, d_params['kernel']

  # Jitted: one compilation per case is cheaper than one per eager op.
  return run(variables['params'], x, cotangent)


def _assert_same(got, want):
  for a, b in zip(got, want, strict=True):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, **TOL)


def test_resolve_impl():
  assert layers.resolve_impl('auto', 'cpu') == 'shifted'
  assert layers.resolve_impl('auto', 'gpu') == 'grouped_conv'
  assert layers.resolve_impl('auto', 'tpu') == 'grouped_conv'
  assert layers.resolve_impl('auto') == layers.resolve_impl(
    'auto', jax.default_backend()
  )
  for impl in ('grouped_conv', 'shifted'):
    assert layers.resolve_impl(impl, 'cpu') == impl
    assert layers.resolve_impl(impl, 'tpu') == impl
  with pytest.raises(ValueError, match='conv_impl'):
    layers.resolve_impl('im2col')


def test_same_padding_matches_lax():
  for size in range(1, 13):
    for kernel in range(1, 6):
      for stride in range(1, 4):
        (want,) = lax.padtype_to_pads((size,), (kernel,), (stride,), 'SAME')
        assert layers.same_padding(size, kernel, stride) == tuple(want), (
          size,
          kernel,
          stride,
        )


def test_same_padding_puts_the_odd_pixel_at_the_end():
  assert layers.same_padding(224, 3, 2) == (0, 1)
  assert layers.same_padding(225, 3, 2) == (1, 1)
  assert layers.same_padding(7, 3, 1) == (1, 1)
  assert layers.same_padding(1, 3, 2) == (1, 1)
  assert layers.same_padding(5, 1, 2) == (0, 0)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('shape', DEPTHWISE_SHAPES)
def test_depthwise_matches_grouped_conv(shape, stride):
  channels = shape[-1]
  x = _normal(0, shape)
  grouped = layers.depthwise_conv('grouped_conv', channels, stride)
  shifted = layers.depthwise_conv('shifted', channels, stride)
  assert isinstance(grouped, nn.Conv)
  assert isinstance(shifted, layers.ShiftedDepthwiseConv)
  variables = grouped.init(jax.random.key(1), x)
  # Same variables tree, so each module runs the other's parameters.
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, shifted.init(jax.random.key(1), x)
  )
  assert variables['params']['kernel'].shape == (3, 3, 1, channels)
  out_shape = (shape[0], -(-shape[1] // stride), -(-shape[2] // stride))
  cotangent = _normal(2, out_shape + (channels,))
  want = _outputs_and_grads(grouped, variables, x, cotangent)
  got = _outputs_and_grads(shifted, variables, x, cotangent)
  assert got[0].shape == out_shape + (channels,)
  _assert_same(got, want)


@pytest.mark.parametrize(
  'kernel_size, stride',
  [
    ((1, 1), 1),
    ((1, 1), 2),
    ((5, 5), 1),
    ((5, 3), 2),
    ((2, 4), 2),
    ((3, 3), 3),
  ],
)
def test_depthwise_other_kernels_and_strides(kernel_size, stride):
  x = _normal(3, (2, 9, 8, 3))
  grouped = nn.Conv(
    3,
    kernel_size,
    strides=stride,
    padding='SAME',
    feature_group_count=3,
    use_bias=False,
  )
  shifted = layers.ShiftedDepthwiseConv(3, kernel_size, strides=stride)
  variables = grouped.init(jax.random.key(4), x)
  y = grouped.apply(variables, x)
  cotangent = _normal(5, y.shape)
  _assert_same(
    _outputs_and_grads(shifted, variables, x, cotangent),
    _outputs_and_grads(grouped, variables, x, cotangent),
  )


@pytest.mark.parametrize('stride', [1, 2])
def test_depthwise_kernel_grad_in_chunks(monkeypatch, stride):
  """The kernel gradient walks a large batch in chunks; a tiny chunk budget
  exercises that loop on a small input, including a batch the budget does
  not divide."""
  x = _normal(6, (6, 7, 6, 4))
  module = layers.ShiftedDepthwiseConv(4, strides=stride)
  variables = module.init(jax.random.key(7), x)
  y = module.apply(variables, x)
  cotangent = _normal(8, y.shape)
  want = _outputs_and_grads(module, variables, x, cotangent)
  per_image = 4 * 4 * (7 + 2) * (6 + 2)
  for budget in (1, 2 * per_image, 4 * per_image):
    monkeypatch.setattr(layers, '_KERNEL_GRAD_CHUNK_BYTES', budget)
    _assert_same(_outputs_and_grads(module, variables, x, cotangent), want)


def test_depthwise_under_jit_and_second_order_shapes():
  x = _normal(9, (2, 6, 6, 3))
  module = layers.ShiftedDepthwiseConv(3, strides=2)
  variables = module.init(jax.random.key(10), x)

  def loss(params, x):
    return jnp.sum(module.apply({'params': params}, x) ** 2)

  eager = jax.grad(loss, argnums=(0, 1))(variables['params'], x)
  jitted = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables['params'], x)
  _assert_same(jax.tree.leaves(jitted), jax.tree.leaves(eager))


def test_depthwise_rejects_wrong_channel_count():
  module = layers.ShiftedDepthwiseConv(4)
  with pytest.raises(ValueError, match='4 channels'):
    module.init(jax.random.key(0), jnp.zeros((1, 5, 5, 3)))


def test_depthwise_bfloat16_keeps_dtypes():
  x = _normal(11, (2, 7, 7, 4))
  module = layers.ShiftedDepthwiseConv(4, strides=2, dtype=jnp.bfloat16)
  variables = module.init(jax.random.key(12), x)
  assert variables['params']['kernel'].dtype == jnp.float32
  y = module.apply(variables, x)
  assert y.dtype == jnp.bfloat16
  _, dx, dk = _outputs_and_grads(module, variables, x, jnp.ones_like(y))
  assert dx.dtype == jnp.float32 and dk.dtype == jnp.float32
  want = _outputs_and_grads(
    layers.ShiftedDepthwiseConv(4, strides=2),
    variables,
    x,
    jnp.ones(y.shape, jnp.float32),
  )
  np.testing.assert_allclose(dk, want[2], rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize('shape', [(2, 5, 5, 3), (1, 4, 7, 8), (3, 1, 1, 16)])
@pytest.mark.parametrize('features', [1, 6])
def test_pointwise_matches_conv(shape, features):
  x = _normal(13, shape)
  conv = layers.pointwise_conv('grouped_conv', features)
  matmul = layers.pointwise_conv('shifted', features)
  assert isinstance(conv, nn.Conv)
  assert isinstance(matmul, layers.MatmulPointwiseConv)
  variables = conv.init(jax.random.key(14), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, matmul.init(jax.random.key(14), x)
  )
  assert variables['params']['kernel'].shape == (1, 1, shape[-1], features)
  cotangent = _normal(15, shape[:-1] + (features,))
  with jax.default_matmul_precision('highest'):
    want = _outputs_and_grads(conv, variables, x, cotangent)
    got = _outputs_and_grads(matmul, variables, x, cotangent)
  _assert_same(got, want)


def _tree_signature(tree):
  return jax.tree_util.tree_map_with_path(
    lambda path, leaf: (jax.tree_util.keystr(path), leaf.shape, leaf.dtype),
    tree,
  )


def _jit_init(model, x):
  # One compilation instead of one per op keeps the model tests fast.
  return jax.jit(lambda x: model.init(jax.random.key(17), x, train=False))(x)


def _jit_eval(model):
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


@pytest.mark.parametrize('resolution', [32, 45])
def test_model_variables_and_logits_match(resolution):
  x = jax.random.uniform(
    jax.random.key(16), (2, resolution, resolution, 3), minval=-1, maxval=1
  )
  grouped = models.MobileNetV1(
    alpha=0.25, num_classes=10, conv_impl='grouped_conv'
  )
  shifted = models.MobileNetV1(alpha=0.25, num_classes=10, conv_impl='shifted')
  variables = _jit_init(grouped, x)
  shifted_variables = _jit_init(shifted, x)
  assert _tree_signature(variables) == _tree_signature(shifted_variables)
  # Same initial values too: the parameter names and shapes (hence the RNG
  # streams) are the same.
  for a, b in zip(
    jax.tree.leaves(variables), jax.tree.leaves(shifted_variables), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  with jax.default_matmul_precision('highest'):
    want = _jit_eval(grouped)(variables, x)
    got = _jit_eval(shifted)(variables, x)
  assert got.shape == (2, 10)
  np.testing.assert_allclose(got, want, **TOL)


def test_model_train_step_gradients_match():
  """Train mode (batch statistics) end to end: loss gradients of every
  parameter and the updated batch statistics agree."""
  x = jax.random.uniform(
    jax.random.key(18), (4, 33, 40, 3), minval=-1, maxval=1
  )
  labels = jnp.array([0, 3, 5, 9])

  def grads(conv_impl, variables):
    model = models.MobileNetV1(
      alpha=0.25,
      num_classes=10,
      dropout_rate=0.0,
      conv_impl=conv_impl,
    )

    def loss(params):
      logits, state = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']},
        x,
        train=True,
        mutable=['batch_stats'],
      )
      one_hot = jax.nn.one_hot(labels, 10)
      xent = -jnp.sum(one_hot * jax.nn.log_softmax(logits)) / len(labels)
      return xent, state

    with jax.default_matmul_precision('highest'):
      return jax.jit(jax.grad(loss, has_aux=True))(variables['params'])

  variables = _jit_init(models.MobileNetV1(alpha=0.25, num_classes=10), x)
  want, want_state = grads('grouped_conv', variables)
  got, got_state = grads('shifted', variables)
  assert _tree_signature(got) == _tree_signature(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    # Relative to each tensor's scale: train-mode batch norm over a few
    # samples per channel amplifies the float32 rounding of 28 layers, while
    # a wrong tap, phase or padding would be off by O(1).
    scale = np.abs(b).max()
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
  for a, b in zip(
    jax.tree.leaves(got_state), jax.tree.leaves(want_state), strict=True
  ):
    np.testing.assert_allclose(a, b, **TOL)
