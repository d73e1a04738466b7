r"""Throughput of the whole training loop on random, device-resident data.

Needs no dataset and no TensorFlow: `dataset='synthetic'` feeds the same
random batch every step, so the figure is the model and the train step
alone (the loop's logged images/second). Same string arguments as
configs/default.py:

  python main.py --config=configs/fake_data_benchmark.py:alpha=1.0,res=224 \
      --workdir=/tmp/fake_data_benchmark

For a single JSON figure use benchmarks/train_throughput.py instead.
"""

from configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg)
  config.dataset = 'synthetic'
  config.batch_size = 256
  config.num_train_steps = 200
  config.warmup_epochs = 0.0
  config.log_every_steps = 20
  # Evaluating random images says nothing; keep the one final pass short.
  config.eval_every_steps = 1_000_000
  config.checkpoint_every_steps = 1_000_000
  config.ema_decay = 0.0
  return config
