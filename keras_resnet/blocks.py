"""Residual units, shortcuts, stems and stage stacking.

Every layer is named as keras.applications names it,
``conv{stage}_block{i}_{k}_{conv|bn|relu}``: those names are the keys of the published
weight files, so they stay stable wherever a keras.applications model exists. Variants that
keras.applications lacks follow the same scheme.

All flags arrive resolved (see :mod:`keras_resnet.specs` for what each preset sets) in one
:class:`Flags` object; the code that acts on a flag says which paper or library it mirrors.

``dims`` maps every layer to 1, 2 or 3 spatial axes (Conv1D/2D/3D, the matching padding and
pooling): a kernel "3x3" is 3 long in 1D and 3x3x3 in 3D, the stem's "7x7" 7 and 7x7x7.
Video models choose per stage how a 3x3x3 conv is made (``conv_kinds``, Tran et al. 2018).
"""

import dataclasses

import keras
from keras import layers

from keras_resnet import specs
from keras_resnet.layers import StochasticDepth, ZeroPadShortcut
from keras_resnet.normalization import BatchNormalization


@dataclasses.dataclass(frozen=True)
class Flags:
    preact: bool
    stride_on: str
    stride_block: str
    conv_bias: object
    bn_epsilon: float
    stem: str
    shortcut: str
    avg_down: bool
    bn_momentum: float
    synchronized_bn: bool
    zero_init_residual: bool
    width_multiplier: float
    groups: int
    width_per_group: int
    se_ratio: object
    stochastic_depth_rate: float
    kernel_regularizer: object
    kernel_initializer: object
    # Option A: where the zero channels go, "end" or "both" (akamaster/pytorch_resnet_cifar10)
    zero_pad_side: str = "end"
    dims: int = 2  # spatial axes: 1 (signals), 2 (images), 3 (video, volumes)
    # 3D only, per stage (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions";
    # torchvision.models.video): "full" 3x3x3 convs (R3D), "spatial" 1x3x3 convs that leave
    # time alone (MC3's stages 2-4), "2plus1d" a 1x3x3 conv to ``2plus1d_width`` channels,
    # BN-ReLU, then a 3x1x1 conv (R(2+1)D). None: "full" everywhere.
    conv_kinds: tuple = None
    conv_kind: str = "full"  # the current stage's entry of conv_kinds (set by ``stages``)


_LAYERS = {  # dims -> conv, zero padding, max pool, average pool, global average pool
    1: (layers.Conv1D, layers.ZeroPadding1D, layers.MaxPooling1D, layers.AveragePooling1D,
        layers.GlobalAveragePooling1D),
    2: (layers.Conv2D, layers.ZeroPadding2D, layers.MaxPooling2D, layers.AveragePooling2D,
        layers.GlobalAveragePooling2D),
    3: (layers.Conv3D, layers.ZeroPadding3D, layers.MaxPooling3D, layers.AveragePooling3D,
        layers.GlobalAveragePooling3D),
}


def _per_axis(value, dims):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


def width_2plus1d(in_channels, out_channels):
    """Middle width of a (2+1)D conv: as many parameters as the 3x3x3 conv it replaces
    (Tran et al. 2018, sec. 3.5; torchvision's ``midplanes``)."""
    return (in_channels * out_channels * 27) // (in_channels * 9 + 3 * out_channels)


