"""benchmarks/filter_grad_matmul.py: a 1x1 convolution's filter gradient as one matmul.

The matmul must be the gradient Keras computes for a Conv2D kernel, and the shapes the
script times must be those of keras.applications' ResNet-50 (30 1x1 stride-1 convs).
"""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "filter_grad_matmul.py"
spec = importlib.util.spec_from_file_location("filter_grad_matmul", PATH)
filter_grad_matmul = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filter_grad_matmul)


def test_the_matmul_is_the_kernel_gradient_keras_computes():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 5, 6, 8)), tf.float32)
    dy = tf.constant(rng.normal(size=(3, 5, 6, 16)), tf.float32)
    conv = keras.layers.Conv2D(16, 1, use_bias=False, dtype="float32")
    conv.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(conv(x) * dy)  # d loss / d output = dy
    reference = tape.gradient(loss, conv.kernel)[0, 0]
    kernel_op, matmul = filter_grad_matmul.filter_gradients(x, dy)
    np.testing.assert_allclose(matmul().numpy(), reference.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(kernel_op().numpy(), reference.numpy(), rtol=1e-5, atol=1e-4)


def test_shapes_are_keras_applications_resnet50s():
    from keras_resnet import get_model

    ours = filter_grad_matmul.one_by_one_shapes(get_model("ResNet50", weights=None, input_shape=(64, 64, 3)))
    reference = filter_grad_matmul.one_by_one_shapes(
        keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3)))
    assert ours == reference
    assert sum(ours.values()) == 30  # 2 per bottleneck (16), less 3 strided, plus stage 2's projection
    assert ours[(16, 16, 64, 256)] == 4  # conv2: three expansions and the projection


def test_main_runs_and_refuses_a_bad_count(capsys):
    totals = filter_grad_matmul.main(["--model", "ResNet50", "--image-size", "32", "--batch-size", "2",
                                      "--precision", "fp32", "--rounds", "1", "--calls", "1"])
    assert totals["best_ms"] <= min(totals["conv_ms"], totals["matmul_ms"]) + 1e-9
    assert "| 64 -> 256, 8x8 (4) |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as raised:
        filter_grad_matmul.main(["--rounds", "0"])
    assert raised.value.code == 2
    assert "--rounds must be at least 1. Received: 0" in capsys.readouterr().err
