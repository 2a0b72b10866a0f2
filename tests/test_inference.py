"""fold_batch_norm: the folded model computes what the original computes at inference."""

import keras
import numpy as np
import pytest

from keras_resnet import get_model
from keras_resnet.inference import fold_batch_norm
from keras_resnet.normalization import BatchNormalization
from tests.conftest import randomize_batch_norm


def batch_norms(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def assert_same_outputs(folded, model, x, tol=1e-4):
    expected = model(x, training=False).numpy()
    actual = folded(x, training=False).numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(actual - expected).max() <= tol * scale


@pytest.mark.parametrize("name", ["ResNet18", "ResNet18V2"])
def test_resnet_outputs_unchanged(name):
    model = get_model(name, weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None)
    randomize_batch_norm(model)
    before = [w.numpy().copy() for w in model.weights]
    folded = fold_batch_norm(model)
    x = np.random.default_rng(1).normal(size=(3, 64, 64, 3)).astype("float32")
    assert_same_outputs(folded, model, x)
    left = {bn.name for bn in batch_norms(folded)}
    # v1: every BN follows a convolution. v2 (pre-activation, keras.applications names):
    # the "preact" BNs follow an addition or the stem's pooling and "post_bn" the last addition.
    expected_left = {bn.name for bn in batch_norms(model) if bn.name.endswith(("preact_bn", "post_bn"))}
    assert left == expected_left and (name == "ResNet18") == (not expected_left)
    for bn in batch_norms(model):
        if bn.name not in left:
            conv = folded.get_layer(bn.name.replace("_bn", "_conv"))
            assert conv.use_bias
    # the original model is untouched
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, w.numpy())


def small_model(*, conv_bias=False, conv_activation=None, reuse_conv_output=False, bn_class=BatchNormalization):
    inputs = keras.Input((12, 12, 3))
    y = keras.layers.Conv2D(6, 3, use_bias=conv_bias, activation=conv_activation, name="conv")(inputs)
    x = bn_class(epsilon=1e-3, name="bn")(y)
    x = keras.layers.ReLU()(x)
    if reuse_conv_output:
        x = keras.layers.Add()([x, y])
    x = keras.layers.Conv2D(4, 1, strides=2, name="conv2")(x)
    x = keras.layers.BatchNormalization(center=False, name="bn2")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    randomize_batch_norm(model, seed=3)
    return model


@pytest.mark.parametrize(
    "options,folded_names",
    [
        ({}, {"conv", "conv2"}),
        ({"conv_bias": True, "bn_class": keras.layers.BatchNormalization}, {"conv", "conv2"}),
        ({"conv_activation": "relu"}, {"conv2"}),  # BN after a non-linearity is not affine in the conv
        ({"reuse_conv_output": True}, {"conv2"}),  # the unnormalised conv output is used elsewhere
    ],
    ids=["plain", "conv_bias_keras_bn", "conv_activation", "shared_conv_output"],
)
def test_folds_exactly_the_foldable_pairs(options, folded_names):
    model = small_model(**options)
    folded = fold_batch_norm(model)
    x = np.random.default_rng(4).normal(size=(5, 12, 12, 3)).astype("float32")
    assert_same_outputs(folded, model, x)
    remaining = {l.name for l in batch_norms(folded)}
    assert remaining == {"bn", "bn2"} - {"bn" if "conv" in folded_names else None, "bn2"}
    for name in folded_names:
        assert folded.get_layer(name).use_bias


def test_mixed_bfloat16_model_folds():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = small_model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    folded = fold_batch_norm(model)
    assert folded.get_layer("conv").compute_dtype == "bfloat16"
    assert folded.get_layer("conv").kernel.dtype == "float32"
    x = np.random.default_rng(5).normal(size=(5, 12, 12, 3)).astype("float32")
    expected = model(x).numpy().astype("float32")
    actual = folded(x).numpy().astype("float32")
    np.testing.assert_allclose(actual, expected, rtol=5e-2, atol=5e-2)


def test_sequential_and_saving(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()])
    randomize_batch_norm(model)
    folded = fold_batch_norm(model)
    x = np.random.default_rng(6).normal(size=(2, 8, 8, 3)).astype("float32")
    assert_same_outputs(folded, model, x)
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path)(x).numpy(), folded(x).numpy())


def test_subclassed_model_is_rejected():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional"):
        fold_batch_norm(Net())
