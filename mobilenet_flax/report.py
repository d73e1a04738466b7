r"""Turns a sweep's results into the paper's tables and figures.

  python -m mobilenet_flax.report --workdir=runs/grid16

Reads `<workdir>/sweep.json` (the points the sweep expected, and which
failed) and every `<workdir>/*/results.json`, then writes to `--output_dir`
(default: the workdir):

  report.md               every point; paper Tables 6 and 7 and the released
                          16-model grid, ours beside the published figures
  top1_vs_mult_adds.png   top-1 against mult-adds, log axis (paper Figure 4)
  top1_vs_params.png      top-1 against parameters (paper Figure 5)

A point without results is listed as 'missing' (or 'failed', from
sweep.json), never left out. Top-1 is that of the EMA weights when every
run kept them, else of the raw weights.
"""

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from absl import flags
from etils import epath
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mobilenet_flax import cli, paper, run_files

IMAGENET = 'imagenet2012'
REPORT_MD = 'report.md'
MULT_ADDS_PNG = 'top1_vs_mult_adds.png'
PARAMS_PNG = 'top1_vs_params.png'


@dataclasses.dataclass
class Row:
  """One point of the sweep and what it measured, if anything."""

  name: str
  alpha: float | None
  resolution: int | None
  # 'completed', 'preempted', 'failed' or 'missing'.
  status: str
  results: dict[str, Any] | None = None

  @property
  def done(self) -> bool:
    return self.status == 'completed'


# ---- Reading the sweep ------------------------------------------------------


def collect_rows(workdir: str, record: dict[str, Any]) -> list[Row]:
  """The sweep's points in its order, then any other run in the workdir."""
  rows = []
  for point in record.get('points', []):
    results = run_files.read_results(epath.Path(workdir) / point['name'])
    rows.append(_row(point['name'], results, point.get('status'), point))
  listed = {row.name for row in rows}
  found = sorted(epath.Path(workdir).glob(f'*/{run_files.RESULTS_JSON}'))
  for path in found:
    name = path.parent.name
    if name not in listed:
      rows.append(_row(name, run_files.read_results(path.parent), None, {}))
  return rows


def _row(
  name: str,
  results: dict[str, Any] | None,
  sweep_status: str | None,
  point: dict[str, Any],
) -> Row:
  model = (results or {}).get('model', {})
  alpha = model.get('alpha', point.get('alpha'))
  resolution = model.get('resolution', point.get('resolution'))
  status = (results or {}).get('status')
  # A failure after an earlier preempted try leaves that try's results.json.
  if status != 'completed' and sweep_status == 'failed':
    status = 'failed'
  return Row(name, alpha, resolution, status or 'missing', results)


# ---- Numbers ----------------------------------------------------------------


def uses_ema(rows: Sequence[Row]) -> bool:
  """Whether the tables show EMA weights: `run_files.metric_prefix`'s rule
  (every completed run has them), which the sweep's summary applies too."""
  return run_files.metric_prefix(r.results for r in rows) == 'ema_'


def accuracy(row: Row | None, k: int, ema: bool) -> float | None:
  """Top-k (%) of a completed row, else None."""
  if row is None:
    return None
  return run_files.top_k_percent(row.results, k, 'ema_' if ema else '')


def millions(row: Row | None, key: str) -> float | None:
  """A completed row's 'params' or 'mult_adds' in millions."""
  if row is None or not row.done:
    return None
  return row.results[key] / 1e6


def fmt(value: float | None, digits: int = 1) -> str:
  return '-' if value is None else f'{value:.{digits}f}'


def fmt_millions(value: float | None) -> str:
  """Three significant figures or so, as the paper's tables print them."""
  if value is None:
    return '-'
  return f'{value:.{0 if value >= 100 else 1 if value >= 10 else 2}f}'


def fmt_diff(ours: float | None, theirs: float) -> str:
  return '-' if ours is None else f'{ours - theirs:+.1f}'


