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
