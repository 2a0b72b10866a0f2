"""Multi-scale feature extractors over the named models.

:func:`get_backbone` returns a ``keras.Model`` whose output is a dict of each stage's
feature map, named as keras-hub's ``ResNetBackbone.pyramid_outputs``: ``"P2"`` ... ``"P5"``
at strides 4, 8, 16 and 32 for the ImageNet family (the C2-C5 of feature pyramid
networks, Lin et al. 2017), ``"P2"`` ... ``"P4"`` at strides 1, 2 and 4 for the CIFAR family.
``freeze_batch_norm=True`` freezes every BatchNormalization for fine-tuning with small
batches (see :func:`keras_resnet.normalization.freeze_batch_norm`).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_resnet import models, normalization, specs
from keras_resnet.utils import fail

# Arguments of the classifier that a backbone has no use for.
_HEAD_ARGUMENTS = ("include_top", "pooling", "classes", "classifier_activation", "input_tensor")


def feature_layers(blocks_per_stage, *, stride_block: str = "first", preact: bool = False,
                   stem_output: str = "pool1_pool") -> dict[str, str]:
    """Name of the layer whose output is each stage's feature map: ``{"P2": ..., ...}``.

    A stage's map is the last tensor at that stage's stride: its last unit's output
    (``conv{s}_block{n}_out``). When the last unit of a stage already downsamples to the
    next stride (``stride_block="last"``, keras.applications ResNetV2) it is that unit's
    input. Pre-activation models end with a BN-ReLU (``post_relu``), which belongs to the
    last stage's map, so that ``P{last}`` is the classifier's feature map.
    """
    names = {}
    previous = stem_output
    last_stage = len(blocks_per_stage) - 1
    for i, blocks in enumerate(blocks_per_stage):
        stage = i + 2
        last_unit = f"conv{stage}_block{blocks}_out"
        if preact and i == last_stage:
            names[f"P{stage}"] = "post_relu"
        elif stride_block == "last" and i < last_stage:
            names[f"P{stage}"] = f"conv{stage}_block{blocks - 1}_out" if blocks > 1 else previous
        else:
            names[f"P{stage}"] = last_unit
        previous = last_unit
    return names


def _structure(name: str, options: dict[str, Any]):
    """(blocks per stage, stride_block, preact) of a named model under ``options``."""
    info = models.model_info(name)
    opts = {**info["options"], **options}
    if info["family"] == "cifar":
        preset = specs.CIFAR_VARIANTS[info["variant"]]
        blocks_per_stage = specs.cifar_blocks(info["depth"], info["variant"])[1]
    else:
        video = info["family"] == "video"
        preset = (specs.VIDEO_VARIANTS if video else specs.VARIANTS)[info["variant"]]
        blocks_per_stage = specs.DEPTHS[info["depth"]][1]
    return (blocks_per_stage, opts.get("stride_block", preset["stride_block"]),
            opts.get("preact", preset["preact"]))


def get_backbone(name: str, *, weights: str | None = None, input_shape: tuple | None = None,
                 freeze_batch_norm: bool = False, **options: Any) -> keras.Model:
    """A named model without its head, returning every stage's feature map.

    Args:
        name: any name of :func:`keras_resnet.list_models` (e.g. "ResNet50", "ResNet20",
            "R3D18").
        weights: as for the classifier: None, "imagenet" where published, or a weights file
            of the classifier without its top (see :func:`keras_resnet.ResNet`).
        input_shape: default ``(None, None, 3)``: any image size (video: any clip,
            ``(None, None, None, 3)``).
        freeze_batch_norm: freeze every BatchNormalization: it normalises with its moving
            statistics and keeps gamma, beta and the statistics under ``fit``; the rest stays
            trainable. ``training=False`` alone does not do this in Keras 3 (keras-team/keras
            #20285): ``fit``'s ``training=True`` reaches every nested layer, and unfreezing a
            base model with ``trainable = True`` puts its BNs back on batch statistics; see
            :func:`keras_resnet.normalization.freeze_batch_norm`.
        **options: the builder options of :func:`keras_resnet.ResNet` (e.g. ``se_ratio``).

    Returns:
        A ``keras.Model`` whose output is a dict: ``{"P2", "P3", "P4", "P5"}`` at strides
        4/8/16/32 for the ImageNet family (each stage's last output, keras-hub's names;
        ``P5`` is the classifier's last feature map), ``{"P2", "P3", "P4"}`` at strides
        1/2/4 for the CIFAR family. Video models give P2-P5 with strides 2/4/8/16 in
        height and width (torchvision's video stem has no max pool), and in time 1/2/4/8
        (R3D18, R2Plus1D18) or 1 (MC3_18).
    """
    models.model_info(name)  # checks the name first
    for argument in _HEAD_ARGUMENTS:
        if argument in options:
            fail(argument, options[argument], "left out: a backbone has no head "
                 "(use get_model for a classifier)")
    if not isinstance(freeze_batch_norm, bool):
        fail("freeze_batch_norm", freeze_batch_norm, "a bool")
    blocks_per_stage, stride_block, preact = _structure(name, options)
    if input_shape is None:
        spatial = (None,) * (3 if models.model_info(name)["family"] == "video" else 2)
        channels_last = keras.config.image_data_format() == "channels_last"
        input_shape = spatial + (3,) if channels_last else (3,) + spatial
    model = models.get_model(name, include_top=False, weights=weights, input_shape=input_shape,
                             **options)
    layers = feature_layers(blocks_per_stage, stride_block=stride_block, preact=preact)
    outputs = {level: model.get_layer(layer).output for level, layer in layers.items()}
    with models.deep_recursion():
        backbone = keras.Model(model.input, outputs, name=f"{model.name}_backbone")
    if freeze_batch_norm:
        normalization.freeze_batch_norm(backbone)
    return backbone