class _Ops:
    """Conv / BN / ReLU factories that apply the flags the same way everywhere."""

    def __init__(self, flags):
        self.f = flags
        self.dims = flags.dims
        self.channels_last = keras.config.image_data_format() == "channels_last"
        self.bn_axis = self.dims + 1 if self.channels_last else 1  # 2D: 3, as keras.applications
        self.Conv, self.Pad, self.MaxPool, self.AvgPool, self.GlobalAvgPool = _LAYERS[self.dims]

    def channels(self, x):
        return x.shape[self.bn_axis]

    def pad(self, x, amount, name):
        """Symmetric zero padding: ``amount`` per spatial axis (an int: on every axis)."""
        per_axis = _per_axis(amount, self.dims)
        padding = (per_axis[0],) * 2 if self.dims == 1 else tuple((p, p) for p in per_axis)
        return self.Pad(padding=padding, name=name)(x)

    def stride(self, stride):
        """A unit's stride on each axis: "spatial" stages leave time alone (MC3)."""
        if self.f.conv_kind == "spatial" and stride != 1:
            return (1, stride, stride)
        return stride

    def conv(self, x, filters, kernel, name, *, strides=1, padding="valid", normalized=True,
             groups=1, zero_init=False):
        """A conv. ``normalized``: a BN follows directly (decides the bias for
        ``conv_bias="unnormalized"``, keras.applications ResNetV2's rule)."""
        bias = self.f.conv_bias
        use_bias = bias is True or (bias == "unnormalized" and not normalized)
        return self.Conv(
            filters, kernel, strides=strides, padding=padding, use_bias=use_bias, groups=groups,
            kernel_initializer="zeros" if zero_init else self.f.kernel_initializer,
            kernel_regularizer=self.f.kernel_regularizer, name=name,
        )(x)

    def padded_conv(self, x, filters, kernel, name, *, strides=1, prefix="", **kwargs):
        """A conv with symmetric padding kernel // 2 (as torchvision and keras ResNetV2 pad
        explicitly; 'same' padding with stride 2 would pad asymmetrically)."""
        if strides == 1 and not self.f.preact:
            return self.conv(x, filters, kernel, f"{name}_{prefix}conv", padding="same", **kwargs)
        x = self.pad(x, tuple(k // 2 for k in _per_axis(kernel, self.dims)), f"{name}_{prefix}pad")
        return self.conv(x, filters, kernel, f"{name}_{prefix}conv", strides=strides, **kwargs)

    def conv3x3(self, x, filters, name, *, strides=1, normalized=True, groups=1, zero_init=False,
                in_channels=None):
        """The unit's 3x3 conv (3 in 1D). In 3D, per ``conv_kind``: "full" 3x3x3, "spatial"
        1x3x3, "2plus1d" 1x3x3 to ``width_2plus1d(in_channels, filters)`` channels, BN-ReLU,
        then 3x1x1 (torchvision's Conv3DSimple, Conv3DNoTemporal, Conv2Plus1D)."""
        kw = dict(normalized=normalized, groups=groups, zero_init=zero_init)
        kind = self.f.conv_kind
        if kind == "spatial":
            return self.padded_conv(x, filters, (1, 3, 3), name, strides=self.stride(strides), **kw)
        if kind == "2plus1d":
            mid = width_2plus1d(in_channels or self.channels(x), filters)
            s = strides
            x = self.padded_conv(x, mid, (1, 3, 3), name, strides=(1, s, s) if s != 1 else 1,
                                 prefix="s", groups=groups)
            x = self.bn_relu(x, name + "_s")
            return self.padded_conv(x, filters, (3, 1, 1), name, strides=(s, 1, 1) if s != 1 else 1,
                                    **kw)
        return self.padded_conv(x, filters, 3, name, strides=strides, **kw)

    def bn(self, x, name, *, zero_gamma=False):
        return BatchNormalization(
            axis=self.bn_axis, epsilon=self.f.bn_epsilon, momentum=self.f.bn_momentum,
            synchronized=self.f.synchronized_bn,
            gamma_initializer="zeros" if zero_gamma else "ones", name=name,
        )(x)

    def relu(self, x, name):
        return layers.Activation("relu", name=name)(x)

    def bn_relu(self, x, name):
        return self.relu(self.bn(x, name + "_bn"), name + "_relu")


def scaled(filters, flags):
    """Width after ``width_multiplier`` (at least one channel)."""
    return max(1, int(round(filters * flags.width_multiplier)))


def stem(x, flags, filters):
    """conv1 (+ pool1). "7x7": He et al. 2015; "deep": Bag of Tricks ResNet-C (three 3x3,
    widths filters/2, filters/2, filters); "cifar": one 3x3, no pooling (He et al. 2015 sec. 4.2).
    Video (3D): "r3d" one 3x7x7 conv, stride 1x2x2, no pooling (torchvision BasicStem);
    "r2plus1d" a 1x7x7 conv to 45 channels, BN-ReLU, then 3x1x1 (torchvision R2Plus1dStem).
    Pre-activation models leave the stem's last BN-ReLU to the first unit."""
    op = _Ops(flags)
    last = not flags.preact  # the stem's last conv is followed by its BN-ReLU
    if flags.stem == "cifar":
        x = op.conv(x, filters, 3, "conv1_conv", padding="same", normalized=last)
        return op.bn_relu(x, "conv1") if last else x
    if flags.stem in ("r3d", "r2plus1d"):
        if flags.stem == "r2plus1d":
            x = op.pad(x, (0, 3, 3), "conv1_spad")
            x = op.conv(x, scaled(45, flags), (1, 7, 7), "conv1_sconv", strides=(1, 2, 2))
            x = op.bn_relu(x, "conv1_s")
            x = op.pad(x, (1, 0, 0), "conv1_pad")
            x = op.conv(x, filters, (3, 1, 1), "conv1_conv", normalized=last)
        else:
            x = op.pad(x, (1, 3, 3), "conv1_pad")
            x = op.conv(x, filters, (3, 7, 7), "conv1_conv", strides=(1, 2, 2), normalized=last)
        return op.bn_relu(x, "conv1") if last else x
    if flags.stem == "7x7":
        x = op.pad(x, 3, "conv1_pad")
        x = op.conv(x, filters, 7, "conv1_conv", strides=2, normalized=last)
        if last:
            x = op.bn_relu(x, "conv1")
    else:  # deep
        half = max(1, filters // 2)
        x = op.pad(x, 1, "conv1_1_pad")
        x = op.conv(x, half, 3, "conv1_1_conv", strides=2)
        x = op.bn_relu(x, "conv1_1")
        x = op.conv(x, half, 3, "conv1_2_conv", padding="same")
        x = op.bn_relu(x, "conv1_2")
        x = op.conv(x, filters, 3, "conv1_3_conv", padding="same", normalized=last)
        if last:
            x = op.bn_relu(x, "conv1_3")
    x = op.pad(x, 1, "pool1_pad")
    return op.MaxPool(3, strides=2, name="pool1_pool")(x)


def shortcut(x, projection_input, out_channels, stride, name, flags):
    """The identity or projection path (He et al. 2015, sec. 3.3).

    A: parameter-free, subsample and zero-pad channels (after the input's; on both sides with
    ``zero_pad_side="both"``, as akamaster/pytorch_resnet_cifar10). B: 1x1 projection where
    the channel count changes, subsampling identity where only the resolution does (keras
    ResNetV2's last-block stride). C: projection in every unit. ``avg_down`` (ResNet-D) average-pools
    before a stride-1 projection instead of striding the 1x1. Pre-activation units project
    from the activated input and add no BN (He et al. 2016).
    """
    op = _Ops(flags)
    in_channels = op.channels(x)
    changes = in_channels != out_channels
    stride = op.stride(stride)
    if flags.shortcut == "C" or (flags.shortcut == "B" and changes):
        s, conv_stride = projection_input, stride
        if flags.avg_down and stride != 1:
            s = op.AvgPool(stride, strides=stride, padding="same", name=name + "_0_pool")(s)
            conv_stride = 1
        s = op.conv(s, out_channels, 1, name + "_0_conv", strides=conv_stride,
                    normalized=not flags.preact)
        return s if flags.preact else op.bn(s, name + "_0_bn")
    if changes:
        return ZeroPadShortcut(out_channels, stride, pad_side=flags.zero_pad_side,
                               name=name + "_0_pad")(x)
    if stride != 1:
        return op.MaxPool(1, strides=stride, name=name + "_0_pool")(x)
    return x


def _unit_start(x, out_channels, stride, name, flags):
    """A unit's branch input and its shortcut. Pre-activation units (He et al. 2016) apply
    BN-ReLU first; their projections start from the activated input, identities from x."""
    if flags.preact:
        inp = _Ops(flags).bn_relu(x, name + "_preact")
        return inp, shortcut(x, inp, out_channels, stride, name, flags)
    return x, shortcut(x, x, out_channels, stride, name, flags)


def _finish_branch(h, out_channels, name, flags, drop_rate):
    """Squeeze-and-excitation (Hu et al. 2018) and stochastic depth on the residual branch."""
    if flags.se_ratio:
        se_channels = max(1, int(out_channels * flags.se_ratio))
        op = _Ops(flags)
        s = op.GlobalAvgPool(keepdims=True, name=name + "_se_squeeze")(h)
        s = op.Conv(se_channels, 1, activation="relu", name=name + "_se_reduce",
                    kernel_regularizer=flags.kernel_regularizer)(s)
        s = op.Conv(out_channels, 1, activation="sigmoid", name=name + "_se_expand",
                    kernel_regularizer=flags.kernel_regularizer)(s)
        h = layers.Multiply(name=name + "_se_excite")([h, s])
    if drop_rate > 0:
        h = StochasticDepth(drop_rate, name=name + "_drop")(h)
    return h


def bottleneck(x, filters, stride, name, flags, drop_rate=0.0):
    """1x1 -> 3x3 -> 1x1 (x4) unit. ``stride_on``: "first_1x1" strides the first 1x1
    (keras.applications ResNet, original Caffe model); "3x3" strides the 3x3 (ResNet v1.5,
    torchvision/NVIDIA; also every pre-activation model). ``groups``/``width_per_group``
    give ResNeXt's grouped 3x3 (Xie et al. 2017) with torchvision's width rule."""
    op = _Ops(flags)
    out_channels = filters * specs.EXPANSION[specs.BOTTLENECK]
    width = int(filters * flags.width_per_group / 64) * flags.groups
    s1, s3 = (stride, 1) if flags.stride_on == "first_1x1" else (1, stride)
    inp, sc = _unit_start(x, out_channels, stride, name, flags)
    h = op.conv(inp, width, 1, name + "_1_conv", strides=op.stride(s1))
    h = op.bn_relu(h, name + "_1")
    h = op.conv3x3(h, width, name + "_2", strides=s3, groups=flags.groups,
                   in_channels=op.channels(x))
    h = op.bn_relu(h, name + "_2")
    if flags.preact:
        # zero_init_residual on a pre-activation unit: its branch ends in a conv, so that conv
        # starts at zero (the unit starts as the identity, as with a zero BN gamma).
        h = op.conv(h, out_channels, 1, name + "_3_conv", normalized=False,
                    zero_init=flags.zero_init_residual)
    else:
        h = op.conv(h, out_channels, 1, name + "_3_conv")
        h = op.bn(h, name + "_3_bn", zero_gamma=flags.zero_init_residual)
    h = _finish_branch(h, out_channels, name, flags, drop_rate)
    return _merge(sc, h, name, flags)


def basic(x, filters, stride, name, flags, drop_rate=0.0):
    """3x3 -> 3x3 unit (He et al. 2015, Fig. 5 left); the stride is on the first 3x3."""
    op = _Ops(flags)
    inp, sc = _unit_start(x, filters, stride, name, flags)
    # (2+1)D: both convs take their middle width from the unit's input width (torchvision)
    in_channels = op.channels(x)
    h = op.conv3x3(inp, filters, name + "_1", strides=stride, in_channels=in_channels)
    h = op.bn_relu(h, name + "_1")
    if flags.preact:
        h = op.conv3x3(h, filters, name + "_2", normalized=False, zero_init=flags.zero_init_residual,
                       in_channels=in_channels)
    else:
        h = op.conv3x3(h, filters, name + "_2", in_channels=in_channels)
        h = op.bn(h, name + "_2_bn", zero_gamma=flags.zero_init_residual)
    h = _finish_branch(h, filters, name, flags, drop_rate)
    return _merge(sc, h, name, flags)


def _merge(sc, h, name, flags):
    """Add the branch to the shortcut; post-activation units apply ReLU after the sum."""
    if flags.preact:
        return layers.Add(name=name + "_out")([sc, h])
    x = layers.Add(name=name + "_add")([sc, h])
    return layers.Activation("relu", name=name + "_out")(x)


UNITS = {specs.BASIC: basic, specs.BOTTLENECK: bottleneck}


def stages(x, kind, blocks_per_stage, stage_filters, flags, first_stage_index=2):
    """Stack the stages. Stage strides are (1, 2, 2, ...); ``stride_block="last"`` moves each
    downsampling into the last unit of the preceding stage, as keras.applications ResNetV2."""
    unit = UNITS[kind]
    strides = [1] + [2] * (len(blocks_per_stage) - 1)
    total = sum(blocks_per_stage)
    index = 0
    for s, (blocks, filters) in enumerate(zip(blocks_per_stage, stage_filters)):
        stage_flags = flags
        if flags.conv_kinds:
            stage_flags = dataclasses.replace(flags, conv_kind=flags.conv_kinds[s])
        for b in range(blocks):
            if flags.stride_block == "first":
                stride = strides[s] if b == 0 else 1
            else:
                nxt = strides[s + 1] if s + 1 < len(strides) else 1
                stride = nxt if b == blocks - 1 else 1
            drop = flags.stochastic_depth_rate * (index + 1) / total  # Huang et al. linear rule
            name = f"conv{s + first_stage_index}_block{b + 1}"
            x = unit(x, scaled(filters, flags), stride, name, stage_flags, drop)
            index += 1
    if flags.preact:
        x = _Ops(flags).bn_relu(x, "post")
    return x
