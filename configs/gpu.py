r"""The default recipe on one host with 8 GPUs.

Only overrides hardware-dependent fields of configs/default.py. Same string
arguments:

  python main.py --config=configs/gpu.py:alpha=0.5,res=160 \
      --workdir=runs/mobilenet_050_160

Global batch 1024 (128 per GPU) with bfloat16 compute. Target: the paper's
figure for the chosen point (mobilenet_flax/paper.py; 70.6% top-1 for 1.0
MobileNet-224).
"""

from configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.batch_size = 1024
  config.model.dtype = 'bfloat16'
  return config
