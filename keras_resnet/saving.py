"""Plain ``keras.saving.load_model`` for every file this package writes.

Keras finds a custom class in a ``.keras`` file only if it was registered with
``keras.saving.register_keras_serializable`` before loading (it imports modules by itself
only for the ``keras*`` packages: ``_retrieve_class_or_fn`` in
``keras/src/saving/serialization_lib.py``). ``import keras_resnet`` must therefore register
our layers and the training recipe's schedule and loss, yet it must not import Keras
itself (``keras-resnet --help`` and ``list`` stay free of TensorFlow). So:

- if Keras is already imported, :func:`register_serializables` runs at once;
- otherwise a one-shot import hook runs it right after ``import keras`` completes,
  whoever imports Keras (``import keras``, ``tf.keras``, our own builders).

Either order of ``import keras`` / ``import keras_resnet`` works.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# The modules whose import registers classes with Keras: the models' layers and the
# training recipe (learning-rate schedule, loss ... of compiled files). Keras-only modules.
SERIALIZABLE_MODULES = (
    "keras_resnet.layers",
    "keras_resnet.normalization",
    "keras_resnet.training.recipe",
)


def register_serializables() -> None:
    """Import the modules that register keras_resnet's classes with Keras."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


class _RegisterAfterExec(importlib.abc.Loader):
    """Wraps Keras' own loader: execute ``keras``, then register, then step aside."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__spec__.loader = module.__loader__ = self._loader
        self._loader.exec_module(module)
        try:
            register_serializables()
        except Exception as e:  # never break `import keras` itself
            warnings.warn(f"keras_resnet could not register its Keras classes: {e!r}; "
                          "run `import keras_resnet.saving; keras_resnet.saving."
                          "register_serializables()` to see why", stacklevel=2)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds ``keras`` with the other finders and wraps its loader; removes itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterExec(spec.loader)
        return spec


def register_on_keras_import() -> None:
    """Register now if Keras is loaded, else as soon as it is (once)."""
    if "keras" in sys.modules:
        register_serializables()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())