def ours(row: Row | None, value: str) -> str:
  """`value` for a completed row; else the row's status, or 'missing'."""
  if row is None:
    return 'missing'
  return value if row.done else row.status


def model_name(alpha: float, resolution: int) -> str:
  return f'{float(alpha)!r} MobileNet-{resolution}'


# ---- Tables -----------------------------------------------------------------


def by_point(rows: Sequence[Row]) -> dict[tuple[float, int], Row]:
  """Rows keyed by (alpha, resolution); a completed row wins a tie."""
  out = {}
  for row in rows:
    key = (row.alpha, row.resolution)
    if key not in out or (row.done and not out[key].done):
      out[key] = row
  return out


def all_points_table(rows: Sequence[Row], ema: bool) -> str:
  body = []
  for row in rows:
    results = row.results or {}
    seconds = results.get('wall_time_seconds')
    body.append(
      [
        row.name,
        '-' if row.alpha is None else row.alpha,
        '-' if row.resolution is None else row.resolution,
        fmt(accuracy(row, 1, ema), 2),
        fmt(accuracy(row, 5, ema), 2),
        fmt_millions(millions(row, 'mult_adds')),
        fmt_millions(millions(row, 'params')),
        fmt(results.get('epochs') if row.done else None, 2),
        '-' if seconds is None or not row.done else f'{seconds:.0f}',
        row.status,
      ]
    )
  headers = [
    'Point',
    'Alpha',
    'Resolution',
    'Top-1 (%)',
    'Top-5 (%)',
    'M mult-adds',
    'M params',
    'Epochs',
    'Wall time (s)',
    'Status',
  ]
  return paper.markdown_table(headers, body)


def paper_table(
  rows: Sequence[Row],
  published: dict[Any, tuple[float, float, float]],
  point_of: Any,
  ema: bool,
) -> str:
  """Table 6 or 7: ours beside the paper's top-1, mult-adds and params."""
  found = by_point(rows)
  body = []
  for key, (top1, mult_adds, params) in published.items():
    alpha, resolution = point_of(key)
    row = found.get((alpha, resolution))
    ours_top1 = accuracy(row, 1, ema)
    body.append(
      [
        model_name(alpha, resolution),
        ours(row, fmt(ours_top1)),
        top1,
        fmt_diff(ours_top1, top1),
        fmt_millions(millions(row, 'mult_adds')),
        mult_adds,
        fmt_millions(millions(row, 'params')),
        params,
      ]
    )
  headers = [
    'Model',
    'Top-1 (%)',
    'Paper',
    'Diff',
    'M mult-adds',
    'Paper',
    'M params',
    'Paper',
  ]
  return paper.markdown_table(headers, body)


def grid_table(rows: Sequence[Row], ema: bool) -> str:
  """The 16 released checkpoints: ours beside their top-1, top-5 and MACs."""
  found = by_point(rows)
  body = []
  for (alpha, resolution), (top1, top5, macs) in paper.RELEASED.items():
    row = found.get((alpha, resolution))
    ours_top1, ours_top5 = accuracy(row, 1, ema), accuracy(row, 5, ema)
    body.append(
      [
        model_name(alpha, resolution),
        ours(row, fmt(ours_top1)),
        top1,
        fmt_diff(ours_top1, top1),
        fmt(ours_top5),
        top5,
        fmt_millions(millions(row, 'mult_adds')),
        macs,
        fmt_millions(millions(row, 'params')),
        paper.RELEASED_PARAMS[alpha],
      ]
    )
  headers = [
    'Model',
    'Top-1 (%)',
    'Released',
    'Diff',
    'Top-5 (%)',
    'Released',
    'M MACs',
    'Released',
    'M params',
    'Released',
  ]
  return paper.markdown_table(headers, body)


# ---- The report -------------------------------------------------------------


def datasets(rows: Sequence[Row], record: dict[str, Any]) -> list[str]:
  """Datasets of the runs with results; before any, those the sweep set."""
  names = {r.results.get('dataset') for r in rows if r.results}
  if not any(names):
    names = {p.get('dataset') for p in record.get('points', [])}
  return sorted(n for n in names if n)


