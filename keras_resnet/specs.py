"""The architecture as tables, and the registry of named models derived from them.

``DEPTHS`` maps a depth to its block kind and blocks per stage (He et al. 2015, Table 1;
26 and 200 as in timm and He et al. 2016). ``VARIANTS`` are presets of the builder's
keyword-only flags; each flag is documented in :mod:`keras_resnet.blocks` where it acts.
``MODELS`` holds one :class:`ModelSpec` per named model: what the name implies (family,
variant, depth, options, preprocessing, input size). The constructors
(``keras_resnet.ResNet50V1_5`` ...), :func:`list_models`, :func:`model_info`,
``keras-resnet list``, :func:`keras_resnet.preprocessing.preprocessing_mode` and export
read it.

This module imports nothing but the standard library: ``keras-resnet list`` and
``--help`` read it without loading Keras or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping

BASIC = "basic"  # two 3x3 convs (He et al. 2015, Fig. 5 left)
BOTTLENECK = "bottleneck"  # 1x1 reduce, 3x3, 1x1 expand x4 (He et al. 2015, Fig. 5 right)
EXPANSION = {BASIC: 1, BOTTLENECK: 4}

# depth -> (block kind, blocks per stage) for ImageNet-style ResNets: adding a depth is one line
DEPTHS = {
    18: (BASIC, (2, 2, 2, 2)),
    26: (BOTTLENECK, (2, 2, 2, 2)),
    34: (BASIC, (3, 4, 6, 3)),
    50: (BOTTLENECK, (3, 4, 6, 3)),
    101: (BOTTLENECK, (3, 4, 23, 3)),
    152: (BOTTLENECK, (3, 8, 36, 3)),
    200: (BOTTLENECK, (3, 24, 36, 3)),
}
STAGE_FILTERS = (64, 128, 256, 512)  # bottleneck width (basic: output width) per stage
STEM_FILTERS = 64

# CIFAR family (He et al. 2015, sec. 4.2): three stages of 16/32/64 filters.
CIFAR_STAGE_FILTERS = (16, 32, 64)
CIFAR_STEM_FILTERS = 16


def cifar_blocks(depth, variant):
    """Blocks per stage of a CIFAR ResNet, or None when ``depth`` does not fit ``variant``.

    v1 (basic blocks, He et al. 2015): depth = 6n + 2, n blocks per stage.
    v2 (pre-activation bottleneck, He et al. 2016): depth = 9n + 2, n blocks per stage.
    """
    per_block, kind = (6, BASIC) if variant == "v1" else (9, BOTTLENECK)
    if not isinstance(depth, int) or depth < per_block + 2 or (depth - 2) % per_block:
        return None
    n = (depth - 2) // per_block
    return kind, (n, n, n)


# The variants: presets of the builder flags.
#   preact        pre-activation units, BN-ReLU before each conv (He et al. 2016, "v2")
#   stride_on     "first_1x1" (keras.applications / original Caffe ResNet) or "3x3"
#                 (v1.5: torchvision and NVIDIA); basic blocks always stride on their first 3x3
#   stride_block  "first" block of a stage downsamples, or the "last" (keras.applications ResNetV2)
#   conv_bias     True: every conv has a bias (keras.applications ResNet); False: none
#                 (torchvision); "unnormalized": only convs not followed by BN (keras ResNetV2)
#   bn_epsilon    1.001e-5 (keras.applications) or 1e-5 (torchvision)
#   stem          "7x7": 7x7/2 conv + 3x3/2 max pool; "deep": three 3x3 convs (Bag of Tricks,
#                 He et al. 2019, ResNet-C) + max pool; "cifar": one 3x3 conv, no pool
#   shortcut      "A" zero-pad identity, "B" projection where channels change, "C" projection
#                 everywhere (He et al. 2015, sec. 3.3)
#   avg_down      average-pool before the strided projection shortcut (Bag of Tricks, ResNet-D)
#   kernel_initializer  Keras' default "glorot_uniform" where keras.applications is the
#                 reference (v1, v2); He et al.'s Gaussian "he_normal" elsewhere
FLAG_NAMES = ("preact", "stride_on", "stride_block", "conv_bias", "bn_epsilon", "stem",
              "shortcut", "avg_down", "kernel_initializer")
VARIANTS = {name: dict(zip(FLAG_NAMES, row)) for name, row in {
    "v1": (False, "first_1x1", "first", True, 1.001e-5, "7x7", "B", False, "glorot_uniform"),
    "v1.5": (False, "3x3", "first", False, 1e-5, "7x7", "B", False, "he_normal"),
    "v1d": (False, "3x3", "first", False, 1e-5, "deep", "B", True, "he_normal"),
    "v2": (True, "3x3", "last", "unnormalized", 1.001e-5, "7x7", "B", False, "glorot_uniform"),
}.items()}

# CIFAR presets: v1 as He et al. 2015 (no conv bias, option A by default); v2 as the
# pre-activation bottleneck of He et al. 2016 (downsampling in each stage's first block).
CIFAR_VARIANTS = {name: dict(zip(FLAG_NAMES, row)) for name, row in {
    "v1": (False, "3x3", "first", False, 1e-5, "cifar", "A", False, "he_normal"),
    "v2": (True, "3x3", "first", False, 1e-5, "cifar", "B", False, "he_normal"),
}.items()}

# Video ResNets (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action
# Recognition"; torchvision.models.video): the DEPTHS table in 3D (dims=3) with torchvision's
# flags and a video stem. conv_kinds says per stage how the 3x3x3 conv is made ("full",
# "spatial" 1x3x3, "2plus1d" 1x3x3 + 3x1x1; see keras_resnet.blocks.Flags).
_VIDEO = dict(
    preact=False, stride_on="3x3", stride_block="first", conv_bias=False, bn_epsilon=1e-5,
    shortcut="B", avg_down=False, kernel_initializer="he_normal",
)
VIDEO_VARIANTS = {
    "r3d": dict(_VIDEO, stem="r3d", conv_kinds=("full",) * 4),  # torchvision r3d_18
    "mc3": dict(_VIDEO, stem="r3d", conv_kinds=("full",) + ("spatial",) * 3),  # mc3_18
    "r2plus1d": dict(_VIDEO, stem="r2plus1d", conv_kinds=("2plus1d",) * 4),  # r2plus1d_18
}
CONV_KINDS = ("full", "spatial", "2plus1d")
VIDEO_STEMS = ("r3d", "r2plus1d")

# Where option A's new zero channels go (keras_resnet.layers.ZeroPadShortcut): "end", after
# the input's channels (our default), or "both", half before and half after, as
# akamaster/pytorch_resnet_cifar10, whose pretrained CIFAR weights need it.
PAD_SIDES = ("end", "both")

# Option defaults shared by every variant.
OPTION_DEFAULTS = dict(
    zero_pad_side="end",  # option A shortcuts only: PAD_SIDES
    bn_momentum=0.99,  # Keras' default (torchvision's momentum=0.1 is 0.9 here)
    synchronized_bn=False,
    zero_init_residual=False,
    width_multiplier=1.0,
    groups=1,
    width_per_group=64,
    se_ratio=None,
    stochastic_depth_rate=0.0,
    kernel_regularizer=None,
)

# Preprocessing mode of the weights each variant is trained or published with (see
# keras_resnet.preprocessing): keras.applications ResNet was trained in Caffe ("caffe"),
# ResNetV2 with inputs in [-1, 1] ("tf"), torchvision / timm with ImageNet mean/std
# ("torch"). The CIFAR family (key "cifar") trains here on inputs in [-1, 1].
# torchvision's video ResNets take Kinetics-400's mean/std ("kinetics").
PREPROCESSING = {"v1": "caffe", "v1.5": "torch", "v1d": "torch", "v2": "tf", "cifar": "tf",
                 "r3d": "kinetics", "mc3": "kinetics", "r2plus1d": "kinetics"}
# the default input side of each family (video: 112x112 frames, as torchvision's crops)
INPUT_SIZE = {"imagenet": 224, "cifar": 32, "video": 112}
# The smallest input side: keras.applications' rule for the ImageNet family (five stride-2
# stages); the CIFAR family has two (He et al. 2015, sec. 4.2), so 28x28 MNIST-style
# images train at their own size (8x8 -> 2x2 at the end).
MIN_INPUT_SIZE = {"imagenet": 32, "cifar": 8, "video": 1}
FAMILIES = tuple(INPUT_SIZE)
# The training augmentation presets each family's recipe picks from, implemented in
# keras_resnet.data.transforms (described there); here so that the training config and
# the commands' --help name them without loading TensorFlow.
AUGMENTATIONS = ("cifar", "imagenet", "none", "crop")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything a model name implies: one row of :data:`MODELS`.

    Attributes:
        name: the public name, also the constructor ``keras_resnet.NAME``.
        family: "imagenet" (built by :func:`keras_resnet.ResNet`), "cifar"
            (:func:`keras_resnet.CifarResNet`) or "video" (``ResNet`` with a video variant, 3D).
        variant: a key of :data:`VARIANTS` ("imagenet") or :data:`CIFAR_VARIANTS` ("cifar").
        depth: the number of weighted layers.
        description: one line for ``keras-resnet list`` and the constructor's docstring.
        preprocessing: the mode of :func:`keras_resnet.preprocess_input` its inputs need
            ("caffe", "tf" or "torch"; :data:`PREPROCESSING`).
        input_size: the default input side (:data:`INPUT_SIZE`).
        options: builder options on top of the variant (ResNeXt groups, SE ratio ...),
            read-only.
        keras_applications: same layers, names and weight files as the keras.applications
            model of this name; its constructor takes keras.applications' positional
            arguments and defaults to ``weights="imagenet"``.
    """

    name: str
    family: str
    variant: str
    depth: int
    description: str
    preprocessing: str
    input_size: int
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    keras_applications: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))

    def info(self) -> dict[str, Any]:
        """This row as a plain dict of its fields (what :func:`model_info` returns)."""
        info = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**info, "options": dict(self.options)}


