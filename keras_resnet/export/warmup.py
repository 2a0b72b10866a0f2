"""TF Serving's warm-up file: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these requests when it loads a version, before the version takes
traffic, so the first user request does not pay for graph initialisation. The file is a
TFRecord of ``tensorflow.serving.PredictionLog`` protos, written with the
``tensorflow-serving-api`` package's own classes (``pip install tensorflow-serving-api``,
or this package's ``[serving]`` extra). Without that package no warm-up file is written
(with a warning); the export is otherwise the same.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_resnet.export.options import PIXELS_SIGNATURE, SERVING_SIGNATURE, ServingOptions

WARMUP_FOLDER = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_REQUESTS = 3  # what warmup_inputs gives
PHOTO_SIZE = (480, 640)  # a typical photo's height and width, for the decode/resize path


def serving_api_available() -> bool:
    """True when ``tensorflow_serving.apis`` (the tensorflow-serving-api package) imports."""
    try:
        from tensorflow_serving.apis import prediction_log_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def _sample_images(options):
    """A smooth test card as a JPEG at photo size and a PNG at the input size."""
    import tensorflow as tf

    def card(height, width):
        y, x = np.mgrid[0:height, 0:width]
        image = np.stack([255 * x / width, 255 * y / height, 128 + 0 * x], axis=-1)
        return tf.constant(image.astype("uint8"))

    jpeg = tf.io.encode_jpeg(card(*PHOTO_SIZE), quality=90).numpy()
    png = tf.io.encode_png(card(options.height, options.width)).numpy()
    return jpeg, png


def warmup_inputs(options: ServingOptions) -> list:
    """``(signature name, {input name: numpy array})`` for each warm-up request: image
    bytes at batch 1 and 2 (a JPEG photo and a PNG at the input size), and pixels."""
    jpeg, png = _sample_images(options)
    pixels = np.full((1, options.height, options.width, 3), 127.0, dtype="float32")
    return [
        (SERVING_SIGNATURE, {"image_bytes": np.array([jpeg], dtype=object)}),
        (SERVING_SIGNATURE, {"image_bytes": np.array([jpeg, png], dtype=object)}),
        (PIXELS_SIGNATURE, {"pixels": pixels}),
    ]


def write_warmup_requests(version_dir, options: ServingOptions, model_name: str) -> int:
    """Write the warm-up file into ``version_dir``; returns how many requests it holds."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    folder = os.path.join(version_dir, WARMUP_FOLDER)
    os.makedirs(folder, exist_ok=True)
    requests = warmup_inputs(options)
    with tf.io.TFRecordWriter(os.path.join(folder, WARMUP_FILE)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


def plan_warmup(warmup) -> bool:
    """Whether an export writes the warm-up file: ``warmup`` (a bool) and the package."""
    from keras_resnet.utils import fail

    if not isinstance(warmup, bool):
        fail("warmup", warmup, "True or False")
    if warmup and not serving_api_available():
        warnings.warn(
            "tensorflow-serving-api is not installed, so the export has no "
            f"{WARMUP_FOLDER}/{WARMUP_FILE}: TF Serving's first request to this version pays "
            "for graph initialisation. pip install tensorflow-serving-api (the version of "
            "your TensorFlow) to write it.",
            stacklevel=3,
        )
        return False
    return warmup


def read_warmup_requests(version_dir) -> list:
    """The warm-up file's requests as ``(signature name, {input: tf.Tensor})``, parsed with
    tensorflow-serving-api's ``PredictionLog``."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    path = os.path.join(version_dir, WARMUP_FOLDER, WARMUP_FILE)
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        out.append((request.model_spec.signature_name, inputs))
    return out
