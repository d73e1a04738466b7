"""The published Keras ImageNet weights in `../shared/weights/` (see its
README): conversion of every file and layout, logits against Keras', top-5
on real photos, and fine-tuning against training from scratch.

Skipped only when that folder is absent (a checkout without the shared
weights); the weights are never copied into the repository.
"""

import functools
import io
import os

import jax
import keras
import numpy as np
import pytest
import skimage.data
from PIL import Image

from configs import finetune
from input_pipeline import preprocessing
from mobilenet_flax import checkpoints, keras_import, models, predict, train
from tests.test_finetune import write_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(os.path.dirname(ROOT), 'shared', 'weights')

pytestmark = pytest.mark.skipif(
  not os.path.isdir(WEIGHTS),
  reason=f'no published Keras weights at {WEIGHTS} (../shared/weights)',
)

# File, layout, (alpha, resolution): what the converter must find in it.
FILES = [
  ('mobilenet_2_5_128_tf.h5', 'save_weights', (0.25, 128)),
  ('mobilenet_7_5_224_tf.h5', 'save_weights', (0.75, 224)),
  ('keras2_full_model_mobilenet_0.25_128.h5', 'whole model', (0.25, 128)),
  ('keras2_full_model_mobilenet_0.25_160.h5', 'whole model', (0.25, 160)),
]
# skimage's photos, with an ImageNet class each must rank in its top 5.
PHOTOS = {'chelsea': 'tabby', 'coffee': 'espresso'}


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """Every file converted by the CLI's code path into a weights folder."""
  out = tmp_path_factory.mktemp('converted')
  dirs = {}
  for name, _, _ in FILES:
    fields = keras_import.run(os.path.join(WEIGHTS, name), str(out / name))
    dirs[name] = (str(out / name), fields)
  return dirs


@functools.cache
def photo_inputs(resolution):
  """The photos as the eval pipeline feeds them, plus one noise image."""
  images = [
    preprocessing.preprocess_for_eval(
      png_bytes(getattr(skimage.data, name)()), resolution=resolution
    ).numpy()
    for name in PHOTOS
  ]
  noise = np.random.default_rng(0).uniform(-1, 1, (resolution, resolution, 3))
  return np.stack(images + [noise.astype(np.float32)])


def png_bytes(pixels):
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, 'PNG')
  return out.getvalue()


def keras_logits(name, alpha, resolution, x):
  """Keras' own logits: whole-model saves loaded as saved (their softmax
  cut off at `conv_preds`), `save_weights` files loaded into Keras'
  MobileNet."""
  path = os.path.join(WEIGHTS, name)
  if name.startswith('keras2_full_model'):
    saved = keras.models.load_model(path, compile=False)
    model = keras.Model(saved.input, saved.get_layer('conv_preds').output)
  else:
    model = keras.applications.MobileNet(
      input_shape=(resolution, resolution, 3),
      alpha=alpha,
      weights=None,
      classifier_activation=None,
    )
    model.load_weights(path)
  return np.asarray(model(x, training=False)).reshape(len(x), -1)


# Keras 3 warns that a Keras 2 model's input is named differently.
@pytest.mark.filterwarnings('ignore:The structure of `inputs`')
@pytest.mark.parametrize('name,layout,expected', FILES)
def test_converted_logits_equal_keras(converted, name, layout, expected):
  alpha, resolution = expected
  contents = keras_import.inspect_h5(os.path.join(WEIGHTS, name))
  assert (contents.layout, contents.alpha) == (layout, alpha)
  assert contents.resolution == (
    resolution if layout == 'whole model' else None
  )
  directory, fields = converted[name]
  assert fields == {
    'alpha': alpha,
    'resolution': resolution,
    'num_classes': 1000,
  }
  variables, loaded_fields = checkpoints.load_pretrained(directory)
  assert loaded_fields == fields
  x = photo_inputs(resolution)
  model = models.MobileNetV1(alpha=alpha)
  # Jitted: op-by-op execution would compile every op on its own.
  ours = np.asarray(
    jax.jit(functools.partial(model.apply, train=False))(variables, x)
  )
  theirs = keras_logits(name, alpha, resolution, x)
  # Real weights: the photos are classified confidently, so a wrong layer
  # would move the logits by whole units, not by float rounding.
  assert np.abs(theirs[0] - theirs[2]).max() > 5
  np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=1e-5)


def test_predict_ranks_the_photo_classes_in_the_top_5(converted, tmp_path):
  (tmp_path / 'photos').mkdir()
  paths = []
  for name, fmt in zip(PHOTOS, ('JPEG', 'PNG'), strict=True):
    path = tmp_path / 'photos' / f'{name}.{fmt.lower()}'
    Image.fromarray(getattr(skimage.data, name)()).save(path, fmt)
    paths.append(str(path))
  (tmp_path / 'photos' / 'broken.jpeg').write_bytes(b'\xff\xd8\xffnothing')
  directory, _ = converted['mobilenet_2_5_128_tf.h5']
  results = predict.run(directory, [str(tmp_path / 'photos')], top_k=5)
  by_name = {os.path.basename(r.image): r for r in results}
  assert by_name['broken.jpeg'].error is not None
  for (name, label), path in zip(PHOTOS.items(), paths, strict=True):
    top = [n for _, n, _ in by_name[os.path.basename(path)].top]
    assert label in top, (name, top)


def test_finetuning_imagenet_weights_beats_scratch(converted, tmp_path):
  """The same short run on digits from the 0.25-128 ImageNet weights and
  from a random init: the pretrained start is far ahead."""
  root = write_digits(
    tmp_path / 'digits', [str(d) for d in range(10)], (30, 12)
  )
  directory, _ = converted['mobilenet_2_5_128_tf.h5']

  def run(init_from, workdir):
    config = finetune.get_config('alpha=0.25,res=64')
    config.dataset = f'folder:{root}'
    config.init_from = init_from
    config.batch_size = 32
    config.num_train_steps = 30
    config.warmup_epochs = 0.0
    # A 30-step run: batch-norm statistics must leave ImageNet's faster
    # than in the recipe's 110 steps.
    config.model.bn_momentum = 0.8
    config.ema_decay = 0.0
    config.log_every_steps = 30
    config.eval_every_steps = 1000
    return train.train_and_evaluate(config, str(tmp_path / workdir))

  tuned = run(directory, 'tuned')
  scratch = run('', 'scratch')
  assert tuned['model']['num_classes'] == scratch['model']['num_classes'] == 10
  assert tuned['eval']['examples'] == 120
  top1 = tuned['eval']['top1'], scratch['eval']['top1']
  # Measured: 0.79 against 0.09 (chance is 0.1).
  assert top1[0] > 0.5 and top1[0] > top1[1] + 0.3, top1
