"""keras_resnet: residual networks for Keras 3, compatible with keras.applications.

Model builders are imported eagerly (they need only Keras). Training, export and
tuning pull in TensorFlow Datasets, keras-tuner and friends, so they load on first use.
"""

import os as _os
import platform as _platform
import sys as _sys

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI /
# bf16, AVX-VNNI or AMX; elsewhere (e.g. AVX2-only x86-64) it runs Eigen's kernels, and
# ResNet training measured 1.5-2.3x slower (BENCHMARKS.md, "Where a training step goes
# (profiler)"). Ask for oneDNN before Keras loads TensorFlow. A user's own
# TF_ENABLE_ONEDNN_OPTS wins; once TensorFlow is imported the setting no longer matters,
# so `import keras_resnet` before `import tensorflow` / `import keras` to get it.
if (
    _sys.platform.startswith("linux")
    and _platform.machine() in ("x86_64", "AMD64")
    and "tensorflow" not in _sys.modules
):
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from keras_resnet.models import (
    CifarResNet,
    ResNet,
    ResNet18,
    ResNet18V2,
    ResNet26,
    ResNet26V2,
    ResNet34,
    ResNet34V2,
    ResNet50,
    ResNet50V2,
    ResNet101,
    ResNet101V2,
    ResNet152,
    ResNet152V2,
    ResNet200,
    ResNet200V2,
    get_model,
    list_models,
)
from keras_resnet.backbones import get_backbone
from keras_resnet.normalization import freeze_batch_norm
from keras_resnet.preprocessing import decode_predictions, preprocess_input

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY = {
    "train": "keras_resnet.training",
    "evaluate": "keras_resnet.training",
    "export_saved_model": "keras_resnet.export",
    "HyperResNet": "keras_resnet.tuning",
    "BatchNormalization": "keras_resnet.normalization",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")


__all__ = [
    "CifarResNet",
    "ResNet",
    "ResNet18",
    "ResNet18V2",
    "ResNet26",
    "ResNet26V2",
    "ResNet34",
    "ResNet34V2",
    "ResNet50",
    "ResNet50V2",
    "ResNet101",
    "ResNet101V2",
    "ResNet152",
    "ResNet152V2",
    "ResNet200",
    "ResNet200V2",
    "get_backbone",
    "get_model",
    "freeze_batch_norm",
    "list_models",
    "preprocess_input",
    "decode_predictions",
    *_LAZY,
]
