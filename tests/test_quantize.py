"""int8 serving files agree with the float32 model they came from (no timing here).

Outside facts pinned: scikit-learn's handwritten digits (real scans, 1,797 images; the
model trains on the first 800 and is judged on the 997 it never saw), TensorFlow Lite's
interpreter and ONNX Runtime running the files, and the float32 Keras model's top-1.
"""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras
from keras_resnet import export, get_model
from keras_resnet.export.quantize import OnnxRunner, TFLiteRunner, quantize_onnx
from keras_resnet.utils import dtype_policy


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    small = (data.images * (255.0 / 16.0)).round().astype("uint8")
    images = tf.image.resize(small[..., None], [32, 32], method="nearest").numpy()
    return np.repeat(images, 3, axis=-1).astype("float32"), data.target


@pytest.fixture(scope="module")
def trained(digits):
    images, labels = digits
    keras.utils.set_random_seed(0)
    with dtype_policy("fp32"):
        net = get_model("ResNet20", classes=10)
    net.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    x = images[:800] / 127.5 - 1.0
    net.fit(x, labels[:800], batch_size=32, epochs=2, verbose=0)
    # two epochs leave BN's moving statistics (momentum 0.99) far from the data's: one
    # training-mode pass with momentum 0 sets them to the statistics of 512 training images
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    net(x[:512], training=True)
    return net


@pytest.fixture(scope="module")
def files(trained, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    calibration = digits[0][:200]  # real training images
    version = export.export_saved_model(trained, str(folder / "fp32"), class_names=list("0123456789"),
                                        preprocessing="tf", precision="fp32")
    tflite = export.export_tflite(version, str(folder / "int8.tflite"), quantize="int8",
                                  representative_images=list(calibration))
    float_onnx = export.export_onnx(trained, str(folder / "fp32.onnx"), preprocessing="tf",
                                    class_names=list("0123456789"))
    onnx = quantize_onnx(float_onnx, folder / "int8.onnx", calibration)
    return {"tflite": tflite, "onnx": onnx}


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_int8_top1_agrees_with_fp32_on_held_out_digits(kind, files, trained, digits):
    images, labels = digits
    held_out = images[800:]
    expected = trained.predict(held_out / 127.5 - 1.0, verbose=0, batch_size=128)
    run = (TFLiteRunner if kind == "tflite" else OnnxRunner)(files[kind])
    served = np.concatenate([run(held_out[i : i + 100]) for i in range(0, len(held_out), 100)])
    agreement = float(np.mean(served.argmax(-1) == expected.argmax(-1)))
    accuracy = float(np.mean(expected.argmax(-1) == labels[800:]))
    print(f"{kind} int8 vs fp32 on 997 held-out digits: agreement {agreement:.2%}, fp32 accuracy {accuracy:.1%}")
    assert accuracy >= 0.8  # a real classifier
    assert agreement >= 0.99
    np.testing.assert_allclose(served.sum(-1), 1.0, atol=0.02)


def test_quantize_onnx_checks_its_arguments(tmp_path, files):
    with pytest.raises(ValueError, match="float_path"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "out.onnx", np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="int8_path"):
        quantize_onnx(files["onnx"], files["onnx"], np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="calibration_pixels"):
        quantize_onnx(files["onnx"], tmp_path / "out.onnx", np.zeros((32, 32, 3)))
    assert not (tmp_path / "out.onnx").exists()
