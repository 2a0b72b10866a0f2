"""The two serving functions, as ``tf.function`` objects over one model.

- ``serving_default``: ``image_bytes`` (``tf.string [None]``) -> check, decode, resize,
  preprocess, predict -> ``classes``, ``scores``, ``labels`` (top k).
- ``predict_pixels``: ``pixels`` (``float32 [None, H, W, 3]``, RGB 0..255 at the input
  size) -> ``probabilities``.
"""

from __future__ import annotations

import os

import numpy as np

from keras_resnet.export.headers import NOT_AN_IMAGE, check_image_header
from keras_resnet.export.options import ServingOptions

def decode_image(data, index, options: ServingOptions):
    """One image's bytes -> float32 ``[height, width, 3]``; ``index`` names it in errors.

    The header is checked first (a known format, at most ``options.max_image_pixels``);
    only then is the image decoded and put through ``options.transform``.
    """
    import tensorflow as tf

    from keras_resnet.data.transforms import apply_eval  # the pipeline's evaluation, the same code

    checks = check_image_header(data, index, options.max_image_pixels)
    with tf.control_dependencies(checks):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    # An image already at the input size passes through unchanged (scale 1).
    return apply_eval(image, options.transform, options.height, options.width)


def header_checker(max_pixels):
    """A ``tf.function`` that raises ``InvalidArgumentError`` for a batch of image bytes
    when one is not an image or is over ``max_pixels`` by its header; decodes nothing.
    ``keras-resnet predict`` runs it before a SavedModel's ``serving_default``."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def check(image_bytes):
        def one(item):
            with tf.control_dependencies(check_image_header(item[0], item[1], max_pixels)):
                return tf.constant(True)

        indices = tf.range(tf.shape(image_bytes)[0])
        return tf.map_fn(one, (image_bytes, indices), fn_output_signature=tf.bool)

    return check


def build_serving_functions(model, options: ServingOptions):
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

    pixels_spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")

    @tf.function(input_signature=[pixels_spec])
    def predict_pixels(pixels):
        return {"probabilities": probabilities(pixels)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        indices = tf.range(tf.shape(image_bytes)[0])
        images = tf.map_fn(
            lambda item: decode_image(item[0], item[1], options),
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


def as_pixel_batch(images, height: int, width: int) -> np.ndarray:
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
