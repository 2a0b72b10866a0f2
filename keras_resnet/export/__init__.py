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
outputs and classifier (:func:`keras_resnet.inference.prepare_for_serving`);
``assets/keras_resnet_export.json`` records which.

``serving_default`` reads each image's size from its header and refuses one over
``max_image_pixels`` (default 50 megapixels) before decoding it, then applies the
:class:`EvalTransform` (center crop fraction, interpolation). Each version folder has
TF Serving's warm-up file, ``assets.extra/tf_serving_warmup_requests``.

Modules: :mod:`.options` (what an export bakes in), :mod:`.headers` (image sizes from
headers), :mod:`.transform` (the eval transform), :mod:`.signatures` (the serving
functions), :mod:`.saved_model` (versions, atomic writes), :mod:`.warmup` (TF Serving's
warm-up requests), :mod:`.lite` (ONNX, TFLite), :mod:`.quantize` (ONNX int8 QDQ, int8 runners), :mod:`.predict` (top-k for files),
:mod:`.cli` (the commands). Nothing here imports
TensorFlow at import time.
"""

from keras_resnet.export.headers import DEFAULT_MAX_IMAGE_PIXELS, NOT_AN_IMAGE
from keras_resnet.export.lite import (
    ONNX_OPSET,
    QUANTIZATIONS,
    export_onnx,
    export_tflite,
    onnx_probabilities,
    tflite_probabilities,
)
from keras_resnet.export.options import (
    CLASS_NAMES_ASSET,
    FORMATS,
    METADATA_ASSET,
    PIXELS_SIGNATURE,
    SERVING_SIGNATURE,
    ServingOptions,
    cached_imagenet_class_names,
    model_preprocessing,
    resolve_options,
)
from keras_resnet.export.predict import Predictor
from keras_resnet.export.saved_model import (
    DEFAULT_EXPORT_ROOT,
    SERVING_PRECISIONS,
    export_saved_model,
    list_versions,
    resolve_saved_model_path,
    resolve_serving_precision,
    saved_model_metadata,
)
from keras_resnet.export.signatures import build_serving_functions, header_checker
from keras_resnet.export.transform import EvalTransform
from keras_resnet.export.warmup import WARMUP_FILE, read_warmup_requests
from keras_resnet.utils import lazy_attributes

# keras_resnet.inference imports Keras: load it only when asked for
__getattr__ = lazy_attributes(__name__, {"prepare_for_serving": "keras_resnet.inference"})


__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS", "EvalTransform", "WARMUP_FILE", "header_checker",
    "model_preprocessing", "read_warmup_requests", "CLASS_NAMES_ASSET", "DEFAULT_EXPORT_ROOT", "FORMATS", "METADATA_ASSET", "NOT_AN_IMAGE",
    "ONNX_OPSET", "PIXELS_SIGNATURE", "Predictor", "SERVING_PRECISIONS", "QUANTIZATIONS",
    "SERVING_SIGNATURE", "ServingOptions", "build_serving_functions",
    "cached_imagenet_class_names", "export_onnx", "export_saved_model",
    "export_tflite", "list_versions", "onnx_probabilities", "prepare_for_serving",
    "resolve_options", "resolve_saved_model_path", "resolve_serving_precision",
    "saved_model_metadata", "tflite_probabilities",
]
