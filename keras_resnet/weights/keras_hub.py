"""keras-hub ResNet presets whose architecture is one of ours.

A preset folder (``ResNetBackbone.save_to_preset`` / a downloaded Kaggle preset) holds
``config.json`` and ``model.weights.h5``, a Keras 3 weights file whose ``layers/<n>/vars``
groups carry the keras-hub layer name in their ``name`` attribute and the variables in
Keras' own layout (HWIO kernels; gamma, beta, moving mean, moving variance). Two
``ResNetBackbone`` configurations are ours:

- ``block_type`` "basic_block" / "bottleneck_block", one 7x7 input conv, no
  pre-activation: ResNet v1.5 (keras-hub ports them from timm) -> ``ResNet{depth}V1_5``;
- "basic_block_vd" / "bottleneck_block_vd" with three 3x3 input convs (32, 32, 64):
  ResNet-D -> ``ResNet{depth}D``.

keras-hub names units ``stack{i}_block{j}_...`` from 0 and the deep stem's convs
``conv{k}_...``; ours are ``conv{i + 2}_block{j + 1}_...`` and ``conv1_{k}_...``. The
backbone has no classifier: load it with ``include_top=False``.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from keras_resnet import specs

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
# (block kind, blocks per stage) -> depth: the spec table read backwards (keras-hub's
# block_type "basic_block" / "bottleneck_block" less "_block" is the kind's name there)
_DEPTHS = {spec: depth for depth, spec in specs.DEPTHS.items()}


def is_preset(path) -> bool:
    """Whether ``path`` is a folder holding a keras-hub ``ResNetBackbone`` preset."""
    config = os.path.join(os.fspath(path), CONFIG)
    if not os.path.isfile(config):
        return False
    with open(config) as f:
        return "ResNetBackbone" in str(json.load(f).get("registered_name", ""))


def model_for(config: dict) -> str:
    """Our named model for a keras-hub ``ResNetBackbone`` config; ``ValueError`` if none."""
    c = config.get("config", config)
    block = str(c.get("block_type", ""))
    kind = block.replace("_block", "").replace("_vd", "")
    depth = _DEPTHS.get((kind, tuple(c.get("stackwise_num_blocks", ()))))
    stem = (list(c.get("input_conv_filters", [])), list(c.get("input_conv_kernel_sizes", [])))
    plain = stem == ([64], [7]) and not block.endswith("_vd")
    deep = stem == ([32, 32, 64], [3, 3, 3]) and block.endswith("_vd")
    if (depth is None or c.get("use_pre_activation") or not (plain or deep)
            or list(c.get("stackwise_num_filters", [])) != list(specs.STAGE_FILTERS)
            or list(c.get("stackwise_num_strides", [])) != [1, 2, 2, 2]):
        raise ValueError(
            "the keras-hub preset's ResNetBackbone has no counterpart here (supported: "
            "v1 basic / bottleneck with a 7x7 stem, and the _vd blocks with the 3x3 deep "
            f"stem, at depths {sorted(set(_DEPTHS.values()))}). Received config: {c}")
    return f"ResNet{depth}" + ("D" if deep else "V1_5")


def read_preset(path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config, {"<keras-hub layer>/<i>": array})`` of a preset folder."""
    import h5py

    path = os.fspath(path)
    with open(os.path.join(path, CONFIG)) as f:
        config = json.load(f)
    from keras_resnet.weights.applications import check_h5_sizes

    state = {}
    with h5py.File(os.path.join(path, WEIGHTS), "r") as f:
        check_h5_sizes(f, os.path.join(path, WEIGHTS))
        for group in f.get("layers", {}).values():
            variables = group.get("vars")
            if variables is None or not len(variables):
                continue
            name = variables.attrs.get("name", group.name.rsplit("/", 1)[-1])
            for index in variables:
                state[f"{name}/{index}"] = variables[index][()]
    return config, state


def keras_hub_name(layer_name: str) -> str:
    """The keras-hub name of one of our layers (``conv3_block2_1_conv`` ->
    ``stack1_block1_1_conv``; deep stem ``conv1_2_bn`` -> ``conv2_bn``)."""
    m = re.fullmatch(r"conv1_([123])_(conv|bn)", layer_name)
    if m:
        return f"conv{m.group(1)}_{m.group(2)}"
    m = re.fullmatch(r"conv(\d+)_block(\d+)_(.+)", layer_name)
    if m:
        return f"stack{int(m.group(1)) - 2}_block{int(m.group(2)) - 1}_{m.group(3)}"
    return layer_name


def port_preset(model, state: dict[str, np.ndarray], source: str) -> "Porter":
    """Match a preset's variables to ``model`` by name; a checked, unapplied Porter."""
    from keras_resnet.utils import all_layers
    from keras_resnet.weights.convert import Porter

    p = Porter(state, source)
    for layer in all_layers(model):
        if layer.name == "predictions" and layer.weights:
            raise ValueError("a keras-hub ResNetBackbone preset has no classifier: build the "
                             "model with include_top=False")
        for index, variable in enumerate(layer.weights):
            p.take(f"{keras_hub_name(layer.name)}/{index}", variable)
    p.check_all_used()
    return p
