"""The generic builders (:func:`ResNet`, :func:`CifarResNet`), the head, and
:func:`get_model`, which builds a row of the registry :data:`keras_resnet.specs.MODELS`.

Everything structural comes from :mod:`keras_resnet.specs`; the named constructors
(``keras_resnet.ResNet50V1_5`` ...) are one line over :func:`get_model` in
:mod:`keras_resnet.zoo`.
"""

import contextlib
import sys
from typing import Any

import keras
from keras import layers

from keras_resnet import blocks, specs, weights as weights_lib
from keras_resnet.weights import video as video_weights
from keras_resnet.specs import list_models, model_info  # noqa: F401  (read from the registry)
from keras_resnet.utils import fail, is_int, is_number

POOLINGS = (None, "avg", "max")
MIN_SIZE = specs.MIN_INPUT_SIZE["imagenet"]  # smallest input side (see specs)
CIFAR_MIN_SIZE = specs.MIN_INPUT_SIZE["cifar"]


def _resolve_flags(preset, options, dims=2):
    """Merge a variant preset, the shared defaults and the caller's options; validate each."""
    known = set(preset) | set(specs.OPTION_DEFAULTS) | ({"conv_kinds"} if dims == 3 else set())
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown}. Options are: {sorted(known)}. "
            f"Received: {', '.join(f'{k}={options[k]!r}' for k in unknown)}"
        )
    f = {"conv_kinds": None, **preset, **specs.OPTION_DEFAULTS, **options}
    stems = ("7x7", "deep", "cifar") + (specs.VIDEO_STEMS if dims == 3 else ())
    kinds = f["conv_kinds"]
    checks = {
        "stride_on": (f["stride_on"] in ("first_1x1", "3x3"), "'first_1x1' or '3x3'"),
        "stride_block": (f["stride_block"] in ("first", "last"), "'first' or 'last'"),
        "conv_bias": (f["conv_bias"] in (True, False, "unnormalized"), "True, False or 'unnormalized'"),
        "stem": (f["stem"] in stems, f"one of {stems} with dims={dims}"),
        "conv_kinds": (kinds is None or (isinstance(kinds, (tuple, list)) and all(
            k in specs.CONV_KINDS for k in kinds)), f"None or a tuple of {specs.CONV_KINDS} per stage"),
        "shortcut": (f["shortcut"] in ("A", "B", "C"), "'A', 'B' or 'C'"),
        "zero_pad_side": (f["zero_pad_side"] in specs.PAD_SIDES, f"one of {specs.PAD_SIDES}"),
        "preact": (isinstance(f["preact"], bool), "a bool"),
        "avg_down": (isinstance(f["avg_down"], bool), "a bool"),
        "synchronized_bn": (isinstance(f["synchronized_bn"], bool), "a bool"),
        "zero_init_residual": (isinstance(f["zero_init_residual"], bool), "a bool"),
        "bn_epsilon": (is_number(f["bn_epsilon"]) and f["bn_epsilon"] > 0, "a positive number"),
        "bn_momentum": (is_number(f["bn_momentum"]) and 0 <= f["bn_momentum"] < 1, "in [0, 1)"),
        "width_multiplier": (is_number(f["width_multiplier"]) and f["width_multiplier"] > 0, "a positive number"),
        "groups": (is_int(f["groups"]) and f["groups"] >= 1, "a positive integer"),
        "width_per_group": (is_int(f["width_per_group"]) and f["width_per_group"] >= 1, "a positive integer"),
        "se_ratio": (f["se_ratio"] is None or (is_number(f["se_ratio"]) and 0 < f["se_ratio"] <= 1), "None or in (0, 1]"),
        "stochastic_depth_rate": (is_number(f["stochastic_depth_rate"]) and 0 <= f["stochastic_depth_rate"] < 1, "in [0, 1)"),
    }
    for argument, (ok, expected) in checks.items():
        if not ok:
            fail(argument, f[argument], expected)
    try:
        f["kernel_regularizer"] = keras.regularizers.get(f["kernel_regularizer"])
    except (ValueError, TypeError) as e:
        raise ValueError(
            "kernel_regularizer must be None, a Keras regularizer or its name. "
            f"Received: kernel_regularizer={options.get('kernel_regularizer')!r}"
        ) from e
    f["conv_kinds"] = None if kinds is None else tuple(kinds)
    # numpy scalars pass the checks; the model's config (and .keras files) get Python numbers
    f.update({k: int(f[k]) for k in ("groups", "width_per_group")})
    f.update({k: float(f[k]) for k in ("bn_epsilon", "bn_momentum", "width_multiplier",
                                       "stochastic_depth_rate")})
    f["se_ratio"] = None if f["se_ratio"] is None else float(f["se_ratio"])
    return blocks.Flags(**f, dims=dims)


