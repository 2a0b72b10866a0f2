"""SavedModels for TF Serving, ONNX and TFLite files, and the `export` / `predict` commands.

A SavedModel version folder (``export_dir/<version>/``, the layout TF Serving polls) holds
two signatures over the same weights, with the model family's preprocessing baked in:

- ``serving_default``: ``image_bytes`` (``tf.string [None]``, encoded JPEG / PNG / GIF /
  BMP / WebP of any size) -> decode, resize to the model's input size, preprocess,
  predict -> ``classes`` (``int64 [None, k]``), ``scores`` (``float32 [None, k]``),
  ``labels`` (``string [None, k]``).
- ``predict_pixels``: ``pixels`` (``float32 [None, H, W, 3]``, RGB 0..255 at the input
  size) -> ``probabilities`` (``float32 [None, classes]``).

The ONNX and TFLite files hold ``predict_pixels`` only (same input, same output name),
so every format takes raw pixels and nobody has to re-implement the preprocessing.

What is served is the model with each BatchNormalization that follows a convolution
folded into it (``fold_bn=True``), computing in float32 or, with ``precision="bf16"``
(or ``"auto"`` on CPUs with AMX / AVX-512 bf16), in bfloat16 with float32 inputs,
outputs and classifier; ``assets/keras_resnet_export.json`` records which.

Writes are atomic: a version is written into ``export_dir/.tmp-<version>-<pid>`` and
renamed at the end. TF Serving only loads all-digit folder names, so an interrupted
export never shows up as a version, and an existing version is never overwritten.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_pixels"
FORMATS = ("saved_model", "onnx", "tflite")
QUANTIZATIONS = ("none", "dynamic", "int8")
PRECISIONS = ("auto", "fp32", "bf16")
CLASS_NAMES_ASSET = "class_names.txt"
METADATA_ASSET = "keras_resnet_export.json"
DEFAULT_EXPORT_ROOT = "saved_models"
ONNX_OPSET = 17

# Leading bytes of the formats tf.io.decode_image reads: (offset, magic) pairs that must
# all match. Checked in the graph so that other bytes fail with a clear message.
_IMAGE_SIGNATURES = (
    ((0, b"\xff\xd8\xff"),),  # JPEG
    ((0, b"\x89PNG\r\n\x1a\n"),),  # PNG
    ((0, b"GIF8"),),  # GIF87a / GIF89a
    ((0, b"BM"),),  # BMP
    ((0, b"RIFF"), (8, b"WEBP")),  # WebP
    ((0, b"\xff\x0a"),),  # JPEG XL codestream
    ((0, b"\x00\x00\x00\x0cJXL \r\n\x87\n"),),  # JPEG XL container
)
NOT_AN_IMAGE = "is not a decodable image (expected JPEG, PNG, GIF, BMP, WebP or JPEG XL bytes)"


# --------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """Everything baked into an export besides the weights (resolved and checked)."""

    height: int
    width: int
    preprocessing: str
    class_names: tuple
    top_k: int
    add_softmax: bool  # the model ends in logits: the export appends a softmax

    @property
    def num_classes(self):
        return len(self.class_names)

    def metadata(self, model_name):
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


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _input_size(model, image_size):
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            "model must take one batch of channels-last RGB images, input shape "
            f"(None, H, W, 3). Received: model.input_shape={shape}"
        )
    height, width = shape[1], shape[2]
    if image_size is not None:
        image_size = _check_positive_int("image_size", image_size)
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


def _model_preprocessing(model):
    """The preprocessing mode of a model built by this package, else None."""
    # Not guessed from model.name: "resnet50" is the name of v1 (caffe) and v1.5 (torch).
    try:
        from keras_resnet.preprocessing import preprocessing_mode

        return preprocessing_mode(model)
    except Exception:  # not one of ours, or this version cannot tell: the caller decides
        return None


def _resolve_preprocessing(model, preprocessing):
    from keras_resnet.preprocessing import MODES

    if preprocessing is None:
        preprocessing = _model_preprocessing(model)
        if preprocessing is None:
            raise ValueError(
                f"preprocessing must be one of {MODES} for model {model.name!r}: it is not "
                "a named keras_resnet model, so its preprocessing cannot be looked up. "
                "Received: preprocessing=None"
            )
    if preprocessing not in MODES:
        raise ValueError(
            f"preprocessing must be one of {MODES}. Received: preprocessing={preprocessing!r}"
        )
    return preprocessing


def cached_imagenet_class_names():
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


def _resolve_class_names(class_names, num_classes):
    if class_names is not None:
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


def resolve_options(model, *, class_names=None, preprocessing=None, top_k=5, image_size=None):
    """Check the export arguments against the model; nothing heavy happens here."""
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    top_k = _check_positive_int("top_k", top_k)
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
    )


# --------------------------------------------------------------------------- graph


def build_serving_functions(model, options):
    """The two serving functions as ``tf.function`` objects, plus the variables they use.

    Returns ``(serve_image_bytes, predict_pixels, variables)``. The functions close over
    ``model``; only the variables they read are tracked in a SavedModel (as Keras'
    ``ExportArchive`` does), which keeps the TFLite converter able to freeze them.
    """
    import tensorflow as tf

    from keras_resnet.preprocessing import preprocess_input

    height, width = options.height, options.width
    labels = tf.constant(list(options.class_names), dtype=tf.string)

    def probabilities(pixels):
        x = preprocess_input(pixels, mode=options.preprocessing)
        y = tf.cast(model(x, training=False), tf.float32)
        if options.add_softmax:
            y = tf.nn.softmax(y, axis=-1)
        return y

    def is_image(data):
        # padded, so that substr never reads past the end of short inputs
        head = tf.strings.substr(tf.strings.join([data, b"\x00" * 16]), 0, 16)
        matches = []
        for parts in _IMAGE_SIGNATURES:
            ok = [
                tf.equal(tf.strings.substr(head, offset, len(magic)), magic)
                for offset, magic in parts
            ]
            matches.append(tf.reduce_all(tf.stack(ok)))
        return tf.reduce_any(tf.stack(matches))

    def decode(item):
        data, index = item
        message = tf.strings.format("image_bytes[{}] " + NOT_AN_IMAGE, index)
        check = tf.debugging.Assert(is_image(data), [message], name="check_image_bytes")
        with tf.control_dependencies([check]):
            image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        # An image already at the input size passes through unchanged (scale 1).
        return tf.image.resize(image, [height, width], antialias=True)

    pixels_spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")

    @tf.function(input_signature=[pixels_spec])
    def predict_pixels(pixels):
        return {"probabilities": probabilities(pixels)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        indices = tf.range(tf.shape(image_bytes)[0])
        images = tf.map_fn(
            decode,
            (image_bytes, indices),
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        scores, classes = tf.math.top_k(probabilities(images), k=options.top_k)
        return {
            "classes": tf.cast(classes, tf.int64),
            "scores": scores,
            "labels": tf.gather(labels, classes),
        }

    variables, seen = [], set()
    for fn in (serve_image_bytes, predict_pixels):
        for v in fn.get_concrete_function().variables:
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
    return serve_image_bytes, predict_pixels, variables


def _write_saved_model(model, options, path, *, model_name, served=None):
    """Write a SavedModel with both signatures and the assets to ``path``."""
    import tensorflow as tf

    serve_image_bytes, predict_pixels, variables = build_serving_functions(model, options)
    module = tf.Module()
    module.serve_image_bytes = serve_image_bytes
    module.predict_pixels = predict_pixels
    module.model_variables = variables
    with tempfile.TemporaryDirectory() as scratch:
        names_path = os.path.join(scratch, CLASS_NAMES_ASSET)
        with open(names_path, "w", encoding="utf-8") as f:
            f.write("".join(name + "\n" for name in options.class_names))
        meta_path = os.path.join(scratch, METADATA_ASSET)
        with open(meta_path, "w", encoding="utf-8") as f:
            json.dump({**options.metadata(model_name), **(served or {})}, f, indent=2)
        module.class_names_file = tf.saved_model.Asset(names_path)
        module.metadata_file = tf.saved_model.Asset(meta_path)
        tf.saved_model.save(
            module,
            path,
            signatures={
                SERVING_SIGNATURE: serve_image_bytes.get_concrete_function(),
                PIXELS_SIGNATURE: predict_pixels.get_concrete_function(),
            },
        )


def resolve_serving_precision(precision="auto"):
    """The compute precision a SavedModel serves in: ``"fp32"`` or ``"bf16"``.

    ``"auto"`` gives ``"bf16"`` only on CPUs with AMX or AVX-512 bf16
    (:func:`keras_resnet.hardware.cpu_has_fast_bf16`, checked on the exporting
    machine), where bf16 convolutions run 3-4x faster than fp32; ``"fp32"`` elsewhere:
    on an AVX2-only CPU a bf16 ResNet-50 export served 0.94x the speed of the fp32 one
    (``benchmarks/serving.py``).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    from keras_resnet import hardware

    return "bf16" if hardware.cpu_has_fast_bf16() else "fp32"


