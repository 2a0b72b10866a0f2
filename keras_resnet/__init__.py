"""keras_resnet: residual networks for Keras 3, compatible with keras.applications.

Model builders are imported eagerly (they need only Keras). Training, export and
tuning pull in TensorFlow Datasets, keras-tuner and friends, so they load on first use.
"""

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
    "get_model",
    "list_models",
    "preprocess_input",
    "decode_predictions",
    *_LAZY,
]