def _channels_axis():
    return -1 if keras.config.image_data_format() == "channels_last" else 0


_SHAPES = {1: "(length, channels)", 2: "(height, width, channels)",
           3: "(frames or depth, height, width, channels)"}


def _resolve_input_shape(input_shape, *, include_top, weights, default_size, min_size=MIN_SIZE,
                         dims=2):
    """keras.applications' rules for images: a fixed default size with a top, free size
    without. 1D and 3D inputs have no size rule (the global pooling takes any size)."""
    spatial = (slice(0, dims) if _channels_axis() == -1 else slice(1, dims + 1))
    if input_shape is None:
        size = default_size if include_top and dims == 2 else None
        shape = (size,) * dims + (3,) if _channels_axis() == -1 else (3,) + (size,) * dims
    else:
        shape = tuple(input_shape)
        if len(shape) != dims + 1:
            fail("input_shape", input_shape, f"a tuple {_SHAPES.get(dims)}")
        if any(d is not None and (not is_int(d) or d < 1) for d in shape):
            fail("input_shape", input_shape, "positive integers or None")
        shape = tuple(None if d is None else int(d) for d in shape)  # numpy integers too
    h_w = shape[spatial]
    channels = shape[_channels_axis()]
    if dims != 2:
        return shape
    if include_top and None in h_w:
        fail("input_shape", input_shape, "fully defined when include_top=True")
    if any(d is not None and d < min_size for d in h_w):
        fail("input_shape", input_shape, f"at least {min_size}x{min_size}")
    if weights == "imagenet" and channels != 3:
        fail("input_shape", input_shape, "3-channel with weights='imagenet'")
    if weights == "imagenet" and include_top and tuple(h_w) != (default_size, default_size):
        fail("input_shape", input_shape,
              f"({default_size}, {default_size}, 3) with weights='imagenet' and include_top=True")
    return shape


def _check_dims(dims, video, variant, weights):
    """The number of spatial axes: video variants are 3D, the others 2D unless asked."""
    if dims is None:
        dims = 3 if video else 2
    if dims not in (1, 2, 3) or isinstance(dims, bool):
        fail("dims", dims, "1, 2 or 3")
    if video and dims != 3:
        fail("dims", dims, f"3 for the video variant {variant!r}")
    if weights == "imagenet" and dims != 2:
        fail("weights", weights, f"None or a path with dims={dims} (ImageNet weights are 2D)")
    return dims


def _plan_weights(video, weights, **kwargs):
    """``weights=`` checked before building; video variants take torchvision video state
    dicts and checkpoints (:mod:`keras_resnet.weights.video`)."""
    if video:
        return video_weights.plan(weights, include_top=kwargs["include_top"],
                                  classes=kwargs["classes"])
    return weights_lib.plan(weights, **kwargs)


def _check_head(include_top, pooling, classes, weights):
    if pooling not in POOLINGS:
        fail("pooling", pooling, "one of None, 'avg', 'max'")
    if not is_int(classes) or classes < 1:
        fail("classes", classes, "a positive integer")
    if weights == "imagenet" and include_top and classes != 1000:
        fail("classes", classes, "1000 with weights='imagenet' and include_top=True")
    if not isinstance(include_top, bool):
        fail("include_top", include_top, "a bool")
    return int(classes)  # numpy integers (e.g. np.unique(labels).size) too


_GLOBAL_POOLS = {
    1: (layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D),
    2: (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D),
    3: (layers.GlobalAveragePooling3D, layers.GlobalMaxPooling3D),
}


