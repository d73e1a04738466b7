r"""The default recipe on Imagenette: 10 easy ImageNet classes (~9.5k train
and 3.9k validation images), a real-data check in under an hour on one GPU.

tfds downloads it (about 1.5 GB) on first use, so it needs internet:

  python main.py --config=configs/imagenette.py:alpha=0.5,res=160 \
      --workdir=runs/imagenette_050_160

Only overrides dataset-dependent fields of configs/default.py. Its accuracy
has not been measured by this project yet.
"""

from configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.dataset = 'imagenette/full-size-v2'
  config.batch_size = 128
  config.num_epochs = 60.0
  config.warmup_epochs = 2.0
  config.lr_decay_epochs = 2.0
  config.lr_decay_factor = 0.9
  config.crop_area_range = (0.08, 1.0)
  # Short runs on ~9.5k images: let batch-norm statistics keep up.
  config.model.bn_momentum = 0.99
  config.ema_decay = 0.999
  config.cache_train = True
  config.cache_eval = True
  return config
