"""keras_resnet: residual networks for Keras 3, compatible with keras.applications.

Every public name loads on first use (PEP 562), so ``import keras_resnet`` and the
``keras-resnet --help`` / ``list`` commands do not import Keras or TensorFlow. The named
constructors (``keras_resnet.ResNet50`` ... ``keras_resnet.ResNet1001V2``) are the rows of
the registry :data:`keras_resnet.specs.MODELS`, defined in :mod:`keras_resnet.zoo`.

``import keras_resnet`` (before or after ``import keras``) is all that
``keras.saving.load_model`` needs to load the files this package writes
(:mod:`keras_resnet.saving`).
"""

import os as _os
import platform as _platform
import sys as _sys

# Kept side effect, why: on x86-64 CPUs without AVX-512 VNNI/bf16 or AMX, TensorFlow
# defaults to Eigen kernels and ResNet training runs markedly slower than with oneDNN
# (BENCHMARKS.md, "Where a training step goes (profiler)"). Only a default: a user's own
# TF_ENABLE_ONEDNN_OPTS wins, and once TensorFlow is imported it no longer matters.
if (
    _sys.platform.startswith("linux")
    and _platform.machine() in ("x86_64", "AMD64")
    and "tensorflow" not in _sys.modules
):
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from keras_resnet import saving as _saving  # noqa: E402
from keras_resnet import specs as _specs  # noqa: E402
from keras_resnet.utils import lazy_attributes as _lazy_attributes  # noqa: E402

__version__ = "0.1.0"

# public name -> module that defines it, imported on first access
_LAZY = {
    "ResNet": "keras_resnet.models",
    "CifarResNet": "keras_resnet.models",
    "get_model": "keras_resnet.models",
    "list_models": "keras_resnet.specs",
    "model_info": "keras_resnet.specs",
    **{name: "keras_resnet.zoo" for name in _specs.MODELS},
    "preprocess_input": "keras_resnet.preprocessing",
    "decode_predictions": "keras_resnet.preprocessing",
    "BatchNormalization": "keras_resnet.normalization",
    "freeze_batch_norm": "keras_resnet.normalization",
    "get_backbone": "keras_resnet.backbones",
    "train": "keras_resnet.training",
    "evaluate": "keras_resnet.training",
    "export_saved_model": "keras_resnet.export",
    "HyperResNet": "keras_resnet.tuning",
}

__all__ = list(_LAZY)


__getattr__ = _lazy_attributes(__name__, _LAZY)


def __dir__():
    return sorted(set(globals()) | set(__all__))


_saving.register_on_keras_import()
