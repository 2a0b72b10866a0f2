"""SavedModel versions in TF Serving's layout, written atomically and never overwritten.

A version is written into ``export_dir/.tmp-<version>-<pid>``, every file fsynced, and
renamed at the end. TF Serving only loads all-digit folder names, so an interrupted
export never shows up as a version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from keras_resnet.export.headers import DEFAULT_MAX_IMAGE_PIXELS
from keras_resnet.export.options import (
    CLASS_NAMES_ASSET,
    METADATA_ASSET,
    PIXELS_SIGNATURE,
    SERVING_SIGNATURE,
    ServingOptions,
    resolve_options,
)
from keras_resnet.utils import check_positive_int, normalize_precision, short_precision

SERVING_PRECISIONS = ("auto", "fp32", "bf16")  # what a SavedModel computes in (utils spells bf16 mixed_bfloat16)
# Where `keras-resnet export` and `keras-resnet train` put SavedModels: <root>/<name>/<version>/
DEFAULT_EXPORT_ROOT = "saved_models"


def list_versions(export_dir) -> list[int]:
    """Versions under ``export_dir`` as TF Serving sees them (all-digit folders), ascending."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(export_dir)
        if name.isascii() and name.isdigit() and os.path.isdir(os.path.join(export_dir, name))
    )


def free_version(export_dir, version) -> int:
    """``version`` checked to be unused in ``export_dir``; None -> the next free one."""
    if version is None:
        return (list_versions(export_dir) or [0])[-1] + 1
    version = check_positive_int("version", version)
    if os.path.exists(os.path.join(export_dir, str(version))):
        raise ValueError(
            f"version {version} already exists in {export_dir!r} and versions are never "
            "overwritten; pass another version, or version=None for the next one. "
            f"Received: version={version}"
        )
    return version


def resolve_serving_precision(precision: str = "auto") -> str:
    """The compute precision a SavedModel serves in: ``"fp32"`` or ``"bf16"``.

    Accepts the package's precision vocabulary (``"bf16"`` or ``"mixed_bfloat16"``,
    ``"fp32"`` or ``"float32"``, ``"auto"``). ``"auto"`` gives ``"bf16"`` only on CPUs with
    AMX or AVX-512 bf16 (:func:`keras_resnet.hardware.cpu_has_fast_bf16`, checked on the
    exporting machine), where bf16 convolutions are faster than fp32; ``"fp32"``
    elsewhere, where a bf16 export served slower (BENCHMARKS.md, "Serving (exported
    SavedModel)", ``benchmarks/serving.py``).
    """
    canonical = normalize_precision(precision, allowed=("auto", "fp32", "mixed_bfloat16"))
    if canonical != "auto":
        return short_precision(canonical)
    from keras_resnet import hardware

    return "bf16" if hardware.cpu_has_fast_bf16() else "fp32"


def _fsync_tree(root):
    """fsync every file and folder under ``root`` (before the rename that publishes it)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_saved_model(model, options: ServingOptions, path, *, model_name, served=None):
    """Write a SavedModel with both signatures and the assets to ``path``."""
    import tensorflow as tf

    from keras_resnet.export.signatures import build_serving_functions

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


def _publish(export_dir, version, write):
    """Run ``write(staging)`` and rename the staging folder to ``export_dir/version``."""
    target = os.path.join(export_dir, str(version))
    os.makedirs(export_dir, exist_ok=True)
    staging = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write(staging)
        _fsync_tree(staging)
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


def export_saved_model(
    model: Any,
    export_dir: str,
    *,
    version: int | None = None,
    class_names: list | None = None,
    preprocessing: str | dict | None = None,
    top_k: int = 5,
    fold_bn: bool = True,
    precision: str = "auto",
    image_size: int | None = None,
    crop_fraction: float | None = None,
    interpolation: str | None = None,
    eval_transform: Any = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    warmup: bool = True,
) -> str:
    """Export ``model`` for TF Serving as ``export_dir/<version>/``.

    Args:
        model: a classifier ``keras.Model`` (one image input, one ``(batch, classes)``
            output; a softmax is appended when the last layer is linear).
        export_dir: the model's base path for TF Serving (``--model_base_path``).
        version: positive integer; ``None`` takes the next one after the highest
            existing version (1 for an empty folder). Never overwritten.
        class_names: one name per class for ``labels``. ``None``: the ImageNet names for
            1000-class models when a class index is cached locally, else ``class_<i>``.
        preprocessing: ``"caffe"``, ``"tf"``, ``"torch"``, ``"kinetics"`` or a per-channel
            ``{"mean": [r, g, b], "std": [r, g, b]}`` on [0, 1] (torchvision's ``Normalize``);
            ``None`` takes a published set's own (``model.weight_set``), else looks it up for
            models built by this package (:func:`~keras_resnet.export.options.model_preprocessing`).
        top_k: how many classes ``serving_default`` returns (at most the class count).
        fold_bn: fold each BatchNormalization that follows a convolution into it
            (:func:`keras_resnet.inference.prepare_for_serving`).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (``"mixed_bfloat16"``): what the
            convolutions compute in; ``"auto"`` picks bf16 only on CPUs with AMX /
            AVX-512 bf16 (:func:`resolve_serving_precision`). Recorded in the metadata.
        image_size: the input size, needed only for models built without a fixed one.
        crop_fraction: with ``interpolation``, or a whole ``eval_transform``, how
            ``serving_default`` turns an image of any size into the input
            (:class:`~keras_resnet.export.EvalTransform`; default: the whole image, bilinear).
        interpolation: the resize method (see ``crop_fraction``).
        eval_transform: see ``crop_fraction``.
        max_image_pixels: ``serving_default`` refuses an image whose header gives more
            pixels (``InvalidArgumentError`` naming its index and size), before decoding
            it. Default 50 megapixels; ``None`` for no limit.
        warmup: write ``assets.extra/tf_serving_warmup_requests`` (needs the
            tensorflow-serving-api package; skipped with a warning without it).

    Returns:
        The path of the new version folder (``saved_model.pb``, ``variables/``,
        ``assets/`` with ``class_names.txt`` and ``keras_resnet_export.json``,
        ``assets.extra/`` with the warm-up requests).
    """
    from keras_resnet.export.warmup import WARMUP_REQUESTS, plan_warmup, write_warmup_requests
    from keras_resnet.inference import check_fold_bn, prepare_for_serving

    fold_bn = check_fold_bn(fold_bn)
    resolved_precision = resolve_serving_precision(precision)
    warmup = plan_warmup(warmup)
    options = resolve_options(
        model, class_names=class_names, preprocessing=preprocessing, top_k=top_k,
        image_size=image_size, crop_fraction=crop_fraction, interpolation=interpolation,
        eval_transform=eval_transform, max_image_pixels=max_image_pixels)
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ValueError(f"export_dir must be a folder. Received: export_dir={export_dir!r}")
    version = free_version(export_dir, version)
    served, facts = prepare_for_serving(model, fold_bn=fold_bn, precision=resolved_precision)
    served_name = os.path.basename(os.path.abspath(export_dir))
    facts = {"precision_requested": precision, **facts, "warmup_requests": 0}

    def write(staging):
        if warmup:
            facts["warmup_requests"] = WARMUP_REQUESTS
        write_saved_model(served, options, staging, model_name=model.name, served=facts)
        if warmup:
            write_warmup_requests(staging, options, served_name)

    return _publish(export_dir, version, write)


def resolve_saved_model_path(path) -> str:
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


def saved_model_metadata(path) -> dict:
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
