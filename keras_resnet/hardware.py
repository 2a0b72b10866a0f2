"""What the machine can do fast: used to resolve ``precision="auto"`` and ``jit_compile="auto"``."""

import os

from keras_resnet.utils import normalize_precision


def cpu_flags():
    """The CPU feature flags Linux reports (empty set elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16(flags=None):
    """True on CPUs with AMX-bf16 or AVX-512 bf16, where bf16 matmuls beat fp32 (BENCHMARKS.md)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (None off TensorFlow).

    See ``keras_resnet/__init__.py``: importing keras_resnet first turns them on where
    TensorFlow's own default leaves them off (x86-64 CPUs without AVX-512 VNNI/bf16 or AMX).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def gpu_count():
    """GPUs visible to the Keras backend in use (TensorFlow, JAX or PyTorch)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        try:
            return len(jax.devices("gpu"))
        except RuntimeError:  # no GPU platform in this jaxlib
            return 0
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def resolve_precision(precision="auto"):
    """Map ``"auto"`` to the fastest correct policy for the device found.

    GPUs: ``mixed_float16`` (loss scaling is applied by Keras' optimizer wrapper).
    CPUs with AMX / AVX-512 bf16: ``mixed_bfloat16``, for training too: with the auto
    recipe's BatchNorm momentum it trained as accurately as fp32 there, and faster
    (BENCHMARKS.md, "The precision auto chooses for training"). Elsewhere ``fp32``. The
    environment variable ``KERAS_RESNET_PRECISION`` overrides ``"auto"`` (``"auto"`` in it
    changes nothing).
    """
    precision = normalize_precision(precision)  # one of utils.PRECISIONS, or ValueError
    if precision != "auto":
        return precision
    forced = os.environ.get("KERAS_RESNET_PRECISION")
    if forced and forced != "auto":
        return resolve_precision(forced)
    if gpu_count() > 0:
        return "mixed_float16"
    if cpu_has_fast_bf16():
        return "mixed_bfloat16"
    return "fp32"


def precision_reason(requested, resolved):
    """Why ``requested`` became ``resolved``, in a few words for a run's header:
    "as asked", "KERAS_RESNET_PRECISION=fp32", "auto: a GPU", "auto: AVX-512-bf16 CPU",
    "auto: AMX-bf16 CPU" or "auto: no fast bf16 on this CPU"."""
    if requested != "auto":
        return "as asked"
    forced = os.environ.get("KERAS_RESNET_PRECISION")
    if forced and forced != "auto":
        return f"KERAS_RESNET_PRECISION={forced}"
    if resolved == "mixed_float16":
        return "auto: a GPU"
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "auto: AMX-bf16 CPU"
    if "avx512_bf16" in flags:
        return "auto: AVX-512-bf16 CPU"
    return "auto: no fast bf16 on this CPU"


def resolve_jit_compile(jit_compile="auto"):
    """XLA only where it pays: on GPUs, and always on the JAX backend.

    On TensorFlow CPUs XLA made ResNet training slower (BENCHMARKS.md, the XLA row of the
    changes not kept). On the JAX backend
    ``jit_compile=False`` would run every op eagerly, so ``"auto"`` is True there.
    """
    if jit_compile in (True, "on"):
        return True
    if jit_compile in (False, "off"):
        return False
    if jit_compile != "auto":
        raise ValueError(
            f"jit_compile must be 'auto', 'on' or 'off'. Received: jit_compile={jit_compile!r}"
        )
    import keras

    if keras.backend.backend() == "jax":
        return True
    return gpu_count() > 0
