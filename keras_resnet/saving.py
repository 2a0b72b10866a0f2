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

import contextlib
import importlib
import sys
import warnings

from keras_resnet import import_hooks

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


@contextlib.contextmanager
def _register_afterwards():
    yield  # `import keras` runs here
    try:
        register_serializables()
    except Exception as e:  # never break `import keras` itself
        warnings.warn(f"keras_resnet could not register its Keras classes ({e!r}); "
                      "keras_resnet.saving.register_serializables() shows why", stacklevel=2)


def register_on_keras_import() -> None:
    """Register now if Keras is loaded, else as soon as it is (once)."""
    if "keras" in sys.modules:
        register_serializables()
    else:
        import_hooks.around_first_import("keras", _register_afterwards)