def _build(*, kind, blocks_per_stage, stem_filters, stage_filters, flags, include_top,
           input_tensor, input_shape, pooling, classes, classifier_activation, name):
    if input_tensor is None:
        img_input = layers.Input(shape=input_shape)
    elif not keras.backend.is_keras_tensor(input_tensor):
        img_input = layers.Input(tensor=input_tensor, shape=input_shape)
    else:
        img_input = input_tensor

    x = blocks.stem(img_input, flags, blocks.scaled(stem_filters, flags))
    x = blocks.stages(x, kind, blocks_per_stage, stage_filters, flags)
    average, maximum = _GLOBAL_POOLS[flags.dims]
    if include_top:
        x = average(name="avg_pool")(x)
        # Under a mixed policy the classifier (and its softmax) runs in float32.
        mixed = keras.config.dtype_policy().name.startswith("mixed")
        x = layers.Dense(classes, activation=classifier_activation, name="predictions",
                         kernel_regularizer=flags.kernel_regularizer,
                         dtype="float32" if mixed else None)(x)
    elif pooling == "avg":
        x = average(name="avg_pool")(x)
    elif pooling == "max":
        x = maximum(name="max_pool")(x)

    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    with deep_recursion():
        return keras.Model(inputs, x, name=name)


def default_name(family, variant, depth, dims=2):
    """The ``keras.Model`` name a builder gives by default: "resnet50" (v1), "resnet50v2",
    "resnet50_v1_5", "resnet50d"; CIFAR "resnet20", "resnet164v2"; "resnet18_1d" /
    "resnet18_3d" in 1D / 3D; video variants "r3d_18", "mc3_18", "r2plus1d_18". Export looks
    a model's preprocessing up by it (with the family, since "resnet50" exists in both)."""
    if variant in specs.VIDEO_VARIANTS:
        return f"{variant}_{depth}"
    suffix = "" if dims == 2 else f"_{dims}d"
    if family == "cifar":
        return f"resnet{depth}{'v2' if variant == 'v2' else ''}{suffix}"
    return f"resnet{depth}{ {'v1': '', 'v2': 'v2', 'v1.5': '_v1_5', 'v1d': 'd'}[variant]}{suffix}"


