"""The published figures this project reproduces, and a table formatter.

Sources: Howard et al. 2017 (arXiv:1704.04861), Tables 2, 6 and 7; the
TF-slim release of 16 checkpoints (2018_02_22), from its `mobilenet_v1.md`.
"""

from collections.abc import Sequence

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)

# Table 2: share (%) of mult-adds and of parameters by layer type for alpha 1
# at 224, counting conv/FC weights only (no biases, no batch norm).
TABLE2 = {
  'conv_1x1': (94.86, 74.59),
  'depthwise_3x3': (3.06, 1.06),
  'conv_3x3': (1.19, 0.02),
  'fully_connected': (0.18, 24.33),
}

# Table 6 (width at 224): alpha -> (top-1 %, million mult-adds, million
# params).
TABLE6 = {
  1.0: (70.6, 569, 4.2),
  0.75: (68.4, 325, 2.6),
  0.5: (63.7, 149, 1.3),
  0.25: (50.6, 41, 0.5),
}

# Table 7 (resolution at alpha 1.0): resolution -> (top-1 %, million
# mult-adds, million params).
TABLE7 = {
  224: (70.6, 569, 4.2),
  192: (69.1, 418, 4.2),
  160: (67.2, 290, 4.2),
  128: (64.4, 186, 4.2),
}

# Released checkpoints: (alpha, resolution) -> (top-1 %, top-5 %, million
# MACs). The alpha 0.75 MACs there are ~2.5% below an exact count.
RELEASED = {
  (1.0, 224): (70.9, 89.9, 569),
  (1.0, 192): (70.0, 89.2, 418),
  (1.0, 160): (68.0, 87.7, 291),
  (1.0, 128): (65.2, 85.8, 186),
  (0.75, 224): (68.4, 88.2, 317),
  (0.75, 192): (67.2, 87.3, 233),
  (0.75, 160): (65.3, 86.0, 162),
  (0.75, 128): (62.1, 83.9, 104),
  (0.5, 224): (63.3, 84.9, 150),
  (0.5, 192): (61.7, 83.6, 110),
  (0.5, 160): (59.1, 81.9, 77),
  (0.5, 128): (56.3, 79.4, 49),
  (0.25, 224): (49.8, 74.2, 41),
  (0.25, 192): (47.7, 72.3, 34),
  (0.25, 160): (45.5, 70.3, 21),
  (0.25, 128): (41.5, 66.3, 14),
}
# Released checkpoints: alpha -> million params.
RELEASED_PARAMS = {1.0: 4.24, 0.75: 2.59, 0.5: 1.34, 0.25: 0.47}

# Keras' `MobileNet()` summary at alpha 1: all variables, including the
# batch-norm moving statistics and the classifier bias.
KERAS_TOTAL_PARAMS = 4_253_864


def markdown_table(
  headers: Sequence[str], rows: Sequence[Sequence[object]]
) -> str:
  """Formats rows as a GitHub markdown table with right-aligned numbers."""
  cells = [[str(c) for c in row] for row in rows]
  widths = [
    max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)
  ]
  numeric = [
    all(_is_number(r[i]) for r in cells) and bool(cells)
    for i in range(len(headers))
  ]

  def line(values):
    return '| ' + ' | '.join(values) + ' |'

  def pad(values):
    return [
      v.rjust(w) if num else v.ljust(w)
      for v, w, num in zip(values, widths, numeric, strict=True)
    ]

  rule = [
    '-' * (w - 1) + ':' if num else '-' * w
    for w, num in zip(widths, numeric, strict=True)
  ]
  body = [line(pad(r)) for r in cells]
  return '\n'.join([line(pad(list(headers))), line(rule), *body])


def _is_number(text: str) -> bool:
  try:
    float(text.replace(',', '').rstrip('%'))
  except ValueError:
    return False
  return True
