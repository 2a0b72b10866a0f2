"""int8 CPU serving: ONNX Runtime static quantization (QDQ) and runners for int8 files.

Two int8 files serve a model past the float roofline on CPUs:

- **TFLite full-integer** (:func:`keras_resnet.export.export_tflite` with
  ``quantize="int8"``): int8 weights (per channel) and activations (per tensor), calibrated
  on real images; run by the TFLite interpreter, whose default XNNPACK delegate has int8
  kernels for x86 (AVX2 and up) and Arm.
- **ONNX QDQ** (:func:`quantize_onnx`): the float ONNX export with QuantizeLinear /
  DequantizeLinear pairs around every convolution and matmul, int8 weights per channel,
  activations calibrated (min/max) on real images; ONNX Runtime fuses the pairs into its
  int8 kernels (QLinearConv / MatMulInteger).

Both keep the export's interface: float32 pixels ``[N, H, W, 3]`` in 0..255 in,
``probabilities`` out, preprocessing inside. :class:`TFLiteRunner` and
:class:`OnnxRunner` run either file at any batch size.
"""

from __future__ import annotations

import os
import platform
import tempfile
import warnings
from typing import Iterable

import numpy as np

from keras_resnet.utils import atomic_path, check_choice, check_positive_int, fail

PIXELS, PROBABILITIES = "pixels", "probabilities"


def _calibration_reader(pixels: np.ndarray, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Batches of real images, in order, once."""

        def __init__(self):
            self._batches = iter([pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)])

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {PIXELS: batch}

    return Reader()


def _check_pixels(argument: str, pixels) -> np.ndarray:
    pixels = np.asarray(pixels, dtype="float32")
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or len(pixels) == 0:
        fail(argument, f"an array of shape {pixels.shape}", "float32 pixels [N, H, W, 3] with N >= 1")
    return pixels


def quantize_onnx(float_path: str | os.PathLike, int8_path: str | os.PathLike,
                  calibration_pixels: Iterable, *, per_channel: bool = True,
                  reduce_range: bool | None = None, activations: str = "auto",
                  batch_size: int = 8) -> str:
    """Write an int8 QDQ copy of the float ONNX export at ``float_path`` to ``int8_path``.

    ``calibration_pixels``: real images as float32 pixels ``[N, H, W, 3]`` (0..255) at the
    file's input size, the range the activations are calibrated on (min/max). Weights are
    int8 per output channel; activations 8-bit per tensor: ``activations`` "uint8", "int8",
    or "auto" (uint8 on x86, whose int8 kernels multiply u8 x s8; int8 elsewhere).
    ``reduce_range`` (7-bit weights) defaults to True on x86 CPUs without VNNI, whose
    u8 x s8 instructions can saturate with full-range weights (ONNX Runtime's
    quantization guide). Returns ``int8_path``.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from keras_resnet.hardware import cpu_flags

    float_path, int8_path = os.fspath(float_path), os.fspath(int8_path)
    if not os.path.isfile(float_path):
        fail("float_path", float_path, "an existing ONNX file")
    if os.path.exists(int8_path):
        fail("int8_path", int8_path, "a path that does not exist yet (exports are never overwritten)")
    pixels = _check_pixels("calibration_pixels", calibration_pixels)
    check_positive_int("batch_size", batch_size)
    check_choice("activations", activations, ("auto", "uint8", "int8"))
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if activations == "auto":
        activations = "uint8" if x86 else "int8"
    if reduce_range is None:
        reduce_range = x86 and not ({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())
    with tempfile.TemporaryDirectory() as scratch, atomic_path(int8_path, suffix=".onnx") as tmp:
        prepared = os.path.join(scratch, "prepared.onnx")
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True)  # shapes, folded constants
        quantize_static(prepared, tmp, _calibration_reader(pixels, batch_size),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": False})
    return int8_path


class OnnxRunner:
    """An ONNX export under ONNX Runtime's CPU provider, ``threads`` intra-op threads."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's graph warnings are not the user's
        self.session = onnxruntime.InferenceSession(os.fspath(path), options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, pixels) -> np.ndarray:
        return self.session.run([PROBABILITIES], {PIXELS: np.asarray(pixels, dtype="float32")})[0]


class TFLiteRunner:
    """A TFLite export under the TFLite interpreter (XNNPACK, ``threads`` threads); the input
    is resized to each call's batch size (the converter fixes it at 1)."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to LiteRT
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=os.fspath(path),
                                                   num_threads=threads or os.cpu_count() or 1)
        self.runner = self.interpreter.get_signature_runner("predict_pixels")

    def __call__(self, pixels) -> np.ndarray:
        # the signature runner resizes the input and re-plans when the batch size changes
        return self.runner(pixels=np.asarray(pixels, dtype="float32"))[PROBABILITIES]