@contextlib.contextmanager
def deep_recursion(limit=40_000):
    """Keras walks a functional graph recursively, one frame per layer: ResNet-1202 and
    ResNet-1001 (thousands of layers) need more than Python's default limit of 1000."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _check_basic(depth: int, flags, options: dict) -> None:
    """Basic blocks (depths 18, 34) have no groups and no 1x1 to stride on, as torchvision."""
    if flags.groups != 1 or flags.width_per_group != 64:
        raise ValueError(
            "Basic blocks (depths 18, 34) support only groups=1 and width_per_group=64, as "
            f"torchvision. Received: depth={depth}, groups={flags.groups}, "
            f"width_per_group={flags.width_per_group}"
        )
    if options.get("stride_on") == "first_1x1":
        fail("stride_on", "first_1x1", "'3x3' for basic blocks (depths 18, 34), which have no 1x1")


def ResNet(depth: int, *, variant: str = "v1", include_top: bool = True, weights: str | None = None,
           input_tensor: Any = None, input_shape: tuple | None = None, pooling: str | None = None,
           classes: int = 1000, classifier_activation: str | None = "softmax", name: str | None = None,
           dims: int | None = None, **options: Any) -> keras.Model:
    """Build an ImageNet-style ResNet, for images, signals (1D) or video and volumes (3D).

    Args:
        depth: 18 or 34 (basic blocks); 26, 50, 101, 152 or 200 (bottleneck blocks).
        variant: "v1" (keras.applications ResNet: stride on the first 1x1, conv biases,
            BN epsilon 1.001e-5), "v1.5" (torchvision: stride on the 3x3, no conv biases,
            epsilon 1e-5), "v1d" (v1.5 with deep stem and average-pool shortcut, He et al.
            2019) or "v2" (keras.applications ResNetV2, pre-activation, He et al. 2016); for
            video (dims=3) also "r3d", "mc3", "r2plus1d" (torchvision's video ResNets,
            Tran et al. 2018; :data:`keras_resnet.specs.VIDEO_VARIANTS`).
        include_top: whether to add global average pooling and the ``predictions`` Dense.
        weights: None, "imagenet" (the files keras.applications publishes; "v1" and "v2"
            at depths 50/101/152), a published torchvision / timm set of a named model
            ("torchvision", "torchvision:IMAGENET1K_V2", "timm:resnet50.a1_in1k"; see
            ``keras-resnet list --weights``), or the path of a weights file: a
            keras.applications-format legacy ``.h5`` (with or without top), a Keras 3
            ``.weights.h5``, or a checkpoint of the same architecture, recognised by
            content under any name (``torch.save``, ``.safetensors``, a ``.pth.zip``; see
            :mod:`keras_resnet.weights.checkpoint`).
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: (height, width, 3), each side >= 32; default (224, 224, 3) with a top,
            (None, None, 3) without.
        pooling: with ``include_top=False``: None (4-D output), "avg" or "max".
        classes: number of classes of the top.
        classifier_activation: activation of the top (None for logits).
        name: model name; default e.g. "resnet50", "resnet50v2", "resnet50_v1_5", "resnet50d";
            "resnet50_1d" / "resnet50_3d" in 1D / 3D, "r3d_18" for video variants.
        dims: spatial axes: 2 (images, the default), 1 (signals: Conv1D, kernels 7 in the
            stem and 3 in the units, inputs (length, channels)) or 3 (video and volumes:
            inputs (frames, height, width, channels); the default of video variants).
            1D and 3D inputs may have any size; ``input_shape`` defaults to all-None with
            3 channels. With dims=3, ``conv_kinds`` chooses per stage how the 3x3x3 conv is
            made (see :class:`keras_resnet.blocks.Flags`).
        **options: keyword-only flags; see :mod:`keras_resnet.specs` for the variant flags
            (``preact``, ``stride_on``, ``stride_block``, ``conv_bias``, ``bn_epsilon``,
            ``stem``, ``shortcut``, ``avg_down``, ``zero_pad_side``) and ``zero_init_residual``,
            ``synchronized_bn``, ``bn_momentum``, ``width_multiplier``, ``groups``,
            ``width_per_group`` (ResNeXt), ``se_ratio`` (squeeze-and-excitation),
            ``stochastic_depth_rate``, ``kernel_regularizer``, ``kernel_initializer``.

    Returns:
        A functional ``keras.Model``.
    """
    if depth not in specs.DEPTHS:
        fail("depth", depth, f"one of {sorted(specs.DEPTHS)}")
    video = variant in specs.VIDEO_VARIANTS
    if variant not in specs.VARIANTS and not video:
        fail("variant", variant, f"one of {sorted(specs.VARIANTS) + sorted(specs.VIDEO_VARIANTS)}")
    dims = _check_dims(dims, video, variant, weights)
    kind, blocks_per_stage = specs.DEPTHS[depth]
    flags = _resolve_flags((specs.VIDEO_VARIANTS if video else specs.VARIANTS)[variant], options, dims)
    if flags.conv_kinds is not None and len(flags.conv_kinds) != len(blocks_per_stage):
        fail("conv_kinds", flags.conv_kinds, f"one kind per stage ({len(blocks_per_stage)})")
    if kind == specs.BASIC:
        _check_basic(depth, flags, options)
    classes = _check_head(include_top, pooling, classes, weights)
    weights_plan = _plan_weights(video, weights, depth=depth, variant=variant, options=options,
                                 include_top=include_top, classes=classes)
    input_shape = _resolve_input_shape(input_shape, include_top=include_top, weights=weights,
                                       default_size=224, dims=dims)
    if name is None:
        name = default_name("imagenet", variant, depth, dims)
    model = _build(
        kind=kind, blocks_per_stage=blocks_per_stage, stem_filters=specs.STEM_FILTERS,
        stage_filters=specs.STAGE_FILTERS, flags=flags, include_top=include_top,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name,
    )
    (video_weights if video else weights_lib).apply(weights_plan, model)
    return model


def CifarResNet(depth: int, *, shortcut: str | None = None, variant: str = "v1", include_top: bool = True,
                weights: str | None = None, input_tensor: Any = None, input_shape: tuple | None = (32, 32, 3),
                pooling: str | None = None, classes: int | None = None, classifier_activation: str | None = "softmax",
                name: str | None = None, dims: int = 2, **options: Any) -> keras.Model:
    """Build a CIFAR ResNet (He et al. 2015, sec. 4.2; He et al. 2016 for ``variant="v2"``).

    Args:
        depth: v1: 6n+2 with basic blocks (20, 32, 44, 56, 110, 1202 in the paper);
            v2: 9n+2 with pre-activation bottleneck blocks (164, 1001).
        shortcut: "A" (zero-padding identity, no parameters; v1 default as in the paper),
            "B" (projection where the width changes; v2 default) or "C" (projection everywhere).
        variant: "v1" or "v2".
        weights: None; a published CIFAR set ("akamaster", "chenyaofo:cifar10",
            "chenyaofo:cifar100" ...; ``keras-resnet list --weights``), which also sets the
            options its publisher's architecture needs (e.g. akamaster's ``shortcut="A"``
            with ``zero_pad_side="both"``) and its classes, and records itself as
            ``model.weight_set``; a published set's file under any name (recognised by its
            hash); a checkpoint whose names fit the model (a ``torch.save`` file under any
            name, safetensors, osmr's tf2cv ``.tf2.h5``; :mod:`keras_resnet.weights`); or a
            Keras weights file.
        classes: classes of the top; default 10, or the set's with a published set.
        include_top: as :func:`ResNet`, and so are ``input_tensor``, ``input_shape`` (with
            dims 1 or 3 it defaults to any size, 3 channels), ``pooling``,
            ``classifier_activation``, ``name`` and ``dims``.
        **options: the same options as :func:`ResNet`.

    Returns:
        A functional ``keras.Model`` named e.g. "resnet20" or "resnet164v2".
    """
    if variant not in specs.CIFAR_VARIANTS:
        fail("variant", variant, f"one of {sorted(specs.CIFAR_VARIANTS)}")
    spec = specs.cifar_blocks(depth, variant)
    if spec is None:
        rule = "6n+2 (e.g. 20, 32, 44, 56, 110, 1202)" if variant == "v1" else "9n+2 (e.g. 164, 1001)"
        fail("depth", depth, f"{rule} for CIFAR variant {variant!r}")
    if shortcut is not None:
        options["shortcut"] = shortcut
    if weights == "imagenet":
        fail("weights", weights, "None or a path (no published ImageNet weights for CIFAR ResNets)")
    kind, blocks_per_stage = spec
    dims = _check_dims(dims, False, variant, weights)
    flags = _resolve_flags(specs.CIFAR_VARIANTS[variant], options, dims)
    checked = _check_head(include_top, pooling, 10 if classes is None else classes, weights)
    weights_plan = weights_lib.plan_cifar(weights, depth=depth, variant=variant, options=options,
                                          include_top=include_top,
                                          classes=None if classes is None else checked)
    if weights_plan.options != options:  # a published set's conventions
        flags = _resolve_flags(specs.CIFAR_VARIANTS[variant], weights_plan.options, dims)
    classes = weights_plan.classes or 10
    if dims != 2 and input_shape == (32, 32, 3):
        input_shape = None  # the image default does not apply to signals and volumes
    input_shape = _resolve_input_shape(input_shape, include_top=include_top, weights=weights,
                                       default_size=32, min_size=CIFAR_MIN_SIZE, dims=dims)
    model = _build(
        kind=kind, blocks_per_stage=blocks_per_stage, stem_filters=specs.CIFAR_STEM_FILTERS,
        stage_filters=specs.CIFAR_STAGE_FILTERS, flags=flags, include_top=include_top,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
        name=name or default_name("cifar", variant, depth, dims),
    )
    weights_lib.apply(weights_plan, model)
    return model


# ---------------------------------------------------------------------------- named models


def get_model(name: str, /, **kwargs) -> keras.Model:
    """Build a named model (any name of :func:`list_models`) from its registry row
    (:data:`keras_resnet.specs.MODELS`), with keras.applications-style arguments and
    options, e.g. ``get_model("ResNet20", classes=10)``; ``name=`` among the keywords
    names the Keras model.

    As timm's ``create_model``, ``weights`` defaults to None (random initialisation) for
    every name; the keras.applications-compatible constructors (``keras_resnet.ResNet50``
    ...) default to ``weights="imagenet"`` as keras.applications does.
    """
    spec = specs.get_spec(name)
    builder = CifarResNet if spec.family == "cifar" else ResNet
    return builder(spec.depth, variant=spec.variant, **{**spec.options, **kwargs})
