"""The named models: one thin constructor per row of :data:`keras_resnet.specs.MODELS`.

Every name ``keras-resnet list`` prints is a function here, ``keras_resnet.NAME``. Each is
one call of :func:`keras_resnet.get_model`, which builds the registry row with the generic
builder (:func:`keras_resnet.ResNet` or :func:`keras_resnet.CifarResNet`).
``tests/test_models.py`` checks that these functions and the registry agree exactly.

The six keras.applications models (ResNet50/101/152 and their V2 forms) take
keras.applications' arguments in its positional order and default to
``weights="imagenet"``, as keras.applications does; every other constructor takes
keyword arguments only and defaults to ``weights=None``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import keras

from keras_resnet import specs
from keras_resnet.models import get_model


def named_model(build: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Mark ``build`` as the constructor of the registry row of the same name.

    A row with ``keras_applications=True`` gets keras.applications' signature:
    ``(include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, name)`` in that order, ``weights="imagenet"`` by default, any
    further keyword a builder option. Every other constructor stays keyword-only. The
    function keeps its own name and docstring.
    """
    if not specs.get_spec(build.__name__).keras_applications:
        return build

    @functools.wraps(build)
    def constructor(include_top: bool = True, weights: str | None = "imagenet",
                    input_tensor: Any = None, input_shape: tuple | None = None,
                    pooling: str | None = None, classes: int = 1000,
                    classifier_activation: str | None = "softmax", name: str | None = None,
                    **options: Any) -> keras.Model:
        return build(include_top=include_top, weights=weights, input_tensor=input_tensor,
                     input_shape=input_shape, pooling=pooling, classes=classes,
                     classifier_activation=classifier_activation, name=name, **options)

    del constructor.__wrapped__  # help() and inspect.signature show the positional form
    return constructor


@named_model
def ResNet50(**kwargs: Any) -> keras.Model:
    """ResNet-50 v1, as keras.applications.ResNet50: same layers, weight files and arguments.

    ``ResNet(50, variant='v1')``, ``weights='imagenet'`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet50", **kwargs)


@named_model
def ResNet50V2(**kwargs: Any) -> keras.Model:
    """ResNet-50 v2, as keras.applications.ResNet50V2: same layers, weight files and arguments.

    ``ResNet(50, variant='v2')``, ``weights='imagenet'`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet50V2", **kwargs)


@named_model
def ResNet101(**kwargs: Any) -> keras.Model:
    """ResNet-101 v1, as keras.applications.ResNet101: same layers, weight files and arguments.

    ``ResNet(101, variant='v1')``, ``weights='imagenet'`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet101", **kwargs)


@named_model
def ResNet101V2(**kwargs: Any) -> keras.Model:
    """ResNet-101 v2, as keras.applications.ResNet101V2: same layers, weight files and arguments.

    ``ResNet(101, variant='v2')``, ``weights='imagenet'`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet101V2", **kwargs)


@named_model
def ResNet152(**kwargs: Any) -> keras.Model:
    """ResNet-152 v1, as keras.applications.ResNet152: same layers, weight files and arguments.

    ``ResNet(152, variant='v1')``, ``weights='imagenet'`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet152", **kwargs)


@named_model
def ResNet152V2(**kwargs: Any) -> keras.Model:
    """ResNet-152 v2, as keras.applications.ResNet152V2: same layers, weight files and arguments.

    ``ResNet(152, variant='v2')``, ``weights='imagenet'`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet152V2", **kwargs)


@named_model
def ResNet18(**kwargs: Any) -> keras.Model:
    """ResNet-18 v1: conv biases, bottleneck stride on the first 1x1 (keras.applications ResNet).

    ``ResNet(18, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet18", **kwargs)


@named_model
def ResNet18V2(**kwargs: Any) -> keras.Model:
    """ResNet-18 v2: pre-activation (He et al. 2016; keras.applications ResNetV2).

    ``ResNet(18, variant='v2')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet18V2", **kwargs)


