"""The package as a Keras user meets it: a lazy ``import keras_resnet``, plain
``keras.saving.load_model`` of what we write, and ``preprocess_input`` as keras.applications'
(issue 10, item 7)."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import recipe

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python(code, *args):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_import_is_lazy_and_lists_every_public_name():
    code = ("import sys, keras_resnet as kr; "
            "print('keras' in sys.modules, 'tensorflow' in sys.modules, 'numpy' in sys.modules, "
            "len(set(kr.__all__) - set(dir(kr))))")
    assert python(code) == ["False", "False", "False", "0"]
    with pytest.raises(AttributeError, match="ResNet51"):
        kr.ResNet51  # noqa: B018


# Loads a file in a fresh process with nothing but `keras` and `keras_resnet` imported, in
# the order given, and prints what the compiled model carries.
LOAD = """
import sys
for name in sys.argv[2].split(","):
    __import__(name)
import keras
model = keras.saving.load_model(sys.argv[1])
print(model.optimizer.get_config()["learning_rate"]["registered_name"], type(model.loss).__name__,
      int(model.optimizer.iterations.numpy()))
"""


@pytest.fixture(scope="module")
def compiled_keras_file(tmp_path_factory):
    """A compiled, trained-one-step model.keras as `keras-resnet train` writes it: the
    recipe's learning-rate schedule and loss are custom classes in the file."""
    model = kr.ResNet20(input_shape=(16, 16, 3), se_ratio=0.25, stochastic_depth_rate=0.1)
    recipe.compile_model(model, steps_per_epoch=2, epochs=2, global_batch_size=4,
                         num_classes=10, label_smoothing=0.1)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    model.fit(x, np.arange(4) % 10, batch_size=4, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("order", ["keras,keras_resnet", "keras_resnet,keras"])
def test_plain_keras_loads_our_compiled_file_after_import_keras_resnet(compiled_keras_file, order):
    schedule, loss, step = python(LOAD, compiled_keras_file, order)
    assert (schedule, loss, step) == ("keras_resnet>ResNetLearningRate", "SparseCrossentropyWithSmoothing", "1")


# ----------------------------------------------------------------- preprocess_input


REFERENCES = {  # our mode -> keras.applications' function for it
    "caffe": keras.applications.resnet.preprocess_input,
    "tf": keras.applications.resnet_v2.preprocess_input,
    "torch": lambda x, data_format: keras.applications.imagenet_utils.preprocess_input(
        x, data_format=data_format, mode="torch"),
}


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8"])
@pytest.mark.parametrize("mode", sorted(REFERENCES))
def test_preprocess_input_equals_keras_applications(mode, dtype, data_format, rng):
    shape = (2, 5, 6, 3) if data_format == "channels_last" else (2, 3, 5, 6)
    x = rng.integers(0, 256, shape).astype(dtype)
    keep = x.copy()
    expected = REFERENCES[mode](x.copy(), data_format=data_format)
    ours = kr.preprocess_input(x, data_format, mode=mode)
    assert ours.dtype == expected.dtype == (dtype if dtype != "uint8" else "float32")
    np.testing.assert_array_equal(ours, expected)  # the same arithmetic, in the same dtype
    np.testing.assert_array_equal(x, keep)  # never modified in place
    # a tensor takes the backend path: same values and dtype as keras.applications' tensor path
    tensor = keras.ops.convert_to_tensor(x)
    expected_t = REFERENCES[mode](keras.ops.cast(tensor, expected.dtype), data_format=data_format)
    ours_t = kr.preprocess_input(tensor, data_format, mode=mode)
    assert keras.backend.standardize_dtype(ours_t.dtype) == expected.dtype
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours_t),
                                  keras.ops.convert_to_numpy(expected_t))


def test_preprocess_input_single_image_and_bad_data_format():
    image = np.full((3, 4, 4), 255, "uint8")  # one channels-first image
    np.testing.assert_array_equal(
        kr.preprocess_input(image, "channels_first", mode="caffe"),
        keras.applications.resnet.preprocess_input(image.astype("float32"), "channels_first"))
    with pytest.raises(ValueError, match="data_format='NHWC'"):
        kr.preprocess_input(image, "NHWC", mode="tf")
