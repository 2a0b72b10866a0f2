"""ONNX and TFLite files of ``predict_pixels`` (preprocessing baked in), and their runners.

Both take ``pixels`` (float32 ``[N, H, W, 3]``, RGB 0..255 at the input size) and give
``probabilities``, so nobody has to re-implement the preprocessing.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import numpy as np

from keras_resnet.errors import require
from keras_resnet.export.options import PIXELS_SIGNATURE, resolve_options

QUANTIZATIONS = ("none", "dynamic", "int8")
ONNX_OPSET = 17


def refuse_existing(path, name="path"):
    if os.path.exists(path):
        raise ValueError(
            f"{name} already exists and is never overwritten. Received: {name}={path!r}"
        )


def export_onnx(model, path, *, class_names=None, preprocessing=None, image_size=None,
                opset=ONNX_OPSET) -> str:
    """Export ``predict_pixels`` (preprocessing baked in) to an ONNX file via tf2onnx.

    Input ``pixels`` float32 ``[N, H, W, 3]`` in 0..255, output ``probabilities``. Class
    names, preprocessing and input size are stored in the file's ``metadata_props``.
    Returns ``path``.
    """
    from keras_resnet.export.signatures import build_serving_functions
    from keras_resnet.utils import atomic_write

    options = resolve_options(
        model, class_names=class_names, preprocessing=preprocessing, image_size=image_size
    )
    path = os.fspath(path)
    refuse_existing(path)
    tf2onnx = require("tf2onnx", "ONNX export", install="pip install tf2onnx onnxruntime")

    _, predict_pixels, _ = build_serving_functions(model, options)
    spec = predict_pixels.input_signature
    proto, _ = tf2onnx.convert.from_function(predict_pixels, input_signature=spec, opset=opset)
    fold_pool_padding(proto.graph)
    for key, value in (
        ("class_names", json.dumps(list(options.class_names))),
        ("preprocessing", options.preprocessing if isinstance(options.preprocessing, str)
         else json.dumps(options.preprocessing)),
        ("image_size", json.dumps([options.height, options.width])),
        ("input_range", "RGB 0..255"),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write(path, proto.SerializeToString())
    return path


def fold_pool_padding(graph) -> int:
    """Fold each zero ``Pad`` between a ``Relu`` and a ``MaxPool`` into the pool's ``pads``, in place.

    The stem's ``pool1_pad`` (ZeroPadding2D) + ``pool1_pool`` (MaxPooling2D), which
    keras.applications' layout needs, reach ONNX as Relu -> Pad -> MaxPool. A MaxPool's own
    padding is never chosen, where a zero pad value is; the two agree whenever the pooled
    values are non-negative, which a Relu guarantees. In an int8 file the separate Pad
    costs more than the pool: ONNX Runtime dequantizes the stem's output, pads it in float
    and quantizes it again (BENCHMARKS.md, the int8 serving rows).
    Pads whose input is not a Relu output (pre-activation stems pool the conv's output
    directly) stay. Returns the number of Pads folded.
    """
    import onnx
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for pool in graph.node:
        if pool.op_type != "MaxPool" or not pool.input:
            continue
        pad = producers.get(pool.input[0])
        if pad is None or pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        if len(consumers.get(pad.output[0], [])) != 1:
            continue
        source = producers.get(pad.input[0])
        if source is None or source.op_type != "Relu":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pool.attribute}
        pad_attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pad.attribute}
        if pad_attrs.get("mode", b"constant") not in (b"constant", "constant"):
            continue
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or attrs.get("ceil_mode", 0):
            continue
        amounts = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        if amounts is None or value is None or np.any(value != 0) or len(pad.input) > 3:
            continue
        rank = len(amounts) // 2
        begin, end = amounts[:rank], amounts[rank:]
        # NCHW: nothing on the batch and channel axes, nothing negative (a crop)
        if rank < 3 or np.any(begin[:2]) or np.any(end[:2]) or np.any(amounts < 0):
            continue
        kernel = attrs.get("kernel_shape", [])
        spatial = [int(v) for v in list(begin[2:]) + list(end[2:])]
        if any(p >= k for p, k in zip(spatial, list(kernel) * 2)):
            continue  # a window of pad alone: MaxPool's -inf would differ from the zero
        old = attrs.get("pads", [0] * len(spatial))
        pads = [int(a) + b for a, b in zip(old, spatial)]
        for attribute in list(pool.attribute):
            if attribute.name == "pads":
                pool.attribute.remove(attribute)
        pool.attribute.append(onnx.helper.make_attribute("pads", pads))
        pool.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    return len(folded)


def onnx_probabilities(path, pixels) -> np.ndarray:
    """Run an ONNX export under onnxruntime on float32 pixels [N, H, W, 3]."""
    onnxruntime = require("onnxruntime", "running an ONNX file")

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's graph warnings are not the user's
    session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": np.asarray(pixels, dtype="float32")})[0]


def _check_quantize(quantize, representative_images):
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}"
        )
    if quantize == "int8" and (representative_images is None or len(representative_images) == 0):
        raise ValueError(
            "representative_images must hold calibration images for quantize='int8'. "
            f"Received: representative_images={representative_images!r}"
        )


def _convert(saved, quantize, calibration):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[PIXELS_SIGNATURE])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def export_tflite(model, path, *, quantize="none", representative_images=None,
                  class_names=None, preprocessing=None, image_size=None) -> str:
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
    from keras_resnet.export.saved_model import (
        resolve_saved_model_path,
        saved_model_metadata,
        write_saved_model,
    )
    from keras_resnet.export.signatures import as_pixel_batch
    from keras_resnet.utils import atomic_write

    _check_quantize(quantize, representative_images)
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
    refuse_existing(path)
    calibration = None
    if quantize == "int8":
        calibration = as_pixel_batch(representative_images, height, width)
    with tempfile.TemporaryDirectory() as scratch:
        if not from_saved_model:
            saved = os.path.join(scratch, "saved_model")
            write_saved_model(model, options, saved, model_name=model.name)
        flatbuffer = _convert(saved, quantize, calibration)
    atomic_write(path, flatbuffer)
    return path


def tflite_probabilities(path, pixels) -> np.ndarray:
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
