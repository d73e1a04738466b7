r"""ImageNet recipe for MobileNet v1: TF-slim's, as the paper used.

The paper (Howard et al. 2017, section 3.2) trained with RMSprop in
TensorFlow with little regularisation and augmentation; TF-slim's
`mobilenet_v1_train.py` and `mobilenet_v1_arg_scope` hold the values: TF1
RMSprop (decay 0.9, momentum 0.9, epsilon 1.0), learning rate 0.045 at batch
64, x0.94 every 2.5 epochs, L2 4e-5 on all kernels but the depthwise ones,
truncated-normal init (stddev 0.09), batch-norm decay 0.9997, no label
smoothing. Two changes make it a synchronous large-batch recipe: the learning
rate scales linearly with the global batch, and a 5-epoch linear warm-up
keeps the scaled rate stable.

The two axes of the paper are string arguments (defaults alpha=1.0,
res=224; every other field can be overridden as --config.<field>, model
fields as --config.model.<field>):

  python main.py --config=configs/default.py:alpha=0.5,res=160 \
      --workdir=runs/mobilenet_050_160

Hardware overrides: configs/tpu.py, configs/gpu.py (same arguments).

Paper top-1 on ImageNet for the default point (1.0 MobileNet-224): 70.6%
(Table 6); the released slim checkpoint scores 70.9%. Every point:
mobilenet_flax/paper.py. This recipe has not yet been run to completion on
ImageNet by this project; results land in docs/results.md when it has.
"""

import ml_collections

DEFAULT_ALPHA = 1.0
DEFAULT_RESOLUTION = 224


def parse_arg(
  arg: str | None,
  alpha: float = DEFAULT_ALPHA,
  res: int = DEFAULT_RESOLUTION,
) -> tuple[float, int]:
  """(alpha, resolution) from 'alpha=0.5,res=160'; what it leaves out
  takes the given defaults (each config file passes its own)."""
  values = {'alpha': alpha, 'res': res}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep or key not in values:
      raise ValueError(
        f'Config argument {item!r} not understood: expected '
        "'alpha=<float>,res=<int>', e.g. 'alpha=0.5,res=160'."
      )
    try:
      values[key] = float(value) if key == 'alpha' else int(value)
    except ValueError:
      raise ValueError(
        f'Config argument {item!r}: {value!r} is not a number.'
      ) from None
  return values['alpha'], values['res']


def get_config(
  arg: str | None = None,
  *,
  alpha: float = DEFAULT_ALPHA,
  res: int = DEFAULT_RESOLUTION,
) -> ml_collections.ConfigDict:
  """The slim recipe at the (alpha, res) point named by `arg`; `alpha` and
  `res` are the defaults for what `arg` leaves out."""
  alpha, resolution = parse_arg(arg, alpha, res)
  config = ml_collections.ConfigDict()

  # ---- Model -------------------------------------------------------------
  # The fields of `mobilenet_flax.models.MobileNetV1` (its docstring says
  # what each does); the dataset supplies `num_classes`.
  config.model = ml_collections.ConfigDict()
  # Width multiplier: scales every layer's channel count (paper section 3.3).
  config.model.alpha = alpha
  # 'relu6' as slim and Keras; 'relu' as the paper's text.
  config.model.activation = 'relu6'
  # slim keeps 0.999 of the features before the classifier.
  config.model.dropout_rate = 0.001
  config.model.bn_momentum = 0.9997
  config.model.bn_epsilon = 1e-3
  # Stddev of the truncated-normal kernel initialiser (slim: 0.09).
  config.model.init_stddev = 0.09
  # How the depthwise and 1x1 convs are computed; 'auto' picks the fastest
  # for the backend (grouped convolutions on GPU and TPU, shifted
  # multiply-adds and matrix products on CPU).
  config.model.conv_impl = 'auto'
  # Compute dtype; parameters and optimizer state stay float32.
  config.model.dtype = 'float32'
  # Input height and width (the paper's resolution multiplier); the data
  # pipeline resizes to it, and checkpoints record it.
  config.resolution = resolution

  # ---- Data ---------------------------------------------------------------
  # Any tfds image-classification dataset; class count and split sizes are
  # read from its info.
  config.dataset = 'imagenet2012'
  # tfds data dir; None uses TFDS_DATA_DIR or ~/tensorflow_datasets.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  # Prepare datasets tfds can download itself (not imagenet2012: manual).
  config.download_data = True
  config.train_split = 'train'
  # None picks 'validation' if the dataset has one, else 'test'.
  config.eval_split = ml_collections.config_dict.placeholder(str)
  # Inception-style crops; slim's ranges (the JAX examples use 8% area).
  config.crop_area_range = (0.05, 1.0)
  config.crop_aspect_ratio_range = (3 / 4, 4 / 3)
  config.crop_max_attempts = 100
  config.random_flip = True
  # Eval keeps the central 87.5% of each side, then resizes.
  config.eval_crop_fraction = 0.875
  config.shuffle_buffer_size = 16_384
  # Cache encoded examples in memory (worth it for small datasets and for
  # ImageNet on hosts with >150 GB of RAM).
  config.cache_train = False
  config.cache_eval = False

  # ---- Optimisation -------------------------------------------------------
  # Global batch over all devices and hosts.
  config.batch_size = 1024
  # 'rmsprop' (TF1 semantics) or 'momentum' (SGD with Nesterov momentum).
  config.optimizer = 'rmsprop'
  config.rmsprop_decay = 0.9
  config.rmsprop_epsilon = 1.0
  config.momentum = 0.9
  # Learning rate at `base_batch_size`, scaled linearly to `batch_size`.
  config.base_learning_rate = 0.045
  config.base_batch_size = 64
  # 'exponential' (staircase, slim) or 'cosine'.
  config.lr_schedule = 'exponential'
  config.warmup_epochs = 5.0
  config.lr_decay_factor = 0.94
  config.lr_decay_epochs = 2.5
  config.num_epochs = 200.0
  # -1 trains for num_epochs; a positive value overrides it.
  config.num_train_steps = -1
  # L2 as 0.5 * wd * sum(w^2) on conv and dense kernels.
  config.weight_decay = 4e-5
  # The paper puts very little or no weight decay on depthwise filters.
  config.weight_decay_depthwise = False
  config.label_smoothing = 0.0
  # Exponential moving average of the weights, evaluated beside the raw
  # weights; 0 turns it off.
  config.ema_decay = 0.9999

  # ---- Loop, checkpoints, logging ----------------------------------------
  config.seed = 0
  config.log_every_steps = 100
  # <= 0 evaluates once per epoch.
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  # Capture a profile of a few steps into the workdir.
  config.profile = False
  # Directory of weights to start from or to evaluate (from
  # `python -m mobilenet_flax.keras_import` or a finished run's workdir).
  config.init_from = ''
  return config