def _spec(name, family, variant, depth, description, **options):
    return ModelSpec(
        name=name, family=family, variant=variant, depth=depth, description=description,
        preprocessing=PREPROCESSING["cifar" if family == "cifar" else variant],
        input_size=INPUT_SIZE[family], options=options,
        keras_applications=name in _KERAS_APPLICATIONS,
    )


# One line per variant for the descriptions of the generated rows.
_VARIANT_LINES = {
    "v1": "conv biases, bottleneck stride on the first 1x1 (keras.applications ResNet)",
    "v1.5": "stride on the 3x3, no conv biases (torchvision)",
    "v1d": "deep stem and average-pool shortcut (Bag of Tricks, timm resnet*d)",
    "v2": "pre-activation (He et al. 2016; keras.applications ResNetV2)",
}
_KERAS_APPLICATIONS = {"ResNet50", "ResNet101", "ResNet152",
                       "ResNet50V2", "ResNet101V2", "ResNet152V2"}


def _rows():
    for d in DEPTHS:
        for suffix, v in (("", "v1"), ("V2", "v2"), ("V1_5", "v1.5"), ("D", "v1d")):
            name = f"ResNet{d}{suffix}"
            line = (f", as keras.applications.{name}: same layers, weight files and arguments"
                    if name in _KERAS_APPLICATIONS else f": {_VARIANT_LINES[v]}")
            yield _spec(name, "imagenet", v, d, f"ResNet-{d} {v}{line}")
    yield _spec("ResNeXt50_32x4d", "imagenet", "v1.5", 50,
                "ResNeXt-50 32x4d (Xie et al. 2017; torchvision resnext50_32x4d)",
                groups=32, width_per_group=4)
    yield _spec("ResNeXt101_32x8d", "imagenet", "v1.5", 101,
                "ResNeXt-101 32x8d (Xie et al. 2017; torchvision resnext101_32x8d)",
                groups=32, width_per_group=8)
    yield _spec("WideResNet50_2", "imagenet", "v1.5", 50,
                "Wide ResNet-50-2: twice the bottleneck width (torchvision wide_resnet50_2)",
                width_per_group=128)
    yield _spec("SEResNet50", "imagenet", "v1.5", 50,
                "ResNet-50 v1.5 with squeeze-and-excitation, ratio 1/16 (timm seresnet50)",
                se_ratio=1 / 16)
    for d in (20, 32, 44, 56, 110, 1202):
        yield _spec(f"ResNet{d}", "cifar", "v1", d,
                    f"CIFAR ResNet-{d}: basic blocks, option A shortcuts (He et al. 2015)")
    for d in (164, 1001):
        yield _spec(f"ResNet{d}V2", "cifar", "v2", d,
                    f"CIFAR ResNet-{d}: pre-activation bottlenecks (He et al. 2016)")
    yield _spec("R3D18", "video", "r3d", 18,
                "R3D-18: 3x3x3 convs, 3x7x7 stem without pool (Tran et al. 2018; torchvision r3d_18)")
    yield _spec("MC3_18", "video", "mc3", 18,
                "MC3-18: 3x3x3 convs in stage 2, 1x3x3 after (torchvision mc3_18)")
    yield _spec("R2Plus1D18", "video", "r2plus1d", 18,
                "R(2+1)D-18: each 3x3x3 conv as 1x3x3 then 3x1x1 (torchvision r2plus1d_18)")