def banner(names: Sequence[str]) -> str:
  """A warning when the results cannot be compared with the paper's."""
  others = [n for n in names if n != IMAGENET]
  if not others:
    return ''
  label = ', '.join(
    'quickstart data (digits)' if n == 'digits' else f'{n} data' for n in others
  )
  return (
    f"> **WARNING: {label}, NOT ImageNet: the paper's figures are shown "
    'for layout only.**\n\n'
  )


def preamble(
  workdir: str, rows: Sequence[Row], record: dict[str, Any], ema: bool
) -> str:
  counts = {
    s: sum(r.status == s for r in rows)
    for s in ('completed', 'preempted', 'failed', 'missing')
  }
  status = ', '.join(f'{n} {s}' for s, n in counts.items() if n)
  lines = [f'Workdir: `{workdir}`; {len(rows)} points: {status}.']
  if record:
    overrides = ' '.join(
      f'--config.{k}={v}' for k, v in record.get('config_overrides', {}).items()
    )
    lines.append(
      f'Sweep `{record.get("sweep")}` on `{record.get("config")}`'
      + (f' with `{overrides}`' if overrides else '')
      + '.'
    )
  done = [r for r in rows if r.done]
  if done:
    first = done[0].results
    classes = sorted({r.results['model']['num_classes'] for r in done})
    lines.append(
      f'Top-1 and top-5: {"EMA" if ema else "raw"} weights, on the '
      f'`{first.get("eval_split")}` split '
      f'({first["eval"].get("examples")} images), single central crop.'
    )
    lines.append(
      "Mult-adds and parameters: exact counts for the runs' "
      f'{"/".join(map(str, classes))} classes (the paper counts 1000 '
      'ImageNet classes).'
    )
  return '\n'.join(lines) + '\n\n'


def markdown(workdir: str, rows: Sequence[Row], record: dict[str, Any]) -> str:
  ema = uses_ema(rows)
  weights = 'EMA weights' if ema else 'raw weights'
  table6 = paper_table(rows, paper.TABLE6, lambda a: (a, 224), ema)
  table7 = paper_table(rows, paper.TABLE7, lambda r: (1.0, r), ema)
  return (
    '# MobileNet v1 sweep report\n\n'
    + banner(datasets(rows, record))
    + preamble(workdir, rows, record, ema)
    + f'## All points\n\n{all_points_table(rows, ema)}\n\n'
    + f'## Table 6: width multiplier at 224 ({weights})\n\n{table6}\n\n'
    + f'## Table 7: resolution at width 1.0 ({weights})\n\n{table7}\n\n'
    + '## Released 16-model grid (TF-slim, 2018_02_22; '
    + f'{weights})\n\n{grid_table(rows, ema)}\n\n'
    + '## Figures\n\n'
    + f'![Top-1 against mult-adds]({MULT_ADDS_PNG})\n\n'
    + f'![Top-1 against parameters]({PARAMS_PNG})\n'
  )


# ---- Figures ----------------------------------------------------------------


