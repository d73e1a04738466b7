r"""The 16 released TF-slim checkpoints: every width at every resolution.

  python -m mobilenet_flax.sweep --sweep=configs/sweeps/grid16.py \
      --config=configs/tpu.py --workdir=gs://BUCKET/mobilenet/grid16
  # One command per point, to launch elsewhere (a pod, a cluster):
  python -m mobilenet_flax.sweep --sweep=configs/sweeps/grid16.py \
      --config=configs/tpu.py --workdir=gs://BUCKET/mobilenet/grid16 --dry_run
  python -m mobilenet_flax.report --workdir=gs://BUCKET/mobilenet/grid16

Sixteen full ImageNet runs (200 epochs each with configs/default.py). The
points sum to about 2,790 M mult-adds per image, roughly 4.9x the 1.0
MobileNet-224 run alone. It contains every point of paper_table6 and
paper_table7. Released top-1 ranges from 70.9 (1.0, 224) to 41.5
(0.25, 128): mobilenet_flax/paper.py, RELEASED.
"""

from mobilenet_flax import paper


def get_sweep() -> list[dict]:
  return [
    {'model.alpha': alpha, 'resolution': res}
    for alpha in paper.ALPHAS
    for res in paper.RESOLUTIONS
  ]
