"""Weights: published files, hashes, the cache, checkpoint readers and converters.

- :mod:`~keras_resnet.weights.applications`: keras.applications' ImageNet files and
  legacy / Keras 3 ``.h5`` loading by layer name (``weights="imagenet"``);
- :mod:`~keras_resnet.weights.download`: Keras' cache folder, hash checks, atomic downloads;
- :mod:`~keras_resnet.weights.torch_pickle`: ``torch.save`` files read without torch or
  code execution; :mod:`~keras_resnet.weights.checkpoint`: every checkpoint format;
- :mod:`~keras_resnet.weights.convert`: torchvision / timm tensors to our variables;
- :mod:`~keras_resnet.weights.published`: the named torchvision / timm / CIFAR sets, their
  eval transforms, and recognising their files by hash; :mod:`~keras_resnet.weights.loading`:
  what ``weights=`` accepts;
- :mod:`~keras_resnet.weights.video`: torchvision's video ResNets (R3D, MC3, R(2+1)D).

Nothing here imports TensorFlow at import time.
"""

from keras_resnet.weights.applications import (
    BASE_WEIGHTS_PATH,
    WEIGHTS_HASHES,
    check_imagenet,
    check_weights_argument,
    imagenet_weights_name,
    load_imagenet,
    load_weights,
)
from keras_resnet.weights.checkpoint import Checkpoint, open_checkpoint, read_checkpoint
from keras_resnet.weights.download import DOWNLOAD_TIMEOUT_S, cache_dir, fetch, file_hash
from keras_resnet.weights.loading import (
    apply,
    load_checkpoint,
    plan,
    plan_cifar,
    serving_transform,
    transform_of,
    weight_set_of,
)
from keras_resnet.weights.published import (
    SETS,
    WeightSet,
    eval_transform,
    find_set,
    set_of_file,
    sets_for,
)

__all__ = [
    "BASE_WEIGHTS_PATH", "DOWNLOAD_TIMEOUT_S", "SETS", "WEIGHTS_HASHES", "apply", "cache_dir",
    "check_imagenet", "check_weights_argument", "Checkpoint", "eval_transform", "fetch",
    "file_hash", "find_set", "imagenet_weights_name", "load_checkpoint", "load_imagenet",
    "load_weights", "open_checkpoint", "plan", "plan_cifar", "read_checkpoint",
    "serving_transform", "set_of_file", "sets_for", "transform_of", "weight_set_of",
    "WeightSet",
]