def plot(
  rows: Sequence[Row],
  key: str,
  xlabel: str,
  title: str,
  path: str,
  reference: list[tuple[float, float]],
) -> None:
  """Top-1 against `key` (mult_adds or params) on a log axis, one series per
  alpha; unfinished points are named below the axes."""
  ema = uses_ema(rows)
  figure = Figure(figsize=(6.4, 4.6), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.subplots()
  done = [r for r in rows if r.done]
  for alpha in sorted({r.alpha for r in done}, reverse=True):
    series = sorted(
      (millions(r, key), accuracy(r, 1, ema)) for r in done if r.alpha == alpha
    )
    axes.plot(*zip(*series, strict=True), 'o-', label=f'alpha {alpha!r}')
    for row in (r for r in done if r.alpha == alpha):
      axes.annotate(
        str(row.resolution),
        (millions(row, key), accuracy(row, 1, ema)),
        textcoords='offset points',
        xytext=(4, 4),
        fontsize='x-small',
      )
  if reference:
    axes.plot(
      *zip(*reference, strict=True),
      'x',
      color='0.6',
      label='published (ImageNet)',
    )
  axes.set_xscale('log')
  axes.margins(0.1)
  # Plain numbers at 1, 2 and 5 per decade; between them too when the points
  # are too close together to reach two of those.
  xs = [millions(r, key) for r in done] + [x for x, _ in reference]
  plain = ticker.FuncFormatter(lambda x, _: f'{x:g}')
  axes.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  axes.xaxis.set_major_formatter(plain)
  narrow = xs and max(xs) < 3 * min(xs)
  axes.xaxis.set_minor_formatter(plain if narrow else ticker.NullFormatter())
  axes.set_xlabel(xlabel + ', labels: resolution')
  axes.set_ylabel(f'Top-1 (%), {"EMA" if ema else "raw"} weights')
  axes.set_title(title)
  axes.grid(True, which='both', alpha=0.3)
  if done or reference:
    axes.legend(fontsize='small')
  else:
    axes.text(
      0.5, 0.5, 'no completed points', ha='center', transform=axes.transAxes
    )
  left_out = [f'{r.name} ({r.status})' for r in rows if not r.done]
  if left_out:
    figure.text(
      0.01,
      0.01,
      'Not shown: ' + ', '.join(left_out),
      fontsize='x-small',
      wrap=True,
    )
  figure.tight_layout(rect=(0, 0.05 if left_out else 0, 1, 1))
  figure.savefig(path)


def published_points(key: str) -> list[tuple[float, float]]:
  """The released grid as (million mult-adds or params, top-1 %)."""
  if key == 'mult_adds':
    return [(macs, top1) for top1, _, macs in paper.RELEASED.values()]
  return [
    (paper.RELEASED_PARAMS[alpha], top1)
    for (alpha, _), (top1, _, _) in paper.RELEASED.items()
  ]


def write_report(workdir: str, output_dir: str | None = None) -> dict[str, str]:
  """Writes report.md and the two figures.

  Args:
    workdir: the sweep directory (`--workdir` of mobilenet_flax.sweep).
    output_dir: where to write; defaults to `workdir`.

  Returns:
    {'markdown': text, 'report.md': path, and each figure's name: path}.
  """
  output_dir = output_dir or workdir
  os.makedirs(output_dir, exist_ok=True)
  record = run_files.read_sweep(workdir)
  rows = collect_rows(workdir, record)
  names = datasets(rows, record)
  on_imagenet = names == [IMAGENET]
  data = ', '.join(names) + ('' if on_imagenet else ' data, NOT ImageNet')
  paths = {
    name: os.path.join(output_dir, name)
    for name in (REPORT_MD, MULT_ADDS_PNG, PARAMS_PNG)
  }
  figures = [
    (MULT_ADDS_PNG, 'mult_adds', 'mult-adds', 4),
    (PARAMS_PNG, 'params', 'parameters', 5),
  ]
  for name, key, what, number in figures:
    plot(
      rows,
      key,
      f'Million {what} (log)',
      f'Top-1 against {what} (paper Figure {number})\n{data}',
      paths[name],
      # The published points only belong on a plot of ImageNet results.
      published_points(key) if on_imagenet else [],
    )
  text = markdown(workdir, rows, record)
  with open(paths[REPORT_MD], 'w') as f:
    f.write(text)
  return {'markdown': text, **paths}


# ---- Command line -----------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined only when run as a program, so importing this
  module never claims flag names."""
  flags.DEFINE_string('workdir', None, 'Sweep directory to report on.')
  flags.DEFINE_string(
    'output_dir', None, 'Where to write the report; default: --workdir.'
  )
  flags.mark_flag_as_required('workdir')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  written = write_report(FLAGS.workdir, FLAGS.output_dir)
  print(written.pop('markdown'))
  for path in written.values():
    print(f'Wrote {path}')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
