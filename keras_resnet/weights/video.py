"""Weights of torchvision's video ResNets (Tran et al. 2018, "A Closer Look at
Spatiotemporal Convolutions for Action Recognition") for the 3D models of the one builder.

``keras_resnet.R3D18``, ``MC3_18`` and ``R2Plus1D18`` are registry rows
(:data:`keras_resnet.specs.MODELS`): :func:`keras_resnet.ResNet` at depth 18 with the video
variants of :data:`keras_resnet.specs.VIDEO_VARIANTS`, the same trainable parameters as
torchvision's ``r3d_18`` (33,371,472), ``mc3_18`` (11,695,440) and ``r2plus1d_18``
(31,505,325) and the same logits under the same weights. Inputs are channels-last clips
``(frames, height, width, 3)``; torchvision's are ``(3, frames, height, width)``.

Their ``weights=`` takes what :func:`plan` accepts: a Keras weights file, a torchvision
checkpoint file (read without torch by :mod:`keras_resnet.weights.checkpoint`) or a state
dict already in memory. Tensors are ported by :class:`keras_resnet.weights.convert.Porter`,
which checks every shape and that every tensor is used once.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

import numpy as np

from keras_resnet.utils import all_layers, fail
from keras_resnet.weights import applications, checkpoint, convert

_UNIT = re.compile(r"conv(\d+)_block(\d+)_(\d)_(s_bn|sconv|conv|bn)")
_STEM = {"conv1_sconv": "stem.0", "conv1_s_bn": "stem.1", "predictions": "fc"}


def torchvision_name(layer: str, factorized: bool) -> str:
    """The torchvision module of one of our layers (``conv2_block1_1_conv`` ->
    ``layer1.0.conv1.0``). ``factorized``: the conv is a (2+1)D pair, torchvision's
    ``Conv2Plus1D`` Sequential (spatial conv ``.0``, its BN ``.1``, temporal conv ``.3``)."""
    if layer in _STEM:
        return _STEM[layer]
    if layer in ("conv1_conv", "conv1_bn"):
        return {("conv1_conv", False): "stem.0", ("conv1_bn", False): "stem.1",
                ("conv1_conv", True): "stem.3", ("conv1_bn", True): "stem.4"}[layer, factorized]
    m = _UNIT.fullmatch(layer)
    if m is None:
        raise ValueError(f"layer {layer!r} has no counterpart in a torchvision video ResNet")
    stage, block, k, part = int(m[1]), int(m[2]), int(m[3]), m[4]
    unit = f"layer{stage - 1}.{block - 1}"
    if k == 0:
        return f"{unit}.downsample." + ("0" if part == "conv" else "1")
    if part == "bn":
        return f"{unit}.conv{k}.1"
    conv = f"{unit}.conv{k}.0"
    return conv + {"sconv": ".0", "s_bn": ".1", "conv": ".3"}[part] if factorized else conv


def _conv_thwio(x):
    return np.transpose(x, (2, 3, 4, 1, 0))  # (out, in, t, h, w) -> (t, h, w, in, out)


def port_torchvision_video(model, state: Mapping[str, Any], *,
                           source: str = "state_dict") -> convert.Porter:
    """Match a torchvision video ResNet state dict to ``model`` and return the checked
    :class:`~keras_resnet.weights.convert.Porter` (``.apply()`` assigns). A model without
    top leaves the checkpoint's ``fc`` out."""
    import keras

    layers = [layer for layer in all_layers(model) if layer.weights]
    names = {layer.name for layer in layers}
    p = convert.Porter({k: np.asarray(v) for k, v in state.items()}, source)
    if "predictions" not in names:
        p.skip(convert.CLASSIFIER)
    for layer in layers:
        base = re.sub(r"_(conv|bn|sconv|s_bn)$", "", layer.name)
        prefix = torchvision_name(layer.name, base + "_sconv" in names)
        if isinstance(layer, keras.layers.BatchNormalization):
            convert.port_batch_norm(p, layer, prefix)
        elif isinstance(layer, keras.layers.Dense):
            convert.port_dense(p, layer, prefix)
        else:
            p.take(f"{prefix}.weight", layer.kernel, _conv_thwio)
    p.check_all_used()
    return p


def load_torchvision_video(model, state: Mapping[str, Any]) -> None:
    """Set ``model``'s weights from a torchvision video ResNet state dict, in place; a
    ``ValueError`` names the first tensor or variable that does not match, before
    anything is assigned."""
    port_torchvision_video(model, state).apply()


@dataclasses.dataclass
class Plan:
    """A checked ``weights=`` of a video model: a Keras file or a state dict."""

    path: str | None = None
    state: dict | None = None


def plan(weights: Any, *, include_top: bool, classes: int) -> Plan | None:
    """Check ``weights`` of a video model before it is built: None, a Keras weights file,
    a torchvision checkpoint file (``.pth`` ...) or a state dict (a mapping of names to
    tensors or arrays)."""
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        state = {k: np.asarray(v) for k, v in weights.items()}
    elif isinstance(weights, (str, os.PathLike)) and checkpoint.is_checkpoint(weights):
        if not os.path.isfile(weights):
            fail("weights", weights, "an existing file")
        state = checkpoint.read_checkpoint(weights)
    elif isinstance(weights, (str, os.PathLike)) and weights != "imagenet":
        return Plan(path=applications.check_weights_argument(weights))
    else:
        fail("weights", weights, "None, a Keras weights file, a torchvision video checkpoint "
             "(.pth) or its state dict")
    outputs = convert.classifier_outputs(state)
    if include_top and outputs is not None and outputs != classes:
        fail("classes", classes, f"{outputs} (the checkpoint's classifier) with include_top=True")
    return Plan(state=state)


def apply(p: Plan | None, model) -> None:
    """Load what :func:`plan` checked into the built ``model``."""
    if p is None:
        return
    if p.path is not None:
        applications.load_weights(model, p.path)
    else:
        load_torchvision_video(model, p.state)
