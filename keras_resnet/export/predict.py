"""Top-k predictions for image files, from a SavedModel or an in-memory model."""

from __future__ import annotations

from keras_resnet.export.headers import DEFAULT_MAX_IMAGE_PIXELS, NOT_AN_IMAGE
from keras_resnet.export.options import SERVING_SIGNATURE, resolve_options


def _decode_error(message):
    """The informative line of a graph error raised while checking or decoding one image."""
    if NOT_AN_IMAGE in message:
        return "not a decodable image" + NOT_AN_IMAGE.split("decodable image", 1)[1]
    ours = [line for line in message.splitlines() if "image_bytes[" in line and "] is " in line]
    if ours:  # "assertion failed: [image_bytes[0] is 20000x20000 pixels (...), over ...]"
        return "image is " + ours[0].split("] is ", 1)[1].rstrip("]").strip()
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
    def from_saved_model(cls, path, *, top_k=None,
                         max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS) -> "Predictor":
        """Predict with a SavedModel's ``serving_default``. Each image's header is first
        checked against ``max_image_pixels`` here too (None: only the export's limit),
        with the same TF function the export puts in its graph."""
        import tensorflow as tf

        from keras_resnet.export.options import check_max_image_pixels
        from keras_resnet.export.saved_model import resolve_saved_model_path
        from keras_resnet.export.signatures import header_checker
        from keras_resnet.utils import check_positive_int

        max_image_pixels = check_max_image_pixels(max_image_pixels)

        path = resolve_saved_model_path(path)
        loaded = tf.saved_model.load(path)
        if SERVING_SIGNATURE not in loaded.signatures:
            raise ValueError(f"saved_model has no {SERVING_SIGNATURE!r} signature. "
                             f"Received: saved_model={path!r}")
        signature = loaded.signatures[SERVING_SIGNATURE]
        exported_k = int(signature.structured_outputs["scores"].shape[-1])
        top_k = check_positive_int("top_k", exported_k if top_k is None else top_k)
        if top_k > exported_k:
            raise ValueError(
                f"top_k must be at most {exported_k}, the k this SavedModel was exported "
                f"with. Received: top_k={top_k}"
            )
        check = header_checker(max_image_pixels)

        def serve(data):
            check(data)
            return signature(image_bytes=data)

        predictor = cls(serve, top_k)
        predictor._loaded = loaded  # keep the restored variables alive
        return predictor

    @classmethod
    def from_model(cls, model, *, top_k=5, **kwargs) -> "Predictor":
        """Predict in-process; ``kwargs`` as :func:`~keras_resnet.export.resolve_options`
        (``max_image_pixels``, ``crop_fraction``, ``class_names``, ...)."""
        from keras_resnet.export.signatures import build_serving_functions

        options = resolve_options(model, top_k=top_k, **kwargs)
        serve_image_bytes, _, _ = build_serving_functions(model, options)
        return cls(serve_image_bytes, options.top_k)

    def predict_bytes(self, data: bytes) -> list:
        """One image's encoded bytes -> list of (class, label, score), best first."""
        import tensorflow as tf

        out = self._serve(tf.constant([data], dtype=tf.string))
        classes = out["classes"].numpy()[0][: self.top_k]
        labels = out["labels"].numpy()[0][: self.top_k]
        scores = out["scores"].numpy()[0][: self.top_k]
        return [
            (int(c), label.decode("utf-8"), float(s)) for c, label, s in zip(classes, labels, scores)
        ]

    def predict_files(self, paths) -> list:
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