@named_model
def ResNet18V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-18 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(18, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet18V1_5", **kwargs)


@named_model
def ResNet18D(**kwargs: Any) -> keras.Model:
    """ResNet-18 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(18, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet18D", **kwargs)


@named_model
def ResNet26(**kwargs: Any) -> keras.Model:
    """ResNet-26 v1: conv biases, bottleneck stride on the first 1x1 (keras.applications ResNet).

    ``ResNet(26, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet26", **kwargs)


@named_model
def ResNet26V2(**kwargs: Any) -> keras.Model:
    """ResNet-26 v2: pre-activation (He et al. 2016; keras.applications ResNetV2).

    ``ResNet(26, variant='v2')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet26V2", **kwargs)


@named_model
def ResNet26V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-26 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(26, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet26V1_5", **kwargs)


@named_model
def ResNet26D(**kwargs: Any) -> keras.Model:
    """ResNet-26 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(26, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet26D", **kwargs)


@named_model
def ResNet34(**kwargs: Any) -> keras.Model:
    """ResNet-34 v1: conv biases, bottleneck stride on the first 1x1 (keras.applications ResNet).

    ``ResNet(34, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet34", **kwargs)


@named_model
def ResNet34V2(**kwargs: Any) -> keras.Model:
    """ResNet-34 v2: pre-activation (He et al. 2016; keras.applications ResNetV2).

    ``ResNet(34, variant='v2')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet34V2", **kwargs)


@named_model
def ResNet34V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-34 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(34, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet34V1_5", **kwargs)


@named_model
def ResNet34D(**kwargs: Any) -> keras.Model:
    """ResNet-34 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(34, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet34D", **kwargs)


@named_model
def ResNet50V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-50 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(50, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet50V1_5", **kwargs)


@named_model
def ResNet50D(**kwargs: Any) -> keras.Model:
    """ResNet-50 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(50, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet50D", **kwargs)


@named_model
def ResNet101V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-101 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(101, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet101V1_5", **kwargs)


@named_model
def ResNet101D(**kwargs: Any) -> keras.Model:
    """ResNet-101 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(101, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet101D", **kwargs)


@named_model
def ResNet152V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-152 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(152, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet152V1_5", **kwargs)


@named_model
def ResNet152D(**kwargs: Any) -> keras.Model:
    """ResNet-152 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(152, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet152D", **kwargs)


@named_model
def ResNet200(**kwargs: Any) -> keras.Model:
    """ResNet-200 v1: conv biases, bottleneck stride on the first 1x1 (keras.applications ResNet).

    ``ResNet(200, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="caffe")``.
    """
    return get_model("ResNet200", **kwargs)


@named_model
def ResNet200V2(**kwargs: Any) -> keras.Model:
    """ResNet-200 v2: pre-activation (He et al. 2016; keras.applications ResNetV2).

    ``ResNet(200, variant='v2')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet200V2", **kwargs)


@named_model
def ResNet200V1_5(**kwargs: Any) -> keras.Model:
    """ResNet-200 v1.5: stride on the 3x3, no conv biases (torchvision).

    ``ResNet(200, variant='v1.5')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet200V1_5", **kwargs)


@named_model
def ResNet200D(**kwargs: Any) -> keras.Model:
    """ResNet-200 v1d: deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d).

    ``ResNet(200, variant='v1d')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNet200D", **kwargs)


@named_model
def ResNeXt50_32x4d(**kwargs: Any) -> keras.Model:
    """ResNeXt-50 32x4d (Xie et al. 2017; torchvision resnext50_32x4d).

    ``ResNet(50, variant='v1.5', groups=32, width_per_group=4)``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNeXt50_32x4d", **kwargs)


@named_model
def ResNeXt101_32x8d(**kwargs: Any) -> keras.Model:
    """ResNeXt-101 32x8d (Xie et al. 2017; torchvision resnext101_32x8d).

    ``ResNet(101, variant='v1.5', groups=32, width_per_group=8)``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("ResNeXt101_32x8d", **kwargs)


@named_model
def WideResNet50_2(**kwargs: Any) -> keras.Model:
    """Wide ResNet-50-2: twice the bottleneck width (torchvision wide_resnet50_2).

    ``ResNet(50, variant='v1.5', width_per_group=128)``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("WideResNet50_2", **kwargs)


@named_model
def SEResNet50(**kwargs: Any) -> keras.Model:
    """ResNet-50 v1.5 with squeeze-and-excitation, ratio 1/16 (timm seresnet50).

    ``ResNet(50, variant='v1.5', se_ratio=1 / 16)``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.ResNet`; inputs ``preprocess_input(x, mode="torch")``.
    """
    return get_model("SEResNet50", **kwargs)


@named_model
def ResNet20(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-20: basic blocks, option A shortcuts (He et al. 2015).

    ``CifarResNet(20, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet20", **kwargs)


@named_model
def ResNet32(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-32: basic blocks, option A shortcuts (He et al. 2015).

    ``CifarResNet(32, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet32", **kwargs)


@named_model
def ResNet44(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-44: basic blocks, option A shortcuts (He et al. 2015).

    ``CifarResNet(44, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet44", **kwargs)


@named_model
def ResNet56(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-56: basic blocks, option A shortcuts (He et al. 2015).

    ``CifarResNet(56, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet56", **kwargs)


@named_model
def ResNet110(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-110: basic blocks, option A shortcuts (He et al. 2015).

    ``CifarResNet(110, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet110", **kwargs)


@named_model
def ResNet1202(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-1202: basic blocks, option A shortcuts (He et al. 2015).

    ``CifarResNet(1202, variant='v1')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet1202", **kwargs)


@named_model
def ResNet164V2(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-164: pre-activation bottlenecks (He et al. 2016).

    ``CifarResNet(164, variant='v2')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet164V2", **kwargs)


@named_model
def ResNet1001V2(**kwargs: Any) -> keras.Model:
    """CIFAR ResNet-1001: pre-activation bottlenecks (He et al. 2016).

    ``CifarResNet(1001, variant='v2')``, ``weights=None`` by default;
    arguments as :func:`keras_resnet.CifarResNet`; inputs ``preprocess_input(x, mode="tf")``.
    """
    return get_model("ResNet1001V2", **kwargs)


@named_model
def R3D18(**kwargs: Any) -> keras.Model:
    """R3D-18: 3x3x3 convs, 3x7x7 stem without pool (Tran et al. 2018; torchvision r3d_18).

    ``ResNet(18, variant='r3d')`` (3D), ``classes=400``; ``weights=`` a torchvision video
    checkpoint or state dict (:mod:`keras_resnet.video`); clips ``preprocess_input(x, mode="kinetics")``.
    """
    return get_model("R3D18", **{"classes": 400, **kwargs})


@named_model
def MC3_18(**kwargs: Any) -> keras.Model:
    """MC3-18: 3x3x3 convs in stage 2, 1x3x3 after (torchvision mc3_18).

    As :func:`R3D18` with ``variant='mc3'``; clips ``preprocess_input(x, mode="kinetics")``.
    """
    return get_model("MC3_18", **{"classes": 400, **kwargs})


@named_model
def R2Plus1D18(**kwargs: Any) -> keras.Model:
    """R(2+1)D-18: each 3x3x3 conv as 1x3x3 then 3x1x1 (torchvision r2plus1d_18).

    As :func:`R3D18` with ``variant='r2plus1d'``; clips ``preprocess_input(x, mode="kinetics")``.
    """
    return get_model("R2Plus1D18", **{"classes": 400, **kwargs})
