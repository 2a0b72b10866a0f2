"""The named models: one thin constructor per row of :data:`keras_resnet.specs.MODELS`.

Every name ``keras-resnet list`` prints is a function here, ``keras_resnet.NAME``, made
from its registry row when this module loads: one call of :func:`keras_resnet.get_model`,
which builds the row with the generic builder (:func:`keras_resnet.ResNet` or
:func:`keras_resnet.CifarResNet`), and a docstring written from the row.
``tests/test_models.py`` checks that these functions and the registry agree exactly.

The six keras.applications models (ResNet50/101/152 and their V2 forms) take
keras.applications' arguments in its positional order and default to
``weights="imagenet"``, as keras.applications does; every other constructor takes
keyword arguments only and defaults to ``weights=None``. The video models default to
``classes=400`` (Kinetics-400, as torchvision).
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from keras_resnet import specs
from keras_resnet.models import get_model
from keras_resnet.weights.published import sets_for

VIDEO_CLASSES = 400  # Kinetics-400, torchvision's video heads


def _docstring(spec: specs.ModelSpec) -> str:
    builder = "CifarResNet" if spec.family == "cifar" else "ResNet"
    options = "".join(f", {key}={value!r}" for key, value in spec.options.items())
    if spec.keras_applications:
        defaults = "``weights='imagenet'`` by default, keras.applications' positional order"
    elif spec.family == "video":
        defaults = (f"3D, ``classes={VIDEO_CLASSES}`` by default; ``weights=`` a torchvision "
                    "video checkpoint or state dict (:mod:`keras_resnet.weights.video`)")
    else:
        defaults = "``weights=None`` by default"
    sets = ", ".join(f"``{ws.name}`` ({ws.top1:.2f}% top-1)" for ws in sets_for(spec.name))
    if sets:  # the published sets (keras_resnet.weights.published), as weights=
        defaults += f"; published ``weights=``: {sets}"
    return (
        f"{spec.description}.\n\n"
        f"    ``{builder}({spec.depth}, variant={spec.variant!r}{options})``; {defaults}.\n"
        f"    Further arguments as :func:`keras_resnet.{builder}`; default input side "
        f"{spec.input_size}.\n"
        f"    Inputs ``preprocess_input(x, mode=\"{spec.preprocessing}\")``"
        + ("; with a published set, its mean / std (``keras_resnet.weights.transform_of(model)``)"
           if sets else "") + ".\n"
    )


def _keras_applications_constructor(model: str) -> Callable[..., keras.Model]:
    def constructor(include_top: bool = True, weights: str | None = "imagenet",
                    input_tensor: Any = None, input_shape: tuple | None = None,
                    pooling: str | None = None, classes: int = 1000,
                    classifier_activation: str | None = "softmax", name: str | None = None,
                    **options: Any) -> keras.Model:
        return get_model(model, include_top=include_top, weights=weights,
                         input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                         classes=classes, classifier_activation=classifier_activation,
                         name=name, **options)

    return constructor


def _keyword_constructor(name: str, defaults: dict) -> Callable[..., keras.Model]:
    def constructor(**kwargs: Any) -> keras.Model:
        return get_model(name, **{**defaults, **kwargs})

    return constructor


def _constructor(spec: specs.ModelSpec) -> Callable[..., keras.Model]:
    """The public constructor of ``spec``'s row, named and documented as the row."""
    if spec.keras_applications:
        constructor = _keras_applications_constructor(spec.name)
    else:
        defaults = {"classes": VIDEO_CLASSES} if spec.family == "video" else {}
        constructor = _keyword_constructor(spec.name, defaults)
    constructor.__name__ = constructor.__qualname__ = spec.name
    constructor.__module__ = __name__
    constructor.__doc__ = _docstring(spec)
    return constructor


for _spec in specs.MODELS.values():
    globals()[_spec.name] = _constructor(_spec)
del _spec

__all__ = list(specs.MODELS)
