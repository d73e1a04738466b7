"""Parameter and mult-add counts, derived from the model itself.

Nothing here is a hand-kept table: the model is traced abstractly
(`jax.eval_shape`, no FLOPs spent) and every conv or dense kernel is
classified by its shape into the paper's Table 2 layer types. Mult-adds
follow the paper's convention: one per kernel weight per output position,
ignoring biases, batch norm, activations and pooling.

  python -m mobilenet_flax.complexity --alpha 0.75 --resolution 160
  python -m mobilenet_flax.complexity --alpha 1.0 --resolution 224 --json
  python -m mobilenet_flax.complexity --grid
"""

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import flags
from flax import traverse_util

from mobilenet_flax import cli, models, paper

LAYER_TYPES = models.LAYER_TYPES


@dataclasses.dataclass(frozen=True)
class LayerCost:
  name: str
  layer_type: str
  weights: int
  mult_adds: int


@dataclasses.dataclass(frozen=True)
class Complexity:
  """Counts for one network at one resolution.

  Attributes:
    params: trainable parameters (kernels, classifier bias, batch-norm scale
      and offset).
    batch_stats: batch-norm moving means and variances.
    layers: per-layer kernel weights and mult-adds.
  """

  alpha: float
  resolution: int
  num_classes: int
  params: int
  batch_stats: int
  layers: tuple[LayerCost, ...]

  @property
  def mult_adds(self) -> int:
    return sum(layer.mult_adds for layer in self.layers)

  @property
  def weights(self) -> int:
    return sum(layer.weights for layer in self.layers)

  def breakdown(self) -> dict[str, dict[str, float]]:
    """Mult-adds and kernel weights per Table 2 layer type, with shares."""
    out = {}
    for layer_type in LAYER_TYPES:
      of_type = [x for x in self.layers if x.layer_type == layer_type]
      mult_adds = sum(x.mult_adds for x in of_type)
      weights = sum(x.weights for x in of_type)
      out[layer_type] = {
        'mult_adds': mult_adds,
        'weights': weights,
        'mult_adds_pct': 100 * mult_adds / self.mult_adds,
        'weights_pct': 100 * weights / self.weights,
      }
    return out

  def to_json(self) -> dict[str, Any]:
    return {
      'alpha': self.alpha,
      'resolution': self.resolution,
      'num_classes': self.num_classes,
      'params': self.params,
      'batch_stats': self.batch_stats,
      'total_variables': self.params + self.batch_stats,
      'mult_adds': self.mult_adds,
      'weights': self.weights,
      'breakdown': self.breakdown(),
    }


# Counts depend only on the model's fields and the resolution, and tracing
# the model takes most of a second: the report and the grid tables ask for
# the same points again.
@functools.cache
def count(model: models.MobileNetV1, resolution: int) -> Complexity:
  """Counts parameters and mult-adds of `model` on square inputs."""

  def init_and_capture():
    x = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)
    _, state = model.apply(
      variables,
      x,
      train=False,
      capture_intermediates=True,
      mutable=['intermediates'],
    )
    return variables, state['intermediates']

  variables, outputs = jax.eval_shape(init_and_capture)
  params = traverse_util.flatten_dict(variables['params'])
  layers = []
  for path, kernel in params.items():
    if path[-1] != 'kernel':
      continue
    module = path[:-1]
    out_shape = _module_output(outputs, module).shape
    layers.append(_layer_cost('/'.join(module), kernel.shape, out_shape))
  return Complexity(
    alpha=model.alpha,
    resolution=resolution,
    num_classes=model.num_classes,
    params=_size(variables['params']),
    batch_stats=_size(variables['batch_stats']),
    layers=tuple(layers),
  )


def count_for(
  alpha: float, resolution: int, num_classes: int = 1000
) -> Complexity:
  """Counts for `MobileNetV1(alpha, num_classes)` at `resolution`."""
  return count(
    models.MobileNetV1(alpha=alpha, num_classes=num_classes), resolution
  )


def _module_output(
  outputs: dict, module: Sequence[str]
) -> jax.ShapeDtypeStruct:
  node = outputs
  for name in module:
    node = node[name]
  (out,) = node['__call__']
  return out


