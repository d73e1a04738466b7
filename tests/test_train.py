"""The training loop: end to end, multi-device, resume, preemption, NaNs."""

import functools
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import jax_utils
from tensorboard.backend.event_processing import event_file_loader

from configs import quickstart
from mobilenet_flax import (
  checkpoints,
  config_lib,
  optim,
  steps,
  synthetic,
  train,
)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def tiny_config(data_dir, **overrides):
  """The quickstart recipe, shrunk to a handful of steps."""
  config = quickstart.get_config('alpha=0.125,res=32')
  config.data_dir = data_dir
  config.batch_size = 16
  config.num_train_steps = 4
  config.log_every_steps = 1
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.warmup_epochs = 0.0
  for key, value in overrides.items():
    block, name = config, key
    if key in config.model:
      block = config.model
    block[name] = value
  return config


def _latest_state(workdir):
  ckpt = checkpoints.TrainCheckpointer(workdir, keep=10)
  step = ckpt.latest_step()
  state = ckpt.restore_raw(step)
  ckpt.close()
  return step, state


@pytest.fixture(scope='module')
def one_step(data_dir, tmp_path_factory):
  """A finished one-step run: (workdir, the returned results). Tests that
  only read it share it; tests that change a workdir train their own."""
  workdir = str(tmp_path_factory.mktemp('one_step') / 'run')
  results = train.train_and_evaluate(
    tiny_config(data_dir, num_train_steps=1), workdir
  )
  return workdir, results


def test_end_to_end_writes_checkpoint_metrics_and_results(one_step):
  workdir, results = one_step
  on_disk = json.loads(open(os.path.join(workdir, 'results.json')).read())
  assert on_disk['status'] == results['status'] == 'completed'
  assert on_disk['step'] == 1
  assert on_disk['eval']['examples'] == 360  # The whole digits test split.
  assert on_disk['eval']['ema_examples'] == 360
  assert 0 <= on_disk['eval']['top1'] <= 1
  assert on_disk['model'] == {
    'alpha': 0.125,
    'resolution': 32,
    'num_classes': 10,
  }
  assert on_disk['params'] > 0 and on_disk['mult_adds'] > 0
  assert on_disk['config']['dataset'] == 'digits'
  step, state = _latest_state(workdir)
  assert step == 1
  assert int(state['step']) == 1


def test_tensorboard_reads_the_events(one_step):
  workdir, results = one_step
  (name,) = [p for p in os.listdir(workdir) if p.startswith('events.out')]
  loader = event_file_loader.LegacyEventFileLoader(os.path.join(workdir, name))
  events = list(loader.Load())
  assert events[0].file_version == 'brain.Event:2'
  scalars = {
    (e.step, v.tag): v.simple_value for e in events for v in e.summary.value
  }
  assert (1, 'train_loss') in scalars and (1, 'train_learning_rate') in scalars
  np.testing.assert_allclose(
    scalars[1, 'eval_top1'], results['eval']['top1'], rtol=1e-6
  )
  # The config as hparams, for TensorBoard's HParams tab.
  plugins = {
    v.metadata.plugin_data.plugin_name for e in events for v in e.summary.value
  }
  assert 'hparams' in plugins


