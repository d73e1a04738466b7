r"""The default recipe on a Cloud TPU VM slice (v4-8 and up, v5e).

Only overrides hardware-dependent fields of configs/default.py: a larger
global batch, bfloat16 compute and an in-memory cache of the training set.
Same string arguments:

  python main.py --config=configs/tpu.py:alpha=1.0,res=224 \
      --workdir=gs://BUCKET/mobilenet/100_224

Run it on every worker of the slice (README, "Cloud TPU"); `--workdir` must
be a path every host can reach (gs:// or a shared filesystem). Target: the
paper's 70.6% top-1 for 1.0 MobileNet-224 (Table 6).
"""

from configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.batch_size = 4096
  config.model.dtype = 'bfloat16'
  # A v4-8 host has 400+ GB of RAM: ImageNet's encoded train set fits.
  config.cache_train = True
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  return config
