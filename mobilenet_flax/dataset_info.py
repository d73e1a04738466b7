"""What the training loop needs to know about a dataset.

Both data sources return it: `input_pipeline` (tfds) and
`mobilenet_flax.synthetic`. It lives in a module that imports nothing, so the
TensorFlow side can use it without JAX and the JAX side without TensorFlow.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str
  num_classes: int
  train_split: str
  eval_split: str
  num_train_examples: int
  num_eval_examples: int
  # The classes' names in label order (tfds: `features['label'].names`;
  # ImageNet WordNet ids become readable names); empty when the source has
  # none. Training records them with the weights, so that predictions can
  # be named. Left out of comparisons: they describe the labels, the fields
  # above define the dataset's shape.
  class_names: tuple[str, ...] = dataclasses.field(default=(), compare=False)