# name -> row, in the order `keras-resnet list` prints them
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _rows()}


def get_spec(name: str) -> ModelSpec:
    """The registry row of a named model; ``ValueError`` naming ``model`` if unknown."""
    if name not in MODELS:
        raise ValueError(
            "model must be a name printed by `keras-resnet list` (keras_resnet.list_models()),"
            f" e.g. 'ResNet50'. Received: model={name!r}"
        )
    return MODELS[name]


def model_info(name: str) -> dict[str, Any]:
    """Facts about a named model as a dict: name, family, variant, depth, description,
    options, keras_applications, preprocessing, input_size."""
    return get_spec(name).info()


def list_models() -> list[dict[str, Any]]:
    """Every named model, as :func:`model_info` dicts, in table order."""
    return [spec.info() for spec in MODELS.values()]


# Images of this side or less (CIFAR's 32, the digits' 32, 64x64 thumbnails) go to the
# CIFAR family of ResNets and the "cifar" augmentation; larger ones to the ImageNet family.
SMALL_IMAGE_MAX = 64


def family_for_image_size(size: int) -> str:
    """"cifar" for images of side ``size`` <= :data:`SMALL_IMAGE_MAX` px, else "imagenet"."""
    return "cifar" if size <= SMALL_IMAGE_MAX else "imagenet"
