r"""Side-by-side CPU timings against the PyTorch peer, as ratios.

Runs this project's benchmarks (`train_throughput.py`, `inference_latency.py`)
and the PyTorch peer script in turn, `--rounds` times, interleaved so that
both see the same machine load, then prints one JSON line per run and a final
JSON summary with the medians and the ratios ours / peer. Absolute figures
drift on shared machines; the ratios are what to quote.

  make compare   # builds .venv-peer (CPU PyTorch) and runs this script
  .venv/bin/python benchmarks/compare_with_peer.py \
      --peer_python=.venv-peer/bin/python \
      --peer_script=benchmarks/torch_mobilenet_v1.py --rounds=3

Each of our runs is a fresh process, so its compilation is not timed (both
scripts warm up first) but the XLA compile cache is not shared either.
"""

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
  'peer_python', '.venv-peer/bin/python', 'Python with torch.'
)
flags.DEFINE_string(
  'peer_script',
  os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'torch_mobilenet_v1.py'
  ),
  'The PyTorch peer script.',
)
flags.DEFINE_integer('rounds', 3, 'Interleaved rounds; medians are reported.')
flags.DEFINE_float('alpha', 1.0, 'Width multiplier.')
flags.DEFINE_integer('resolution', 224, 'Input height and width.')
flags.DEFINE_integer('train_batch', 32, 'Training batch.')
flags.DEFINE_list(
  'impls', ['shifted'], 'Our depthwise implementations to time.'
)
flags.DEFINE_list('modes', ['train', 'infer'], 'train and/or infer.')

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(cmd: list[str]) -> dict:
  """Runs `cmd` and returns the JSON object on its last stdout line."""
  out = subprocess.run(
    cmd, check=True, capture_output=True, text=True
  ).stdout.strip()
  return json.loads(out.splitlines()[-1])


def _ours(script: str, *args: str) -> list[str]:
  return [
    sys.executable,
    os.path.join(HERE, script),
    f'--alpha={FLAGS.alpha}',
    f'--resolution={FLAGS.resolution}',
    *args,
  ]


def _peer(mode: str, batch: int, steps: int, warmup: int) -> list[str]:
  return [
    FLAGS.peer_python,
    FLAGS.peer_script,
    f'--mode={mode}',
    f'--alpha={FLAGS.alpha}',
    f'--resolution={FLAGS.resolution}',
    f'--batch={batch}',
    f'--steps={steps}',
    f'--warmup={warmup}',
  ]


def one_round() -> dict[str, float]:
  """One timing of every benchmark: name -> images/s or milliseconds."""
  figures = {}

  def record(name, cmd, pick):
    result = _run(cmd)
    print(json.dumps({'run': name, **result}), flush=True)
    figures[name] = pick(result)

  if 'train' in FLAGS.modes:
    for impl in FLAGS.impls:
      record(
        f'train_images_per_second/{impl}',
        _ours(
          'train_throughput.py',
          f'--batch={FLAGS.train_batch}',
          f'--conv_impl={impl}',
          '--steps=3',
          '--repeats=3',
        ),
        lambda r: r['images_per_second'],
      )
    record(
      'train_images_per_second/pytorch',
      _peer('train', FLAGS.train_batch, steps=5, warmup=2),
      lambda r: r['images_per_second'],
    )
  if 'infer' in FLAGS.modes:
    for impl in FLAGS.impls:
      record(
        f'infer_batch_1_ms/{impl}',
        _ours(
          'inference_latency.py',
          '--batch_sizes=1',
          f'--conv_impl={impl}',
          '--runs=30',
        ),
        lambda r: r['batch_1_latency_ms'],
      )
    record(
      'infer_batch_1_ms/pytorch',
      _peer('infer', 1, steps=30, warmup=3),
      lambda r: 1000 * r['seconds_per_step'],
    )
  return figures


def main(argv):
  del argv
  rounds = [one_round() for _ in range(FLAGS.rounds)]
  medians = {
    name: statistics.median(r[name] for r in rounds) for name in rounds[0]
  }
  ratios = {}
  for name, value in medians.items():
    measure, who = name.split('/')
    if who != 'pytorch':
      # Above 1 means we are faster: throughput ours/peer, latency peer/ours.
      peer = medians[f'{measure}/pytorch']
      ratios[f'{measure}/{who}_speedup_vs_pytorch'] = round(
        value / peer if 'per_second' in measure else peer / value, 3
      )
  print(
    json.dumps(
      {
        'summary': 'compare_with_peer',
        'rounds': FLAGS.rounds,
        'alpha': FLAGS.alpha,
        'resolution': FLAGS.resolution,
        'cpu_count': os.cpu_count(),
        'medians': {k: round(v, 3) for k, v in medians.items()},
        'speedups': ratios,
      }
    )
  )


if __name__ == '__main__':
  app.run(main)