def _check_fold_bn(fold_bn):
    if not isinstance(fold_bn, (bool, np.bool_)):
        raise ValueError(f"fold_bn must be True or False. Received: fold_bn={fold_bn!r}")
    return bool(fold_bn)


def _layers_within(model):
    """Every layer of ``model``, nested models' layers included (the nested models too)."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers_within(layer)


def _count_batch_norms(model):
    import keras

    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in _layers_within(model))


def _is_graph_model(model):
    """True for models whose layer graph can be rebuilt: functional, or Sequential with an Input."""
    import keras

    if isinstance(model, keras.Sequential):
        return bool(model.built and model.inputs)
    return hasattr(model, "_operations")  # functional (subclassed models have no graph)


def _clone_with_weights(model, clone_layer, **kwargs):
    """``keras.models.clone_model`` whose clones of ``clone_layer`` get the originals' weights."""
    import keras

    pairs = []

    def clone(layer):
        new = clone_layer(layer)
        pairs.append((layer, new))
        return new

    cloned = keras.models.clone_model(model, clone_function=clone, **kwargs)
    for layer, new in pairs:
        if new is not layer and not isinstance(layer, keras.Model):
            new.set_weights(layer.get_weights())
    return cloned


def _fold_all(model):
    """:func:`keras_resnet.inference.fold_batch_norm` on the model and on the functional
    models nested in it (a backbone called as one layer, as in transfer learning)."""
    import keras

    from keras_resnet.inference import fold_batch_norm

    if any(isinstance(layer, keras.Model) and _is_graph_model(layer) for layer in model.layers):

        def clone_layer(layer):
            if isinstance(layer, keras.Model) and _is_graph_model(layer):
                return _fold_all(layer)
            return layer.__class__.from_config(layer.get_config())

        model = _clone_with_weights(model, clone_layer)
    return fold_batch_norm(model)


