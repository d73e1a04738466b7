r"""Paper Table 7: 1.0 MobileNet at the four input resolutions.

  python -m mobilenet_flax.sweep --sweep=configs/sweeps/paper_table7.py \
      --config=configs/tpu.py --workdir=gs://BUCKET/mobilenet/table7
  python -m mobilenet_flax.report --workdir=gs://BUCKET/mobilenet/table7

Four full ImageNet runs (200 epochs each with configs/default.py). Cost
scales with the pixel count: 224, 192, 160 and 128 take 569, 418, 290 and
186 M mult-adds per image, together roughly 2.6x the 224 run alone. Paper
top-1: 70.6 / 69.1 / 67.2 / 64.4. Sharing a workdir with paper_table6 reuses
the 1.0 MobileNet-224 point (finished points are skipped).
"""

from mobilenet_flax import paper


def get_sweep() -> list[dict]:
  return [{'model.alpha': 1.0, 'resolution': res} for res in paper.RESOLUTIONS]