def test_relative_workdir(data_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  train.train_and_evaluate(tiny_config(data_dir, num_train_steps=1), 'run')
  assert (tmp_path / 'run' / 'checkpoints' / '1').is_dir()
  assert (tmp_path / 'run' / 'results.json').exists()


def _pmapped_step(config, model, tx, lr_fn, params, devices):
  step = functools.partial(
    steps.train_step,
    model=model,
    tx=tx,
    learning_rate_fn=lr_fn,
    decay_mask=optim.weight_decay_mask(params),
    weight_decay=config.weight_decay,
    label_smoothing=config.label_smoothing,
    ema_decay=config.ema_decay,
  )
  return jax.pmap(step, axis_name=steps.AXIS, devices=devices)


def test_four_devices_match_one_device_on_the_same_global_batch():
  # In float64, so that the comparison sees the algorithm (a missing
  # cross-device mean is off by whole percents) and not float32 summation
  # order, which alone moves early-layer gradients by ~1e-5 relative.
  assert jax.local_device_count() == 4
  with jax.enable_x64(True):
    config = tiny_config(None, dropout_rate=0.0)
    derived = config_lib.derive(config, num_train_examples=1000, device_count=4)
    model = steps.create_model(config, 10, dtype=jnp.float64)
    lr_fn = optim.create_learning_rate_fn(config, derived)
    tx = optim.create_optimizer(config, lr_fn)
    state = steps.create_train_state(config, model, tx, jax.random.PRNGKey(0))
    to64 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float64), tree)
    params = to64(state.params)
    state = state.replace(
      params=params,
      batch_stats=to64(state.batch_stats),
      ema_params=to64(state.ema_params),
      opt_state=tx.init(params),
    )
    batch = synthetic.random_batch(16, 32, num_classes=10)
    batch['image'] = batch['image'].astype(np.float64)
    outs = {}
    for n in (1, 4):
      devices = jax.local_devices()[:n]
      p_step = _pmapped_step(config, model, tx, lr_fn, state.params, devices)
      sharded = {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}
      new_state, metrics = p_step(
        jax_utils.replicate(state, devices=devices), sharded
      )
      outs[n] = jax.device_get(
        jax.tree.map(lambda x: x[0], (new_state, metrics))
      )
  (s1, m1), (s4, m4) = outs[1], outs[4]
  assert s1.params['conv1']['kernel'].dtype == np.float64
  np.testing.assert_allclose(m4['loss'], m1['loss'], rtol=1e-5)
  np.testing.assert_allclose(m4['accuracy'], m1['accuracy'], rtol=1e-5)
  for name in ('params', 'batch_stats', 'ema_params'):
    a, b = getattr(s4, name), getattr(s1, name)
    for (path, x), y in zip(
      jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
      np.testing.assert_allclose(
        x, y, rtol=1e-5, err_msg=f'{name}{jax.tree_util.keystr(path)}'
      )
  # The step really moved the weights, so the comparison means something.
  assert not np.allclose(
    s1.params['conv1']['kernel'], state.params['conv1']['kernel']
  )


def test_resume_gives_the_same_params_as_an_uninterrupted_run(
  data_dir, tmp_path
):
  straight = str(tmp_path / 'straight')
  resumed = str(tmp_path / 'resumed')
  train.train_and_evaluate(tiny_config(data_dir, num_train_steps=4), straight)
  first = train.train_and_evaluate(
    tiny_config(data_dir, num_train_steps=2), resumed
  )
  assert first['step'] == 2
  second = train.train_and_evaluate(
    tiny_config(data_dir, num_train_steps=4), resumed
  )
  assert second['step'] == 4
  (step_a, a), (step_b, b) = _latest_state(straight), _latest_state(resumed)
  assert step_a == step_b == 4
  for key in ('params', 'batch_stats', 'ema_params', 'opt_state'):
    for x, y in zip(
      jax.tree.leaves(a[key]), jax.tree.leaves(b[key]), strict=True
    ):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def _interrupting(after_batches, action):
  """Wraps train.device_batches so `action` runs after that many batches."""
  original = train.device_batches

  def wrapped(batches, prefetch=2):
    for i, batch in enumerate(original(batches, prefetch)):
      if i == after_batches:
        batch = action(batch)
      yield batch

  return wrapped


def test_sigterm_saves_a_checkpoint_that_resumes(
  data_dir, tmp_path, monkeypatch
):
  workdir = str(tmp_path / 'run')

  def send_sigterm(batch):
    os.kill(os.getpid(), signal.SIGTERM)
    return batch

  with monkeypatch.context() as m:
    m.setattr(train, 'device_batches', _interrupting(2, send_sigterm))
    results = train.train_and_evaluate(
      tiny_config(data_dir, num_train_steps=50), workdir
    )
  assert results['status'] == 'preempted'
  step, state = _latest_state(workdir)
  assert step == results['step'] == 3
  assert int(state['step']) == 3
  # The default handler is back: the test process is not left immune.
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  results = train.train_and_evaluate(
    tiny_config(data_dir, num_train_steps=5), workdir
  )
  assert results['status'] == 'completed'
  assert results['step'] == 5


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(
  data_dir, tmp_path, monkeypatch
):
  workdir = str(tmp_path / 'run')

  def poison(batch):
    return {**batch, 'image': batch['image'] * jnp.nan}

  monkeypatch.setattr(train, 'device_batches', _interrupting(2, poison))
  with pytest.raises(train.NonFiniteError, match='step 3'):
    train.train_and_evaluate(
      tiny_config(data_dir, num_train_steps=6, checkpoint_every_steps=2),
      workdir,
    )
  step, state = _latest_state(workdir)
  assert step == 2
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state['params']))


