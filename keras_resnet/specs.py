"""The architecture as tables: every named model is derived from these.

``DEPTHS`` maps a depth to its block kind and blocks per stage (He et al. 2015, Table 1;
26 and 200 as in timm and He et al. 2016). ``VARIANTS`` are presets of the builder's
keyword-only flags; each flag is documented in :mod:`keras_resnet.blocks` where it acts.
"""

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
VARIANTS = {
    "v1": dict(
        preact=False, stride_on="first_1x1", stride_block="first", conv_bias=True,
        bn_epsilon=1.001e-5, stem="7x7", shortcut="B", avg_down=False,
        kernel_initializer="glorot_uniform",
    ),
    "v1.5": dict(
        preact=False, stride_on="3x3", stride_block="first", conv_bias=False,
        bn_epsilon=1e-5, stem="7x7", shortcut="B", avg_down=False,
        kernel_initializer="he_normal",
    ),
    "v1d": dict(
        preact=False, stride_on="3x3", stride_block="first", conv_bias=False,
        bn_epsilon=1e-5, stem="deep", shortcut="B", avg_down=True,
        kernel_initializer="he_normal",
    ),
    "v2": dict(
        preact=True, stride_on="3x3", stride_block="last", conv_bias="unnormalized",
        bn_epsilon=1.001e-5, stem="7x7", shortcut="B", avg_down=False,
        kernel_initializer="glorot_uniform",
    ),
}

# CIFAR presets: v1 as He et al. 2015 (no conv bias, option A by default); v2 as the
# pre-activation bottleneck of He et al. 2016 (downsampling in each stage's first block).
CIFAR_VARIANTS = {
    "v1": dict(
        preact=False, stride_on="3x3", stride_block="first", conv_bias=False,
        bn_epsilon=1e-5, stem="cifar", shortcut="A", avg_down=False,
        kernel_initializer="he_normal",
    ),
    "v2": dict(
        preact=True, stride_on="3x3", stride_block="first", conv_bias=False,
        bn_epsilon=1e-5, stem="cifar", shortcut="B", avg_down=False,
        kernel_initializer="he_normal",
    ),
}

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

# Option defaults shared by every variant.
OPTION_DEFAULTS = dict(
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

# Named models: name -> (family, variant, depth, extra options). Named constructors and the
# CLI are generated from this table.
NAMED_MODELS = {}
for _d in DEPTHS:
    NAMED_MODELS[f"ResNet{_d}"] = ("imagenet", "v1", _d, {})
    NAMED_MODELS[f"ResNet{_d}V2"] = ("imagenet", "v2", _d, {})
    NAMED_MODELS[f"ResNet{_d}V1_5"] = ("imagenet", "v1.5", _d, {})
    NAMED_MODELS[f"ResNet{_d}D"] = ("imagenet", "v1d", _d, {})
NAMED_MODELS.update(
    {
        "ResNeXt50_32x4d": ("imagenet", "v1.5", 50, dict(groups=32, width_per_group=4)),
        "ResNeXt101_32x8d": ("imagenet", "v1.5", 101, dict(groups=32, width_per_group=8)),
        "WideResNet50_2": ("imagenet", "v1.5", 50, dict(width_per_group=128)),
        "SEResNet50": ("imagenet", "v1.5", 50, dict(se_ratio=1 / 16)),
    }
)
for _d in (20, 32, 44, 56, 110, 1202):
    NAMED_MODELS[f"ResNet{_d}"] = ("cifar", "v1", _d, {})
for _d in (164, 1001):
    NAMED_MODELS[f"ResNet{_d}V2"] = ("cifar", "v2", _d, {})
del _d
