"""What an export bakes in besides the weights: input size, preprocessing, class names,
top-k, the eval transform and the image-size limit, resolved and checked before anything
heavy happens."""

from __future__ import annotations

import dataclasses
import os
import warnings

from keras_resnet.export.headers import DEFAULT_MAX_IMAGE_PIXELS
from keras_resnet.export.transform import EvalTransform

SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_pixels"
CLASS_NAMES_ASSET = "class_names.txt"
METADATA_ASSET = "keras_resnet_export.json"
FORMATS = ("saved_model", "onnx", "tflite")  # what `keras-resnet export --format` writes


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """Everything baked into an export besides the weights (resolved and checked)."""

    height: int
    width: int
    preprocessing: str | dict  # a mode or {"mean", "std"} (keras_resnet.preprocessing.check_preprocessing)
    class_names: tuple
    top_k: int
    add_softmax: bool  # the model ends in logits: the export appends a softmax
    transform: EvalTransform = EvalTransform()
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # None: no limit
    weights: str | None = None  # the published set the model was loaded from, if any

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def metadata(self, model_name: str) -> dict:
        import keras
        import tensorflow as tf

        from keras_resnet import __version__

        return {
            "model": model_name,
            "image_size": [self.height, self.width],
            "preprocessing": self.preprocessing,
            "num_classes": self.num_classes,
            "top_k": self.top_k,
            "softmax_added": self.add_softmax,
            "class_names_file": CLASS_NAMES_ASSET,
            "eval_transform": self.transform.metadata(),
            "weights": self.weights,
            "max_image_pixels": self.max_image_pixels,
            "signatures": {
                SERVING_SIGNATURE: {
                    "inputs": {"image_bytes": "string [None]"},
                    "outputs": {
                        "classes": f"int64 [None, {self.top_k}]",
                        "scores": f"float32 [None, {self.top_k}]",
                        "labels": f"string [None, {self.top_k}]",
                    },
                },
                PIXELS_SIGNATURE: {
                    "inputs": {"pixels": f"float32 [None, {self.height}, {self.width}, 3]"},
                    "outputs": {"probabilities": f"float32 [None, {self.num_classes}]"},
                },
            },
            "versions": {
                "keras_resnet": __version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
        }


def _input_size(model, image_size):
    from keras_resnet.utils import check_positive_int

    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            "model must take one batch of channels-last RGB images, input shape "
            f"(None, H, W, 3). Received: model.input_shape={shape}"
        )
    height, width = shape[1], shape[2]
    if image_size is not None:
        image_size = check_positive_int("image_size", image_size)
        if height is not None and (height, width) != (image_size, image_size):
            raise ValueError(
                f"image_size must match the model's input size {height}x{width}. "
                f"Received: image_size={image_size}"
            )
        return image_size, image_size
    if height is None or width is None:
        raise ValueError(
            "image_size must be given for a model without a fixed input size "
            f"(model.input_shape={shape}). Received: image_size=None"
        )
    return int(height), int(width)


def model_preprocessing(model) -> str | None:
    """The preprocessing mode of a model this package built, else None.

    Looked up in the named-model table by the model's default name and family (a CIFAR
    stem has no ``pool1_pool``): ``ResNet50V2(weights=None)`` is "resnet50v2" -> "tf", also
    after a ``.keras`` round trip, which keeps the name. A model that wraps one of ours (a
    backbone called as one layer, as in transfer learning) takes the backbone's mode.
    Models renamed by their builder (``name=...``) are not recognised: pass
    ``preprocessing``.

    Kept, why: it lets ``export_saved_model(ResNet50V2(...), path)`` work without the
    caller repeating what the name implies. A model does not yet carry its registry row as
    public state; when it does, read the mode from there instead of the name.
    """
    import keras

    from keras_resnet.models import default_name, list_models

    modes = {}
    for info in list_models():
        key = (info["family"], default_name(info["family"], info["variant"], info["depth"]))
        modes.setdefault(key, set()).add(info["preprocessing"])
    for candidate in [model, *(layer for layer in model.layers if isinstance(layer, keras.Model))]:
        names = {layer.name for layer in candidate.layers}
        family = "imagenet" if "pool1_pool" in names else "cifar"
        found = modes.get((family, candidate.name), set())
        if len(found) == 1:
            return found.pop()
    return None


def weight_set_preprocessing(weight_set) -> str | dict:
    """The preprocessing that normalises as a published set's publisher did: "torch" for
    ImageNet's mean / std on [0, 1] (torchvision, timm, akamaster's CIFAR sets), else the
    set's own ``{"mean", "std"}`` (chenyaofo's and osmr's CIFAR statistics)."""
    from keras_resnet.preprocessing import preprocessing_for

    return preprocessing_for(weight_set.transform.mean, weight_set.transform.std)


def _resolve_preprocessing(model, preprocessing):
    from keras_resnet.preprocessing import MEAN_STD_SYNTAX, MODES, check_preprocessing
    from keras_resnet.weights import weight_set_of

    if preprocessing is None and weight_set_of(model) is not None:
        preprocessing = weight_set_preprocessing(weight_set_of(model))
    if preprocessing is None:
        preprocessing = model_preprocessing(model)
        if preprocessing is None:
            raise ValueError(
                f"preprocessing must be one of {MODES} or '{MEAN_STD_SYNTAX}' for model "
                f"{model.name!r}: it is not a keras_resnet model under its default name (see "
                "'keras-resnet list'), so its preprocessing cannot be looked up. "
                "Received: preprocessing=None"
            )
    return check_preprocessing(preprocessing)