def _output_layers(model):
    """ids of the (innermost) layers whose outputs are the model's outputs."""
    import keras

    found = set()
    for tensor in keras.tree.flatten(model.outputs):
        layer = tensor._keras_history.operation
        if isinstance(layer, keras.Model):
            found |= _output_layers(layer)
        else:
            found.add(id(layer))
    return found


def _with_compute_dtype(model, policy):
    """The same model and weights with every layer under the dtype policy ``policy``,
    except the layers producing the outputs (the classifier and its softmax): float32."""
    import keras

    keep_float32 = _output_layers(model)

    def clone_layer(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = "float32" if id(layer) in keep_float32 else policy
        return layer.__class__.from_config(config)

    return _clone_with_weights(model, clone_layer, recursive=True)


def prepare_for_serving(model, *, fold_bn=True, precision="fp32"):
    """The model a SavedModel serves, and what was done to it (for the export metadata).

    Args:
        model: a classifier ``keras.Model``; it is not modified.
        fold_bn: fold every BatchNormalization that follows a convolution into it
            (:func:`keras_resnet.inference.fold_batch_norm`, nested functional models
            included). BN that follows no convolution (the pre-activation BN of v2
            models) stays. A subclassed model has no layer graph to rewrite: it is
            served unfolded, with a warning.
        precision: ``"fp32"`` or ``"bf16"`` (resolved; see :func:`resolve_serving_precision`).
            ``"fp32"`` computes every layer in float32, also for a model trained under a
            mixed policy; ``"bf16"`` rebuilds the model under the ``mixed_bfloat16``
            policy (bf16 convolutions and matmuls, float32 variables) with the layers
            producing the outputs kept in float32.

    Returns ``(served_model, facts)`` with ``facts`` a dict: ``precision``,
    ``compute_dtype``, ``batch_norm_folded`` and ``batch_norm_kept`` (layer counts).
    """
    import keras

    fold_bn = _check_fold_bn(fold_bn)
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16' here. Received: precision={precision!r}")
    before = _count_batch_norms(model)
    rebuildable = _is_graph_model(model)
    if fold_bn and before:
        if rebuildable:
            model = _fold_all(model)
        else:
            warnings.warn(
                f"model {model.name!r} is not a functional or Sequential model, so its "
                "BatchNormalization layers are exported unfolded.",
                stacklevel=3,
            )
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16"}[precision]
    outputs = _output_layers(model) if rebuildable else set()
    if any(
        layer.dtype_policy.name != ("float32" if id(layer) in outputs else policy)
        for layer in _layers_within(model)
        if not isinstance(layer, (keras.Model, keras.layers.InputLayer))
    ):
        if not rebuildable:
            raise ValueError(
                "precision needs the model rebuilt under another dtype policy, which a "
                f"subclassed model cannot be. Received: precision={precision!r}"
            )
        model = _with_compute_dtype(model, policy)
    kept = _count_batch_norms(model)
    return model, {
        "precision": precision,
        "compute_dtype": {"fp32": "float32", "bf16": "bfloat16"}[precision],
        "batch_norm_folded": before - kept,
        "batch_norm_kept": kept,
    }


# --------------------------------------------------------------------------- SavedModel


def list_versions(export_dir):
    """Versions under ``export_dir`` as TF Serving sees them (all-digit folders), ascending."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(export_dir)
        if name.isascii() and name.isdigit() and os.path.isdir(os.path.join(export_dir, name))
    )


def _free_version(export_dir, version):
    """``version`` checked to be unused in ``export_dir``; None -> the next free one."""
    if version is None:
        return (list_versions(export_dir) or [0])[-1] + 1
    version = _check_positive_int("version", version)
    if os.path.exists(os.path.join(export_dir, str(version))):
        raise ValueError(
            f"version {version} already exists in {export_dir!r} and versions are never "
            "overwritten; pass another version, or version=None for the next one. "
            f"Received: version={version}"
        )
    return version


def export_saved_model(
    model,
    export_dir,
    *,
    version=None,
    class_names=None,
    preprocessing=None,
    top_k=5,
    fold_bn=True,
    precision="auto",
    image_size=None,
):
    """Export ``model`` for TF Serving as ``export_dir/<version>/``.

    Args:
        model: a classifier ``keras.Model`` (one image input, one ``(batch, classes)``
            output; a softmax is appended when the last layer is linear).
        export_dir: the model's base path for TF Serving (``--model_base_path``).
        version: positive integer; ``None`` takes the next one after the highest
            existing version (1 for an empty folder). An existing version is never
            overwritten.
        class_names: one name per class for the ``labels`` output. ``None``: the
            ImageNet names for 1000-class models when a class index is cached locally,
            else ``class_<i>`` (with a warning).
        preprocessing: ``"caffe"``, ``"tf"`` or ``"torch"``; ``None`` looks it up for
            models built by this package.
        top_k: how many classes ``serving_default`` returns (at most the class count).
        fold_bn: fold each BatchNormalization that follows a convolution into it
            (``keras_resnet.inference.fold_batch_norm``; outputs equal within float
            rounding). BN that follows no convolution (v2's pre-activation BN) stays;
            a subclassed model is exported unfolded, with a warning.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``: what the convolutions and
            matmuls compute in. ``"bf16"`` serves the model rebuilt under the
            ``mixed_bfloat16`` policy (same weights; inputs, outputs and the classifier
            with its softmax stay float32). ``"auto"`` picks ``"bf16"`` only when the
            exporting CPU has AMX / AVX-512 bf16, else ``"fp32"``
            (:func:`resolve_serving_precision`). The resolved value is recorded in
            ``assets/keras_resnet_export.json`` (``"precision"``).
        image_size: the input size, needed only for models built without a fixed one.

    Returns:
        The path of the new version folder (``saved_model.pb``, ``variables/``,
        ``assets/`` with ``class_names.txt`` and ``keras_resnet_export.json``).
    """
    fold_bn = _check_fold_bn(fold_bn)
    resolved_precision = resolve_serving_precision(precision)
    options = resolve_options(
        model,
        class_names=class_names,
        preprocessing=preprocessing,
        top_k=top_k,
        image_size=image_size,
    )
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ValueError(f"export_dir must be a folder. Received: export_dir={export_dir!r}")
    version = _free_version(export_dir, version)
    target = os.path.join(export_dir, str(version))
    served, facts = prepare_for_serving(model, fold_bn=fold_bn, precision=resolved_precision)
    facts = {"precision_requested": precision, **facts}

    os.makedirs(export_dir, exist_ok=True)
    staging = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_saved_model(served, options, staging, model_name=model.name, served=facts)
        if os.path.exists(target):  # another process took the version meanwhile
            raise ValueError(
                f"version {version} appeared in {export_dir!r} during this export and is "
                f"left as it is. Received: version={version}"
            )
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def resolve_saved_model_path(path):
    """A version folder as given, or the highest version inside a base path."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = list_versions(path)
    if versions:
        return os.path.join(path, str(versions[-1]))
    raise ValueError(
        "saved_model must be a SavedModel version folder (with saved_model.pb) or a base "
        f"path holding numbered versions. Received: saved_model={path!r}"
    )


# --------------------------------------------------------------------------- ONNX, TFLite


def _refuse_existing(path, name="path"):
    if os.path.exists(path):
        raise ValueError(
            f"{name} already exists and is never overwritten. Received: {name}={path!r}"
        )


def _write_atomically(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    folder, name = os.path.split(os.path.abspath(path))
    staging = os.path.join(folder, f".tmp-{name}-{os.getpid()}")
    try:
        with open(staging, "wb") as f:
            f.write(data)
        os.rename(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise


def export_onnx(
    model, path, *, class_names=None, preprocessing=None, image_size=None, opset=ONNX_OPSET
):
    """Export ``predict_pixels`` (preprocessing baked in) to an ONNX file via tf2onnx.

    Input ``pixels`` float32 ``[N, H, W, 3]`` in 0..255, output ``probabilities``. Class
    names, preprocessing and input size are stored in the file's ``metadata_props``.
    Returns ``path``.
    """
    options = resolve_options(
        model, class_names=class_names, preprocessing=preprocessing, image_size=image_size
    )
    path = os.fspath(path)
    _refuse_existing(path)
    try:
        import tf2onnx
    except ImportError as e:
        raise ImportError(
            "ONNX export needs tf2onnx (and onnxruntime to check the file): "
            "pip install tf2onnx onnxruntime, or this package's [dev] extra"
        ) from e

    _, predict_pixels, _ = build_serving_functions(model, options)
    spec = predict_pixels.input_signature
    proto, _ = tf2onnx.convert.from_function(predict_pixels, input_signature=spec, opset=opset)
    for key, value in (
        ("class_names", json.dumps(list(options.class_names))),
        ("preprocessing", options.preprocessing),
        ("image_size", json.dumps([options.height, options.width])),
        ("input_range", "RGB 0..255"),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    _write_atomically(path, proto.SerializeToString())
    return path


def _as_pixel_batch(images, height, width):
    """Images (uint8/float arrays of any size, or image file paths) -> float32 [N,H,W,3]."""
    import tensorflow as tf

    out = []
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                image = tf.io.decode_image(f.read(), channels=3, expand_animations=False)
        image = tf.convert_to_tensor(np.asarray(image))
        if image.shape.rank == 2:
            image = tf.stack([image] * 3, axis=-1)
        if image.shape.rank != 3 or image.shape[-1] not in (1, 3):
            raise ValueError(
                "representative_images must be RGB or grayscale images (H, W[, C]). "
                f"Received: an image of shape {tuple(image.shape)}"
            )
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.image.resize(tf.cast(image, tf.float32), [height, width], antialias=True)
        out.append(image.numpy())
    return np.stack(out).astype("float32")


def saved_model_metadata(path):
    """The ``keras_resnet_export.json`` asset of a SavedModel version this module wrote."""
    path = resolve_saved_model_path(path)
    meta_path = os.path.join(path, "assets", METADATA_ASSET)
    if not os.path.isfile(meta_path):
        raise ValueError(
            f"saved_model has no assets/{METADATA_ASSET}: it was not written by "
            f"keras_resnet.export. Received: saved_model={path!r}"
        )
    with open(meta_path, encoding="utf-8") as f:
        return json.load(f)


def export_tflite(
    model,
    path,
    *,
    quantize="none",
    representative_images=None,
    class_names=None,
    preprocessing=None,
    image_size=None,
):
    """Export ``predict_pixels`` (preprocessing baked in) to a TFLite flatbuffer.

    Args:
        model: a ``keras.Model`` (resolved as in :func:`export_saved_model`), or the
            path of a SavedModel written by :func:`export_saved_model`, converted as it is
            (``class_names``, ``preprocessing`` and ``image_size`` are then ignored).
        quantize: ``"none"`` (float32), ``"dynamic"`` (int8 weights, float activations)
            or ``"int8"`` (int8 weights and activations, calibrated on
            ``representative_images``; float32 input and output).
        representative_images: images for int8 calibration: arrays (any size, 0..255)
            or image file paths; resized to the input size like ``serving_default``.

    Returns ``path``. Run it with :func:`tflite_probabilities`, or
    ``tf.lite.Interpreter(...).get_signature_runner("predict_pixels")(pixels=...)``.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}"
        )
    if quantize == "int8" and (representative_images is None or len(representative_images) == 0):
        raise ValueError(
            "representative_images must hold calibration images for quantize='int8'. "
            f"Received: representative_images={representative_images!r}"
        )
    from_saved_model = isinstance(model, (str, os.PathLike))
    if from_saved_model:
        saved = resolve_saved_model_path(model)
        height, width = saved_model_metadata(saved)["image_size"]
    else:
        options = resolve_options(
            model, class_names=class_names, preprocessing=preprocessing, image_size=image_size
        )
        height, width = options.height, options.width
    path = os.fspath(path)
    _refuse_existing(path)
    calibration = None
    if quantize == "int8":
        calibration = _as_pixel_batch(representative_images, height, width)
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        if not from_saved_model:
            saved = os.path.join(scratch, "saved_model")
            _write_saved_model(model, options, saved, model_name=model.name)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved, signature_keys=[PIXELS_SIGNATURE]
        )
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        flatbuffer = converter.convert()
    _write_atomically(path, flatbuffer)
    return path


def tflite_probabilities(path, pixels):
    """Run a TFLite export on float32 pixels [N, H, W, 3] and return its probabilities."""
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to LiteRT
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    runner = interpreter.get_signature_runner(PIXELS_SIGNATURE)
    pixels = np.asarray(pixels, dtype="float32")
    # one image per call: the flatbuffer's batch dimension is fixed at 1 after conversion
    outputs = [runner(pixels=pixels[i : i + 1])["probabilities"] for i in range(len(pixels))]
    return np.concatenate(outputs)


def onnx_probabilities(path, pixels):
    """Run an ONNX export under onnxruntime on float32 pixels [N, H, W, 3]."""
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": np.asarray(pixels, dtype="float32")})[0]


# --------------------------------------------------------------------------- prediction


def _decode_error(message):
    """The informative line of a graph error raised while decoding one image."""
    if NOT_AN_IMAGE in message:
        return "not a decodable image" + NOT_AN_IMAGE.split("decodable image", 1)[1]
    boilerplate = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in message.splitlines()]
    detail = next((line for line in lines if line and not line.startswith(boilerplate)), message)
    return f"not a decodable image: {detail}"


class Predictor:
    """Top-k predictions for encoded image bytes, from a SavedModel or an in-memory model."""

    def __init__(self, serve, top_k):
        self._serve = serve
        self.top_k = top_k

    @classmethod
    def from_saved_model(cls, path, *, top_k=None):
        import tensorflow as tf

        path = resolve_saved_model_path(path)
        loaded = tf.saved_model.load(path)
        if SERVING_SIGNATURE not in loaded.signatures:
            raise ValueError(f"saved_model has no {SERVING_SIGNATURE!r} signature. Received: saved_model={path!r}")
        signature = loaded.signatures[SERVING_SIGNATURE]
        exported_k = int(signature.structured_outputs["scores"].shape[-1])
        if top_k is None:
            top_k = exported_k
        top_k = _check_positive_int("top_k", top_k)
        if top_k > exported_k:
            raise ValueError(
                f"top_k must be at most {exported_k}, the k this SavedModel was exported "
                f"with. Received: top_k={top_k}"
            )
        predictor = cls(lambda data: signature(image_bytes=data), top_k)
        predictor._loaded = loaded  # keep the restored variables alive
        return predictor

    @classmethod
    def from_model(cls, model, *, top_k=5, **kwargs):
        options = resolve_options(model, top_k=top_k, **kwargs)
        serve_image_bytes, _, _ = build_serving_functions(model, options)
        return cls(serve_image_bytes, options.top_k)

    def predict_bytes(self, data):
        """One image's encoded bytes -> list of (class, label, score), best first."""
        import tensorflow as tf

        out = self._serve(tf.constant([data], dtype=tf.string))
        classes = out["classes"].numpy()[0][: self.top_k]
        labels = out["labels"].numpy()[0][: self.top_k]
        scores = out["scores"].numpy()[0][: self.top_k]
        return [
            (int(c), label.decode("utf-8"), float(s)) for c, label, s in zip(classes, labels, scores)
        ]

    def predict_files(self, paths):
        """One result dict per file: ``{"file", "predictions"}`` or ``{"file", "error"}``."""
        import tensorflow as tf

        results = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                results.append({"file": path, "error": f"cannot read file: {e.strerror or e}"})
                continue
            try:
                top = self.predict_bytes(data)
            except tf.errors.InvalidArgumentError as e:
                results.append({"file": path, "error": _decode_error(e.message)})
                continue
            results.append(
                {
                    "file": path,
                    "predictions": [{"class": c, "label": label, "score": s} for c, label, s in top],
                }
            )
        return results


# --------------------------------------------------------------------------- CLI


def load_run(run_dir):
    """``(model, config)`` of a training run folder (``config.json`` and ``model.keras``)."""
    run_dir = os.fspath(run_dir)
    config_path = os.path.join(run_dir, "config.json")
    model_path = os.path.join(run_dir, "model.keras")
    for needed in (config_path, model_path):
        if not os.path.isfile(needed):
            raise ValueError(
                f"run must be a training run folder with config.json and model.keras; "
                f"{os.path.basename(needed)} is missing. Received: run={run_dir!r}"
            )
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    import keras

    import keras_resnet.models  # noqa: F401  registers the package's layers for loading

    model = keras.models.load_model(model_path, compile=False)
    return model, config


def _load_for_cli(args):
    """(model, name, export options dict, run config or None) for --model / --run."""
    if args.run:
        model, config = load_run(args.run)
        if args.model and args.model != config.get("model"):
            raise ValueError(
                f"--model {args.model} disagrees with the run's model {config.get('model')!r}. "
                f"Received: model={args.model!r}"
            )
        name = os.path.basename(os.path.normpath(args.run))
        options = {
            "class_names": config.get("class_names"),
            "preprocessing": config.get("preprocessing"),
            "image_size": config.get("image_size") if model.input_shape[1] is None else None,
        }
        return model, name, options, config
    if not args.model:
        raise ValueError("one of --model NAME or --run RUN_DIR is needed. Received: model=None")
    from keras_resnet.models import get_model, model_info

    info = model_info(args.model)
    weights = None if args.weights in (None, "none") else args.weights
    model = get_model(args.model, weights=weights)
    return model, args.model, {"preprocessing": info["preprocessing"]}, None


def _sample_images(args, config, image_size, count):
    """``(calibration, check, description)`` image lists for ONNX / TFLite exports.

    ``--calibration-images`` serve for both; else a run's data: calibration from its
    training split, the check on its held-out test split; else (None, None, None).
    """
    if args.calibration_images:
        images = list(args.calibration_images)
        return images, images, f"{len(images)} given images"
    if config is None:
        return None, None, None
    from keras_resnet.data import load_data

    data = load_data(
        config.get("dataset", "digits"),
        data_dir=config.get("data_dir"),
        tfds_data_dir=config.get("tfds_data_dir"),
        download=False,
    )
    calibration, _ = data.raw_images("train", count, image_size=image_size)
    check, _ = data.raw_images("test", count, image_size=image_size)
    return list(calibration), list(check), f"{len(check)} test images of {data.name}"


def _report_agreement(label, reference, candidate):
    diff = float(np.max(np.abs(reference - candidate)))
    agree = float(np.mean(np.argmax(reference, -1) == np.argmax(candidate, -1)))
    print(f"{label}: max |difference| to Keras {diff:.2e}, top-1 agreement {agree:.1%} on {len(reference)} images")


def _export_command(argv):
    parser = argparse.ArgumentParser(
        prog="keras-resnet export",
        description="Export a model as a TF Serving SavedModel version, ONNX or TFLite file.",
    )
    parser.add_argument("--model", help="model name (see 'keras-resnet list')")
    parser.add_argument("--weights", default="imagenet", help="PATH | imagenet | none (with --model)")
    parser.add_argument("--run", help="training run folder (config.json, model.keras)")
    parser.add_argument("--export-dir", help=f"base folder (default {DEFAULT_EXPORT_ROOT}/<name>/)")
    parser.add_argument("--version", type=int, help="SavedModel version (default: next free)")
    parser.add_argument("--format", default="saved_model", choices=FORMATS)
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS, help="TFLite only")
    parser.add_argument("--top-k", type=int, default=5, help="classes serving_default returns")
    parser.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                        help="fold BatchNormalization into the convolutions (default: fold)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="SavedModel compute precision (default auto: bf16 on CPUs with "
                             "AMX / AVX-512 bf16, else fp32)")
    parser.add_argument("--calibration-images", nargs="+", metavar="IMAGE",
                        help="images for int8 calibration (default: the run's training data)")
    parser.add_argument("--num-calibration", type=int, default=100,
                        help="calibration images taken from the run's data")
    args = parser.parse_args(argv)
    if args.version is not None and args.format != "saved_model":
        raise ValueError(f"--version applies to --format saved_model only. Received: format={args.format!r}")
    if args.quantize != "none" and args.format != "tflite":
        raise ValueError(f"--quantize applies to --format tflite only. Received: format={args.format!r}")
    if args.precision is not None and args.format != "saved_model":
        raise ValueError(
            "--precision applies to --format saved_model only (ONNX and TFLite files are "
            f"float32 or --quantize'd). Received: format={args.format!r}"
        )

    if not (args.model or args.run):
        raise ValueError("one of --model NAME or --run RUN_DIR is needed. Received: neither")
    if args.quantize == "int8" and not (args.calibration_images or args.run):
        raise ValueError(
            "--quantize int8 needs calibration images: --calibration-images IMAGE... or "
            "--run RUN_DIR (its training data). Received: neither"
        )
    name = os.path.basename(os.path.normpath(args.run)) if args.run else args.model
    export_dir = args.export_dir or os.path.join(DEFAULT_EXPORT_ROOT, name)
    suffix = "" if args.quantize == "none" else f".{args.quantize}"
    target = os.path.join(export_dir, f"{name}{suffix}.{args.format}")
    # refuse before loading anything: an existing version or file is never overwritten
    if args.format == "saved_model":
        _free_version(export_dir, args.version)
    else:
        _refuse_existing(target)

    model, _, options, config = _load_for_cli(args)
    if args.format == "saved_model":
        path = export_saved_model(
            model, export_dir, version=args.version, top_k=args.top_k, fold_bn=args.fold_bn,
            precision=args.precision or "auto", **options
        )
        meta = saved_model_metadata(path)
        print(
            f"SavedModel written to {path} (signatures: {SERVING_SIGNATURE}, {PIXELS_SIGNATURE}; "
            f"precision {meta['precision']}; BatchNormalization layers folded: "
            f"{meta['batch_norm_folded']}, kept: {meta['batch_norm_kept']})"
        )
        return 0

    reference = model
    model, _ = prepare_for_serving(model, fold_bn=args.fold_bn, precision="fp32")
    resolved = resolve_options(model, **options)
    images, check, source = _sample_images(args, config, resolved.height, args.num_calibration)
    if args.format == "onnx":
        path = export_onnx(model, target, **options)
        print(f"ONNX written to {path}")
        runner = onnx_probabilities
    else:
        path = export_tflite(
            model,
            target,
            quantize=args.quantize,
            representative_images=images,
            **options,
        )
        print(f"TFLite ({args.quantize}) written to {path}")
        runner = tflite_probabilities
    # check the file with its own runtime against the Keras model
    if check is None:
        rng = np.random.default_rng(0)
        pixels = rng.uniform(0, 255, (8, resolved.height, resolved.width, 3)).astype("float32")
        source = "8 random images"
    else:
        pixels = _as_pixel_batch(check, resolved.height, resolved.width)
    _, predict_pixels, _ = build_serving_functions(reference, resolved)  # the unfolded model
    reference = predict_pixels(pixels)["probabilities"].numpy()
    try:
        candidate = runner(path, pixels)
    except ImportError as e:  # onnxruntime is optional
        print(f"not checked ({e})")
        return 0
    _report_agreement(f"{os.path.basename(path)} ({source})", reference, candidate)
    return 0


def _predict_command(argv):
    parser = argparse.ArgumentParser(
        prog="keras-resnet predict", description="Top-k labels for image files."
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--saved-model", help="SavedModel version folder (or base path: newest version)")
    parser.add_argument("--model", help="model name, predicted in-process")
    parser.add_argument("--weights", default="imagenet", help="PATH | imagenet | none (with --model)")
    parser.add_argument("--run", help="training run folder, predicted in-process")
    parser.add_argument("--top-k", type=int, default=None, help="default: 5 (or what was exported)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.saved_model, args.model or None, args.run)) == 0:
        raise ValueError("one of --saved-model, --model or --run is needed. Received: none of them")
    if args.saved_model and (args.model or args.run):
        raise ValueError("--saved-model cannot be combined with --model or --run. Received: both")

    if args.saved_model:
        predictor = Predictor.from_saved_model(args.saved_model, top_k=args.top_k)
    else:
        model, _, options, _ = _load_for_cli(args)
        predictor = Predictor.from_model(model, top_k=args.top_k or 5, **options)
    results = predictor.predict_files(args.images)

    if args.json:
        print(json.dumps(results, indent=2))
    for result in results:
        if "error" in result:
            print(f"{result['file']}: error: {result['error']}", file=sys.stderr)
        elif not args.json:
            top = ", ".join(f"{p['label']} ({p['score']:.4f})" for p in result["predictions"])
            print(f"{result['file']}: {top}")
    return 1 if any("error" in r for r in results) else 0


def cli_main(command, argv):
    """``keras-resnet export ...`` and ``keras-resnet predict ...``; returns the exit status."""
    commands = {"export": _export_command, "predict": _predict_command}
    if command not in commands:
        raise ValueError(f"command must be one of {tuple(commands)}. Received: command={command!r}")
    try:
        return commands[command](list(argv))
    except (ValueError, NotImplementedError, ImportError) as e:
        print(f"keras-resnet {command}: error: {e}", file=sys.stderr)
        return 1