def test_checkpoint_from_another_model_is_a_clear_error(data_dir, one_step):
  workdir, _ = one_step
  config = tiny_config(data_dir, num_train_steps=2)
  config.model.alpha = 0.25
  config.resolution = 40
  with pytest.raises(checkpoints.CheckpointMismatchError) as e:
    train.train_and_evaluate(config, workdir)
  assert 'alpha: checkpoint has 0.125, config has 0.25' in str(e.value)
  assert 'resolution: checkpoint has 32, config has 40' in str(e.value)


def _tf1_rmsprop(params, grads_seq, lrs, decay, momentum, eps):
  """TF1's ApplyRMSProp kernel, written out."""
  ms = np.ones_like(params)
  mom = np.zeros_like(params)
  for g, lr in zip(grads_seq, lrs, strict=True):
    ms = decay * ms + (1 - decay) * g * g
    mom = momentum * mom + lr * g / np.sqrt(ms + eps)
    params = params - mom
  return params


def test_rmsprop_matches_tf1_update_equations():
  # Without weight decay: the update is RMSprop's alone.
  config = tiny_config(None, weight_decay=0.0)
  schedule = lambda step: 0.1 * 0.5 ** (step // 2)
  tx = optim.create_optimizer(config, schedule)
  params = np.array([0.5, -1.5, 2.0], np.float32)
  rng = np.random.default_rng(0)
  grads_seq = [rng.normal(size=3).astype(np.float32) * 3 for _ in range(6)]
  p = jnp.asarray(params)
  opt_state = tx.init(p)
  for g in grads_seq:
    updates, opt_state = tx.update(jnp.asarray(g), opt_state, p)
    p = optax.apply_updates(p, updates)
  expected = _tf1_rmsprop(
    params.astype(np.float64),
    grads_seq,
    [schedule(i) for i in range(6)],
    config.rmsprop_decay,
    config.momentum,
    config.rmsprop_epsilon,
  )
  np.testing.assert_allclose(p, expected, rtol=1e-5)
  # Optax's defaults (ms starting at 0, eps outside the sqrt) differ.
  plain = optax.rmsprop(0.1, decay=0.9, eps=1.0, momentum=0.9)
  q, plain_state = jnp.asarray(params), plain.init(jnp.asarray(params))
  updates, _ = plain.update(jnp.asarray(grads_seq[0]), plain_state, q)
  assert not np.allclose(
    q + updates, _tf1_rmsprop(params, grads_seq[:1], [0.1], 0.9, 0.9, 1.0)
  )


def test_weight_decay_mask_covers_conv_and_dense_kernels_only():
  config = tiny_config(None)
  model = steps.create_model(config, 10)
  params = steps.initial_variables(model, 32, jax.random.PRNGKey(0))['params']
  mask = optim.weight_decay_mask(params)
  decayed = {m for m, leaves in mask.items() if leaves.get('kernel')}
  expected = {'conv1', 'logits'} | {f'conv_pw_{i}' for i in range(1, 14)}
  assert decayed == expected
  assert not any(
    v for m, leaves in mask.items() for k, v in leaves.items() if k != 'kernel'
  )
  with_dw = optim.weight_decay_mask(params, decay_depthwise=True)
  decayed = {m for m, leaves in with_dw.items() if leaves.get('kernel')}
  assert decayed == expected | {f'conv_dw_{i}' for i in range(1, 14)}


def test_learning_rate_schedule_scales_warms_up_and_decays():
  config = tiny_config(
    None,
    batch_size=128,
    warmup_epochs=1.0,
    lr_decay_epochs=2.0,
    lr_decay_factor=0.5,
  )
  config.base_learning_rate = 0.1
  config.base_batch_size = 64
  derived = config_lib.derive(config, num_train_examples=1280, device_count=4)
  assert derived.steps_per_epoch == 10
  lr = optim.create_learning_rate_fn(config, derived)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(5)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(lr(10)), 0.2, rtol=1e-6)
  np.testing.assert_allclose(float(lr(29)), 0.2, rtol=1e-6)
  np.testing.assert_allclose(float(lr(30)), 0.1, rtol=1e-6)


