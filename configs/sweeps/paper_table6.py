r"""Paper Table 6: the four width multipliers at 224 pixels.

  python -m mobilenet_flax.sweep --sweep=configs/sweeps/paper_table6.py \
      --config=configs/tpu.py --workdir=gs://BUCKET/mobilenet/table6
  python -m mobilenet_flax.report --workdir=gs://BUCKET/mobilenet/table6

Four full ImageNet runs (200 epochs each with configs/default.py). Alpha 1.0
costs about 569 M mult-adds per image, alpha 0.25 about 41 M, so the four
together cost roughly 1.9x the 1.0 MobileNet-224 run alone. Paper top-1:
70.6 / 68.4 / 63.7 / 50.6.
"""

from mobilenet_flax import paper


def get_sweep() -> list[dict]:
  return [{'model.alpha': alpha, 'resolution': 224} for alpha in paper.ALPHAS]