def _layer_cost(
  name: str, kernel: Sequence[int], out_shape: Sequence[int]
) -> LayerCost:
  weights = math.prod(kernel)
  layer_type = models.layer_type(tuple(kernel))
  if layer_type == 'fully_connected':
    # One mult-add per weight per example.
    return LayerCost(name, layer_type, weights, weights)
  _, out_h, out_w, _ = out_shape
  return LayerCost(name, layer_type, weights, weights * out_h * out_w)


def _size(tree: Any) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------
# Printing.


def breakdown_table(c: Complexity) -> str:
  """The paper's Table 2 layout for one network."""
  rows = []
  for layer_type, b in c.breakdown().items():
    rows.append(
      [
        layer_type,
        f'{b["mult_adds"]:,}',
        f'{b["mult_adds_pct"]:.2f}%',
        f'{b["weights"]:,}',
        f'{b["weights_pct"]:.2f}%',
      ]
    )
  rows.append(
    ['total', f'{c.mult_adds:,}', '100.00%', f'{c.weights:,}', '100.00%']
  )
  table = paper.markdown_table(
    ['layer type', 'mult-adds', 'share', 'weights', 'share'], rows
  )
  return (
    f'MobileNetV1 alpha={c.alpha:g} resolution={c.resolution} '
    f'classes={c.num_classes}\n\n{table}\n\n'
    f'Trainable parameters: {c.params:,} (kernels, classifier bias, '
    f'batch-norm scale and offset)\n'
    f'Batch-norm statistics: {c.batch_stats:,}\n'
    f'All variables: {c.params + c.batch_stats:,}\n'
  )


def grid_tables(num_classes: int = 1000) -> str:
  """Tables 6 and 7 and the released 16-point grid, with the paper's
  figures beside ours."""
  counts = {
    (a, r): count_for(a, r, num_classes)
    for a in paper.ALPHAS
    for r in paper.RESOLUTIONS
  }
  m = lambda x: f'{x / 1e6:.1f}'
  table6 = paper.markdown_table(
    ['width', 'M mult-adds', 'paper', 'M params', 'paper'],
    [
      [
        f'{a:.2f} MobileNet-224',
        m(counts[a, 224].mult_adds),
        madds,
        m(counts[a, 224].params),
        mparams,
      ]
      for a, (_, madds, mparams) in paper.TABLE6.items()
    ],
  )
  table7 = paper.markdown_table(
    ['resolution', 'M mult-adds', 'paper', 'M params', 'paper'],
    [
      [
        f'1.00 MobileNet-{r}',
        m(counts[1.0, r].mult_adds),
        madds,
        m(counts[1.0, r].params),
        mparams,
      ]
      for r, (_, madds, mparams) in paper.TABLE7.items()
    ],
  )
  grid = paper.markdown_table(
    ['alpha', *[f'{r}' for r in paper.RESOLUTIONS], 'M params', 'released'],
    [
      [f'{a:g}']
      + [
        f'{m(counts[a, r].mult_adds)} ({paper.RELEASED[a, r][2]})'
        for r in paper.RESOLUTIONS
      ]
      + [f'{counts[a, 224].params / 1e6:.2f}', paper.RELEASED_PARAMS[a]]
      for a in paper.ALPHAS
    ],
  )
  return (
    'Table 6: width multiplier at 224 (ours, paper)\n\n'
    f'{table6}\n\n'
    'Table 7: resolution at alpha 1.0 (ours, paper)\n\n'
    f'{table7}\n\n'
    'Released grid: million mult-adds (released figure in brackets)\n\n'
    f'{grid}\n'
  )


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program, so importing this
  module never claims flag names."""
  flags.DEFINE_float('alpha', 1.0, 'Width multiplier.')
  flags.DEFINE_integer('resolution', 224, 'Input height and width in pixels.')
  flags.DEFINE_integer('num_classes', 1000, 'Classifier size.')
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of a table.')
  flags.DEFINE_bool('grid', False, 'Print all 16 alpha x resolution points.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.grid:
    print(grid_tables(FLAGS.num_classes))
    return
  if FLAGS.resolution < models.MIN_RESOLUTION:
    cli.fail(
      f'--resolution must be >= {models.MIN_RESOLUTION}, got '
      f'{FLAGS.resolution}.'
    )
  try:
    c = count_for(FLAGS.alpha, FLAGS.resolution, FLAGS.num_classes)
  except ValueError as e:
    cli.fail(f'--{e}')
  print(json.dumps(c.to_json()) if FLAGS.json else breakdown_table(c))


if __name__ == '__main__':
  define_flags()
  cli.run(main)