def test_eval_mode_scores_a_workdir_and_exported_weights(
  data_dir, one_step, tmp_path
):
  workdir, _ = one_step
  config = tiny_config(data_dir)
  config.init_from = workdir
  from_workdir = train.evaluate(config, str(tmp_path / 'eval1'))
  assert from_workdir['eval']['examples'] == 360
  # Export the same (EMA) weights the way keras_import does, then score them.
  variables, fields = checkpoints.load_pretrained(workdir)
  exported = checkpoints.save_pretrained(
    str(tmp_path / 'exported'), variables, fields
  )
  config.init_from = str(exported)
  from_export = train.evaluate(config, str(tmp_path / 'eval2'))
  assert from_export['eval'] == from_workdir['eval']
  on_disk = json.loads((tmp_path / 'eval2' / 'eval_results.json').read_text())
  assert on_disk['eval'] == from_export['eval']
  config.model.alpha = 0.25
  with pytest.raises(checkpoints.CheckpointMismatchError, match='alpha'):
    train.evaluate(config, str(tmp_path / 'eval3'))


def test_train_log_rate_and_eta_leave_out_the_first_step_and_pauses(
  monkeypatch,
):
  clock = [0.0]
  monkeypatch.setattr(train.time, 'time', lambda: clock[0])
  lines = []
  monkeypatch.setattr(
    train.logging, 'info', lambda fmt, *args: lines.append(fmt % args)
  )

  class Writer:
    def __init__(self):
      self.scalars_at = {}

    def scalars(self, step, scalars):
      self.scalars_at[step] = scalars

  def metrics():
    values = dict.fromkeys(
      ['loss', 'cross_entropy', 'accuracy', 'learning_rate', 'grad_norm'],
      0.5,
    )
    values.update(corrupt=0, examples=64)
    return {k: jnp.full((1,), v) for k, v in values.items()}

  writer = Writer()
  log = train._TrainLog(writer, num_train_steps=20)
  # Step 1 (compiling) takes 30 s; steps 2-10 take 1 s each, with an
  # evaluation of 100 s after step 5.
  clock[0] = 30.0
  log.add(1, metrics())
  for step in range(2, 11):
    clock[0] += 1.0
    log.add(step, metrics())
    if step == 5:
      with log.paused(jnp.zeros(1)):
        clock[0] += 100.0
  log.write(10)
  assert writer.scalars_at[10]['train_images_per_second'] == pytest.approx(64)
  assert lines[-1].startswith('step 10/20: loss 0.5000')
  assert lines[-1].endswith('64.0 images/s, ETA 0m10s')