def cached_imagenet_class_names() -> list | None:
    """The 1000 ImageNet class names if a class index is cached locally, else None.

    Never touches the network: exports must work offline.
    """
    try:
        from keras_resnet import preprocessing as kp
        from keras_resnet.weights import cache_dir

        path = os.path.join(cache_dir(), kp.CLASS_INDEX_FILE)
        if os.path.isfile(path):
            return kp.imagenet_class_names(path)
    except Exception:  # unreadable or malformed cache: fall back to generic names
        pass
    return None


def _given_class_names(class_names, num_classes):
    if isinstance(class_names, str):
        raise ValueError(
            f"class_names must be a list of strings. Received: class_names={class_names!r}"
        )
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"class_names must hold one name per model output ({num_classes}). "
            f"Received: {len(names)} class_names"
        )
    bad = [name for name in names if "\n" in name or "\r" in name]
    if bad:
        raise ValueError(f"class_names must not contain line breaks. Received: {bad[0]!r}")
    return tuple(names)


def _resolve_class_names(class_names, num_classes):
    if class_names is not None:
        return _given_class_names(class_names, num_classes)
    if num_classes == 1000:
        names = cached_imagenet_class_names()
        if names is not None and len(names) == 1000:
            return tuple(names)
        warnings.warn(
            "No cached ImageNet class index (imagenet_class_index.json) was found, so the "
            "export labels its 1000 classes class_0 ... class_999. Run "
            "keras_resnet.preprocessing.imagenet_class_names() once online to cache it, "
            "or pass class_names.",
            stacklevel=4,
        )
    else:
        warnings.warn(
            f"No class_names given: the export labels its {num_classes} classes "
            f"class_0 ... class_{num_classes - 1}.",
            stacklevel=4,
        )
    return tuple(f"class_{i}" for i in range(num_classes))


def _ends_in_logits(model):
    """True when the last layer has a linear activation (classifier_activation=None)."""
    activation = getattr(model.layers[-1], "activation", None) if model.layers else None
    return getattr(activation, "__name__", None) == "linear"


def _resolve_transform(eval_transform, crop_fraction, interpolation, model=None):
    if eval_transform is None and crop_fraction is None and interpolation is None:
        from keras_resnet.weights import serving_transform

        published = serving_transform(model)  # the publisher's, for a model loaded from a set
        if published is not None:
            return published
    if eval_transform is None:
        return EvalTransform(crop_fraction=1.0 if crop_fraction is None else crop_fraction,
                             interpolation=interpolation or "bilinear")
    if not isinstance(eval_transform, EvalTransform):
        raise ValueError("eval_transform must be a keras_resnet.export.EvalTransform. "
                         f"Received: eval_transform={eval_transform!r}")
    if crop_fraction is not None or interpolation is not None:
        raise ValueError(
            "crop_fraction and interpolation are part of eval_transform; give one or the "
            f"other. Received: crop_fraction={crop_fraction!r}, interpolation={interpolation!r}"
        )
    return eval_transform


def check_max_image_pixels(max_image_pixels):
    from keras_resnet.utils import check_positive_int

    if max_image_pixels is None:
        return None
    return check_positive_int("max_image_pixels", max_image_pixels)


def resolve_options(model, *, class_names=None, preprocessing=None, top_k=5, image_size=None,
                    crop_fraction=None, interpolation=None, eval_transform=None,
                    max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS) -> ServingOptions:
    """Check the export arguments against the model; nothing heavy happens here.

    ``crop_fraction`` (default 1.0) and ``interpolation`` (default "bilinear") build the
    :class:`EvalTransform`, or ``eval_transform`` gives one whole. With none of the three,
    a model loaded from a published weight set (``weights="torchvision"``, ``"timm:..."``)
    gets that set's transform (:func:`keras_resnet.weights.serving_transform`). ``max_image_pixels``
    (default 50 megapixels, None for no limit) bounds what ``serving_default`` decodes.
    """
    import keras

    from keras_resnet.utils import check_positive_int

    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    top_k = check_positive_int("top_k", top_k)
    transform = _resolve_transform(eval_transform, crop_fraction, interpolation, model)
    max_image_pixels = check_max_image_pixels(max_image_pixels)
    height, width = _input_size(model, image_size)
    output_shape = model.output_shape
    if isinstance(output_shape, list) or len(output_shape) != 2 or output_shape[-1] is None:
        raise ValueError(
            "model must output one (batch, classes) tensor, i.e. include its classifier "
            f"head. Received: model.output_shape={output_shape}"
        )
    num_classes = int(output_shape[-1])
    return ServingOptions(
        height=height,
        width=width,
        preprocessing=_resolve_preprocessing(model, preprocessing),
        class_names=_resolve_class_names(class_names, num_classes),
        top_k=min(top_k, num_classes),
        add_softmax=_ends_in_logits(model),
        transform=transform,
        max_image_pixels=max_image_pixels,
        weights=_weight_set_name(model),
    )


def _weight_set_name(model):
    from keras_resnet.weights import weight_set_of

    weight_set = weight_set_of(model)
    return None if weight_set is None else weight_set.name
