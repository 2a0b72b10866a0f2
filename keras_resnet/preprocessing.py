"""Input preprocessing and ImageNet label decoding.

Three modes, as in keras.applications' ``imagenet_utils``:

- ``"caffe"``: RGB -> BGR, then subtract the ImageNet channel means (no scaling).
  keras.applications ``resnet`` (our ``"v1"`` variant) was trained this way.
- ``"tf"``: scale to [-1, 1]. keras.applications ``resnet_v2`` (our ``"v2"``) and our
  CIFAR family.
- ``"torch"``: scale to [0, 1], subtract the ImageNet mean and divide by its std, RGB.
  torchvision / timm (our ``"v1.5"`` and ``"v1d"``).
- ``"kinetics"``: as ``"torch"`` with Kinetics-400's mean and std: torchvision's video
  ResNets (``R3D18``, ``MC3_18``, ``R2Plus1D18``; frames of a clip, channels last).

Or a publisher's own per-channel mean / std, ``{"mean": [r, g, b], "std": [r, g, b]}``
(RGB, in 0..1 units: scale to [0, 1], subtract ``mean``, divide by ``std``), as
torchvision's ``transforms.Normalize(mean, std)`` after ``ToTensor()``: the CIFAR sets of
chenyaofo and osmr normalise with CIFAR's statistics, which no mode has. Every function
taking a preprocessing accepts either; :func:`check_preprocessing` is the one check, and
its result (a mode name, or that dict with lists of floats) is what ``config.json``, run
backups and export metadata hold. On a command line the dict is written
``mean=R,G,B,std=R,G,B`` (:data:`MEAN_STD_SYNTAX`).

A model's mode is looked up with :func:`preprocessing_mode`, never guessed from pixels;
a published weight set's with :func:`preprocessing_for` of its mean / std.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_resnet import specs

MODES = ("caffe", "tf", "torch", "kinetics")

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])  # float64: cast to the input dtype
_TORCH_MEAN = np.array([0.485, 0.456, 0.406])
_TORCH_STD = np.array([0.229, 0.224, 0.225])
# torchvision.models.video's transforms (VideoClassification): Kinetics-400 mean / std
_KINETICS_MEAN = np.array([0.43216, 0.394666, 0.37645])
_KINETICS_STD = np.array([0.22803, 0.22145, 0.216989])

# variant (or "cifar") -> preprocessing mode; the registry's table, named here for callers
VARIANT_MODES = specs.PREPROCESSING

CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/"
    "data/imagenet_class_index.json"
)
CLASS_INDEX_FILE = "imagenet_class_index.json"


# how a command line writes an explicit mean / std (keras-resnet export / evaluate / predict)
MEAN_STD_SYNTAX = "mean=R,G,B,std=R,G,B"
_MEAN_STD_TEXT = re.compile(r"^\s*mean\s*=(?P<mean>[^=]*)[,;\s]\s*std\s*=(?P<std>[^=]*)$")


def _three(value):
    """Three finite floats from a list / tuple / array or "a,b,c" text, else None."""
    if isinstance(value, str):
        value = value.split(",")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == 3 and all(np.isfinite(numbers)) else None


def check_preprocessing(value: Any, argument: str = "preprocessing") -> str | dict:
    """The canonical form of a preprocessing, or ``ValueError`` naming ``argument`` and
    ``value``: a mode of :data:`MODES` as it is, or ``{"mean": [r, g, b], "std": [r, g, b]}``
    (three floats each, RGB in 0..1 units, every std > 0) from such a mapping or from the
    text ``"mean=R,G,B,std=R,G,B"``. The result survives JSON unchanged."""
    if isinstance(value, str) and value in MODES:
        return value
    pair = value
    if isinstance(value, str):
        match = _MEAN_STD_TEXT.match(value)
        pair = match.groupdict() if match else None
    elif not isinstance(value, Mapping) or set(value) != {"mean", "std"}:
        pair = None
    mean, std = (_three(pair["mean"]), _three(pair["std"])) if pair else (None, None)
    if mean is None or std is None or min(std) <= 0:
        raise ValueError(
            f"{argument} must be one of {MODES}, or a per-channel mean / std: "
            f"{{'mean': [r, g, b], 'std': [r, g, b]}} or '{MEAN_STD_SYNTAX}' (RGB on [0, 1], "
            f"three numbers each, std > 0). Received: {argument}={value!r}")
    return {"mean": mean, "std": std}


def _mean_std(preprocessing) -> tuple:
    """(mean, std) float64 [3] of a checked "torch" / "kinetics" / mean-std preprocessing."""
    if isinstance(preprocessing, dict):
        return np.array(preprocessing["mean"]), np.array(preprocessing["std"])
    return (_TORCH_MEAN, _TORCH_STD) if preprocessing == "torch" else (_KINETICS_MEAN, _KINETICS_STD)


def preprocessing_for(mean, std) -> str | dict:
    """The preprocessing that normalises with a publisher's ``mean`` / ``std`` (RGB, 0..1
    units): the mode that reproduces them to the 4 decimals publishers give ("torch" for
    ImageNet's, "kinetics", "tf" for 0.5 / 0.5), else the checked mean / std itself."""
    given = check_preprocessing({"mean": mean, "std": std}, "mean / std")
    same = lambda a, b: tuple(round(float(v), 4) for v in a) == tuple(round(float(v), 4) for v in b)  # noqa: E731
    for mode, (m, s) in (("torch", (_TORCH_MEAN, _TORCH_STD)), ("kinetics", (_KINETICS_MEAN, _KINETICS_STD)),
                         ("tf", ((0.5,) * 3, (0.5,) * 3))):
        if same(given["mean"], m) and same(given["std"], s):
            return mode
    return given


def describe_preprocessing(preprocessing) -> str:
    """One phrase for a header or a message: the mode, or "mean 0.4914/0.4822/0.4465 std ..."."""
    preprocessing = check_preprocessing(preprocessing)
    if isinstance(preprocessing, str):
        return preprocessing
    short = lambda values: "/".join(f"{v:.4g}" for v in values)  # noqa: E731
    return f"mean {short(preprocessing['mean'])} std {short(preprocessing['std'])}"


def preprocessing_mode(name):
    """The preprocessing mode for a variant ("v1", "v1.5", "v1d", "v2", "cifar") or a
    named model ("ResNet50", "ResNet20", ...; see ``keras_resnet.list_models()``)."""
    if isinstance(name, str) and name in VARIANT_MODES:
        return VARIANT_MODES[name]
    return specs.get_spec(name).preprocessing


def preprocess_input(x: Any, data_format: str | None = None, *, mode: str | dict) -> Any:
    """Preprocess RGB images in 0..255 for a ResNet, as keras.applications does.

    Args:
        x: array or tensor of one image or a batch, RGB, values in 0..255. Never modified
            in place (keras.applications modifies a float NumPy array in place).
        data_format: "channels_last" (..., height, width, 3) or "channels_first"
            (..., 3, height, width); None reads ``keras.config.image_data_format()``.
        mode: ``"caffe"``, ``"tf"``, ``"torch"`` or ``"kinetics"``, or a per-channel
            ``{"mean": [r, g, b], "std": [r, g, b]}`` on [0, 1] (torchvision's ``Normalize``;
            see the module docstring); :func:`preprocessing_mode` gives the right one for a
            model or variant, :func:`preprocessing_for` for a publisher's mean / std.

    Returns:
        An array (for NumPy input) or tensor of the same shape: float16 / float64 input
        keeps its dtype, anything else becomes float32.
    """
    mode = check_preprocessing(mode, "mode")
    if data_format is None:
        import keras

        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("data_format must be None, 'channels_last' or 'channels_first'. "
                         f"Received: data_format={data_format!r}")
    channel_axis = -1 if data_format == "channels_last" else -3
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
        x = np.asarray(x)
        x = x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else "float32", copy=True)
        flip, constant = (lambda a: np.flip(a, axis=channel_axis)), (lambda c: c.astype(x.dtype))
    else:
        import keras

        if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
            x = keras.ops.cast(x, "float32")
        dtype = keras.backend.standardize_dtype(x.dtype)
        # RGB -> BGR as a strided slice, not keras.ops.flip: tf.reverse reaches ONNX as
        # Transpose + ReverseSequence + Transpose over the whole input (13% of an int8
        # ResNet-50's time in ONNX Runtime), a slice as one Slice. Torch has no negative steps.
        if keras.backend.backend() == "torch":
            flip = lambda a: keras.ops.flip(a, axis=channel_axis)  # noqa: E731
        else:
            flip = lambda a: a[..., ::-1] if channel_axis == -1 else a[..., ::-1, :, :]  # noqa: E731
        constant = lambda c: keras.ops.convert_to_tensor(c, dtype=dtype)  # noqa: E731
    shape = (3,) if channel_axis == -1 else (3, 1, 1)  # broadcast over the channel axis
    if mode == "tf":
        return x / constant(np.array(127.5)) - constant(np.array(1.0))
    if mode != "caffe":  # "torch", "kinetics" or a mean / std
        mean, std = (v.reshape(shape) for v in _mean_std(mode))
        return (x / constant(np.array(255.0)) - constant(mean)) / constant(std)
    return flip(x) - constant(_CAFFE_MEAN_BGR.reshape(shape))


def preprocess_affine(mode: str | dict) -> tuple | None:
    """``(scale, offset)``, float32 [3] each, with ``preprocess_input(x, mode=mode)`` equal
    to ``x * scale + offset`` (channels last, to float32 rounding) for ``"tf"``,
    ``"torch"``, ``"kinetics"`` and a mean / std: one multiply-add per value where ``preprocess_input``
    makes two or three passes (the input pipelines use it on every batch). None for
    ``"caffe"``, which also reverses the channels."""
    mode = check_preprocessing(mode, "mode")
    if mode == "caffe":
        return None
    if mode == "tf":
        scale, offset = np.full(3, 1 / 127.5), np.full(3, -1.0)
    else:
        mean, std = _mean_std(mode)
        scale, offset = 1 / (255.0 * std), -mean / std
    return scale.astype(np.float32), offset.astype(np.float32)


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


def decode_predictions(preds: Any, top: int = 5, *, class_index_path: str | None = None) -> list:
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
