"""Input preprocessing and ImageNet label decoding.

Three modes, as in keras.applications' ``imagenet_utils``:

- ``"caffe"``: RGB -> BGR, then subtract the ImageNet channel means (no scaling).
  keras.applications ``resnet`` (our ``"v1"`` variant) was trained this way.
- ``"tf"``: scale to [-1, 1]. keras.applications ``resnet_v2`` (our ``"v2"``) and our
  CIFAR family.
- ``"torch"``: scale to [0, 1], subtract the ImageNet mean and divide by its std, RGB.
  torchvision / timm (our ``"v1.5"`` and ``"v1d"``).

A model's mode is looked up with :func:`preprocessing_mode`, never guessed from pixels.
"""

import json
import os

import numpy as np

from keras_resnet import specs

MODES = ("caffe", "tf", "torch")

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype="float32")
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype="float32")
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype="float32")

# variant (or "cifar") -> preprocessing mode; the registry's table, named here for callers
VARIANT_MODES = specs.PREPROCESSING

CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/"
    "data/imagenet_class_index.json"
)
CLASS_INDEX_FILE = "imagenet_class_index.json"


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")


def preprocessing_mode(name):
    """The preprocessing mode for a variant ("v1", "v1.5", "v1d", "v2", "cifar") or a
    named model ("ResNet50", "ResNet20", ...; see ``keras_resnet.list_models()``)."""
    if isinstance(name, str) and name in VARIANT_MODES:
        return VARIANT_MODES[name]
    return specs.get_spec(name).preprocessing


def preprocess_input(x, *, mode):
    """Preprocess RGB images in 0..255 for a ResNet.

    Args:
        x: array or tensor, channels last, RGB, values in 0..255. Not modified in place.
        mode: ``"caffe"``, ``"tf"`` or ``"torch"`` (see the module docstring);
            :func:`preprocessing_mode` gives the right one for a variant.

    Returns:
        float32 array or tensor of the same shape.
    """
    _check_mode(mode)
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        x = np.array(x, dtype="float32", copy=True)  # never modify the caller's array
    else:
        import keras

        x = keras.ops.cast(x, "float32")
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    return x[..., ::-1] - _CAFFE_MEAN_BGR


def _class_index_path(class_index_path=None):
    """A local ImageNet class index: the given path, else Keras' cache, else download."""
    if class_index_path is not None:
        if not os.path.isfile(class_index_path):
            raise ValueError(
                "class_index_path must be an existing JSON file. "
                f"Received: class_index_path={class_index_path!r}"
            )
        return class_index_path
    from keras_resnet.weights import cache_dir, fetch

    cached = os.path.join(cache_dir(), CLASS_INDEX_FILE)
    if os.path.isfile(cached):
        return cached
    return fetch(CLASS_INDEX_FILE, CLASS_INDEX_URL, file_hash=None)


def load_class_index(class_index_path=None):
    """ImageNet class index: list of (wordnet_id, name) for the 1000 classes."""
    with open(_class_index_path(class_index_path)) as f:
        index = json.load(f)
    return [tuple(index[str(i)]) for i in range(len(index))]


def imagenet_class_names(class_index_path=None):
    """The 1000 ImageNet class names in output order."""
    return [name for _, name in load_class_index(class_index_path)]


def decode_predictions(preds, top=5, *, class_index_path=None):
    """Decode ImageNet predictions, as keras.applications does.

    Args:
        preds: array of shape (samples, 1000).
        top: how many classes per sample.
        class_index_path: optional local ``imagenet_class_index.json``. Without it the
            file is read from Keras' cache (``~/.keras/models``) and downloaded only when
            it is not cached there.

    Returns:
        One list per sample of ``(wordnet_id, class_name, score)``, best first.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "preds must be a batch of 1000-class predictions, shape (samples, 1000). "
            f"Received: preds.shape={preds.shape}"
        )
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer. Received: top={top!r}")
    index = load_class_index(class_index_path)
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*index[i], float(row[i])) for i in best])
    return results
