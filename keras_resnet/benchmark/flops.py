"""What a model costs and what the machine can do: FLOPs per image and the matmul peak."""

from __future__ import annotations

import math
import time

from keras_resnet.utils import all_layers, compute_dtype


def forward_flops(model) -> int:
    """FLOPs of one image's forward pass: 2 per multiply-add of Conv / Dense layers."""
    return sum(layer_flops(layer) for layer in all_layers(model))


def layer_flops(layer) -> int:
    """FLOPs of one image through ``layer``: 2 per multiply-add for Conv2D, DepthwiseConv2D
    and Dense layers, 0 for every other layer."""
    import keras

    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        return 0
    outputs = math.prod(d for d in layer.output.shape[1:])
    kernel = tuple(layer.kernel.shape)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        macs_per_output = kernel[0] * kernel[1]
    elif isinstance(layer, keras.layers.Dense):
        macs_per_output = kernel[0]
    else:  # Conv2D kernel (kh, kw, in / groups, out)
        macs_per_output = math.prod(kernel[:-1])
    return 2 * macs_per_output * outputs


def _matmul_runner(backend: str, n: int, dtype: str):
    """A function that runs one n x n matmul in ``dtype`` on ``backend`` and waits for it."""
    if backend == "tensorflow":
        import tensorflow as tf

        a = tf.cast(tf.random.normal((n, n), dtype="float32"), dtype)
        matmul = tf.function(lambda a: tf.reduce_sum(tf.cast(tf.matmul(a, a)[:1, :1], "float32")))
        return lambda: matmul(a).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.key(0), (n, n), dtype="float32").astype(dtype)
        matmul = jax.jit(lambda a: jnp.matmul(a, a)[:1, :1].astype("float32").sum())
        return lambda: matmul(a).block_until_ready()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t = torch.randn(n, n, device=device).to(getattr(torch, dtype))

    def run():
        with torch.no_grad():
            float(torch.matmul(t, t)[:1, :1].float().sum())

    return run


def matmul_peak_gflops(precision: str, repeats: int = 5) -> float:
    """Best GFLOP/s of large square matmuls in the compute dtype of ``precision``, on the
    device the Keras backend computes on (TensorFlow, JAX or PyTorch)."""
    import keras

    from keras_resnet.hardware import gpu_count

    sizes = (4096, 8192) if gpu_count() else (1024, 2048)
    best = 0.0
    for n in sizes:
        run = _matmul_runner(keras.backend.backend(), n, compute_dtype(precision))
        run()
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best
