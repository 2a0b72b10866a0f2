"""torchvision's video ResNets (Tran et al. 2018, "A Closer Look at Spatiotemporal
Convolutions for Action Recognition") as 3D models of the one builder, and the converter
of their state dicts.

``R3D18``, ``MC3_18`` and ``R2Plus1D18`` are :func:`keras_resnet.ResNet` at depth 18 with
the video variants of :data:`keras_resnet.specs.VIDEO_VARIANTS`: the same trainable
parameters as torchvision's ``r3d_18`` (33,371,472), ``mc3_18`` (11,695,440) and
``r2plus1d_18`` (31,505,325), and the same logits under the same weights. Inputs are
channels-last clips ``(frames, height, width, 3)``; torchvision's are
``(3, frames, height, width)``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import keras
import numpy as np

from keras_resnet import models
from keras_resnet.utils import all_layers

KINETICS_CLASSES = 400  # torchvision's video weights classify Kinetics-400


def _build(variant: str, weights: Any, classes: int, kwargs: dict) -> keras.Model:
    state = weights if isinstance(weights, Mapping) else None
    model = models.ResNet(18, variant=variant, weights=None if state is not None else weights,
                          classes=classes, **kwargs)
    if state is not None:
        load_torchvision_video(model, state)
    return model


def R3D18(*, weights: Any = None, classes: int = KINETICS_CLASSES, **kwargs: Any) -> keras.Model:
    """R3D-18: 3x3x3 convs throughout, a 3x7x7 stem with stride 1x2x2 and no max pool
    (torchvision ``r3d_18``).

    Args:
        weights: None, a Keras weights file, or a torchvision state dict (a mapping of
            names to tensors or arrays, e.g. ``torch.load("r3d_18-b3b3357e.pth")``).
        classes: 400 as torchvision (Kinetics-400).
        **kwargs: the arguments and options of :func:`keras_resnet.ResNet`.
    """
    return _build("r3d", weights, classes, kwargs)


def MC3_18(*, weights: Any = None, classes: int = KINETICS_CLASSES, **kwargs: Any) -> keras.Model:
    """MC3-18 ("mixed convolutions"): 3x3x3 convs in the first stage, 1x3x3 (spatial only)
    in the others (torchvision ``mc3_18``). Arguments as :func:`R3D18`."""
    return _build("mc3", weights, classes, kwargs)


def R2Plus1D18(*, weights: Any = None, classes: int = KINETICS_CLASSES, **kwargs: Any) -> keras.Model:
    """R(2+1)D-18: every 3x3x3 conv factored into 1x3x3, BN-ReLU, 3x1x1, with the middle
    width that keeps the parameter count (torchvision ``r2plus1d_18``). Arguments as
    :func:`R3D18`."""
    return _build("r2plus1d", weights, classes, kwargs)


# ------------------------------------------------------------------------- converter

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
       "moving_variance": "running_var"}
_UNIT = re.compile(r"conv(\d+)_block(\d+)_(\d)_(s_bn|sconv|conv|bn)$")


def torchvision_name(layer: str, factorized: bool) -> str | None:
    """The torchvision module of one of our layers (None: a layer torchvision lacks).

    ``factorized``: the conv is a (2+1)D pair, torchvision's ``Conv2Plus1D`` Sequential
    (spatial conv ``.0``, its BN ``.1``, temporal conv ``.3``).
    """
    stem = {"conv1_sconv": "stem.0", "conv1_s_bn": "stem.1",
            "conv1_conv": "stem.3" if factorized else "stem.0",
            "conv1_bn": "stem.4" if factorized else "stem.1", "predictions": "fc"}
    if layer in stem:
        return stem[layer]
    m = _UNIT.match(layer)
    if m is None:
        return None
    stage, block, k, part = int(m[1]), int(m[2]), int(m[3]), m[4]
    unit = f"layer{stage - 1}.{block - 1}"
    if k == 0:
        return f"{unit}.downsample." + ("0" if part == "conv" else "1")
    conv = f"{unit}.conv{k}.0"
    if part == "bn":
        return f"{unit}.conv{k}.1"
    if factorized:
        return conv + {"sconv": ".0", "s_bn": ".1", "conv": ".3"}[part]
    return conv


def load_torchvision_video(model: keras.Model, state_dict: Mapping[str, Any]) -> None:
    """Set ``model``'s weights from a torchvision video ResNet state dict, in place.

    Conv kernels go from (out, in, t, h, w) to (t, h, w, in, out), the fc weight is
    transposed, BN weight/bias/running_mean/running_var become gamma/beta/moving_mean/
    moving_variance. Every source tensor but ``num_batches_tracked`` must be used once and
    every variable of the model set: otherwise ``ValueError`` names the first that is not,
    before anything is assigned.
    """
    source = {k: np.asarray(v) for k, v in state_dict.items()
              if not k.endswith("num_batches_tracked")}
    names = {layer.name for layer in all_layers(model)}
    assignments, used = [], set()
    for layer in all_layers(model):
        if not layer.weights:
            continue
        base = re.sub(r"_(conv|bn|sconv|s_bn)$", "", layer.name)
        prefix = torchvision_name(layer.name, base + "_sconv" in names)
        if prefix is None:
            raise ValueError(f"layer {layer.name!r} has no torchvision counterpart")
        values = []
        for w in layer.weights:
            leaf = _BN.get(w.name, "weight" if w.name == "kernel" else "bias")
            key = f"{prefix}.{leaf}"
            if key not in source:
                raise ValueError(f"state_dict has no {key!r} for {layer.name}/{w.name}")
            v = source[key]
            v = v.T if v.ndim == 2 else np.transpose(v, (2, 3, 4, 1, 0)) if v.ndim == 5 else v
            if tuple(v.shape) != tuple(w.shape):
                raise ValueError(f"{key!r} has shape {v.shape}; {layer.name}/{w.name} needs {tuple(w.shape)}")
            values.append(v)
            used.add(key)
        assignments.append((layer, values))
    unused = sorted(set(source) - used)
    if unused:
        raise ValueError(f"state_dict tensors the model has no place for, e.g. {unused[0]!r} "
                         f"({len(unused)} in all)")
    for layer, values in assignments:
        layer.set_weights(values)
