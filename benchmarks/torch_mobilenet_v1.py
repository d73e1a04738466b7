r"""MobileNet v1 in PyTorch: the CPU peer our benchmarks are compared with.

The network of `mobilenet_flax.models` (ReLU6, batch norm after bias-free
convs, 1000-way classifier, Keras' width rule) in channels-last layout,
PyTorch's fastest on CPU; trained with RMSprop or run in inference mode.
Prints one JSON line. Needs only PyTorch (`make peer` builds a CPU-only
`.venv-peer`); no code of this project is imported, so it runs there.

  .venv-peer/bin/python benchmarks/torch_mobilenet_v1.py --mode=train \
      --alpha=1.0 --resolution=224 --batch=32
  .venv-peer/bin/python benchmarks/torch_mobilenet_v1.py --mode=infer --batch=1
"""

import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

# (depthwise stride, pointwise channels at alpha 1): the paper's Table 1.
BLOCKS = (
  (1, 64),
  (2, 128),
  (1, 128),
  (2, 256),
  (1, 256),
  (2, 512),
  *[(1, 512)] * 5,
  (2, 1024),
  (1, 1024),
)


def conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int, groups: int):
  return [
    nn.Conv2d(
      cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False
    ),
    nn.BatchNorm2d(cout, eps=1e-3),
    nn.ReLU6(inplace=True),
  ]


def mobilenet_v1(alpha: float, num_classes: int = 1000) -> nn.Sequential:
  width = lambda c: max(int(c * alpha), 8)  # noqa: E731
  cin = width(32)
  layers = conv_bn_relu6(3, cin, 3, 2, 1)
  for stride, channels in BLOCKS:
    cout = width(channels)
    layers += conv_bn_relu6(cin, cin, 3, stride, cin)
    layers += conv_bn_relu6(cin, cout, 1, 1, 1)
    cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
  return nn.Sequential(*layers)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=['train', 'infer'], default='train')
  parser.add_argument('--alpha', type=float, default=1.0)
  parser.add_argument('--resolution', type=int, default=224)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5, help='timed steps')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps')
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  args = parser.parse_args()
  if args.batch < 1 or args.steps < 1:
    parser.error('--batch and --steps must be >= 1')

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = mobilenet_v1(args.alpha).to(memory_format=torch.channels_last)
  shape = (args.batch, 3, args.resolution, args.resolution)
  x = (
    torch.rand(shape)
    .mul(2)
    .sub(1)
    .contiguous(memory_format=torch.channels_last)
  )
  y = torch.randint(0, 1000, (args.batch,))
  if args.mode == 'train':
    model.train()
    # TF1-like RMSprop settings of the slim recipe (decay 0.9, momentum 0.9).
    optimizer = torch.optim.RMSprop(
      model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9
    )

    def step():
      optimizer.zero_grad(set_to_none=True)
      nn.functional.cross_entropy(model(x), y).backward()
      optimizer.step()
  else:
    model.eval()

    def step():
      with torch.inference_mode():
        model(x)

  for _ in range(args.warmup):
    step()
  seconds = []
  for _ in range(args.steps):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  print(
    json.dumps(
      {
        'peer': 'pytorch',
        'torch': torch.__version__,
        'threads': args.threads,
        'mode': args.mode,
        'alpha': args.alpha,
        'resolution': args.resolution,
        'batch': args.batch,
        'seconds_per_step': round(median, 5),
        'images_per_second': round(args.batch / median, 2),
      }
    )
  )


if __name__ == '__main__':
  main()
