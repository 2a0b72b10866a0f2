"""Weight files against tf_keras (which writes .h5 files laid out exactly like the published
keras.applications ImageNet files) and preprocessing against keras.applications."""

import json
import os
import time

import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import preprocessing, weights
from tests.conftest import randomize_bn_statistics


@pytest.fixture(scope="module")
def tfk_resnet50(tmp_path_factory):
    """tf_keras ResNet50 with non-trivial BN statistics, saved with and without top."""
    import tf_keras

    rng = np.random.default_rng(1)
    model = tf_keras.applications.ResNet50(weights=None)
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.1, 0.1, n),
                               rng.uniform(-0.1, 0.1, n), rng.uniform(0.5, 1.5, n)])
    d = tmp_path_factory.mktemp("tfk")
    top = str(d / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    model.save_weights(top)
    notop_model = tf_keras.Model(model.input, model.get_layer("conv5_block3_out").output)
    notop = str(d / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    notop_model.save_weights(notop)
    x = rng.uniform(-100, 100, (2, 224, 224, 3)).astype("float32")
    return {"top": top, "notop": notop, "x": x,
            "probs": model.predict(x, verbose=0), "features": notop_model.predict(x, verbose=0)}


def test_legacy_h5_with_top_loads_and_matches_tf_keras(tfk_resnet50):
    model = kr.ResNet50(weights=tfk_resnet50["top"])
    np.testing.assert_allclose(model.predict(tfk_resnet50["x"], verbose=0), tfk_resnet50["probs"], atol=1e-5)


def test_legacy_h5_without_top_loads_and_matches_tf_keras(tfk_resnet50):
    model = kr.ResNet50(include_top=False, weights=tfk_resnet50["notop"])
    np.testing.assert_allclose(model.predict(tfk_resnet50["x"], verbose=0), tfk_resnet50["features"],
                               rtol=1e-4, atol=1e-4)
    # a file with top also loads into a model without top (the head is ignored)
    headless = kr.ResNet50(include_top=False, weights=tfk_resnet50["top"])
    np.testing.assert_allclose(headless.predict(tfk_resnet50["x"], verbose=0), tfk_resnet50["features"],
                               rtol=1e-4, atol=1e-4)


def test_mismatched_file_names_the_layer(tfk_resnet50, tmp_path):
    with pytest.raises(ValueError, match="predictions") as e:
        kr.ResNet50(weights=tfk_resnet50["notop"])  # a top model needs the head
    assert "Received: weights=" in str(e.value)
    with pytest.raises(ValueError, match="conv1_conv"):
        kr.get_model("ResNet50V1_5", include_top=False, weights=tfk_resnet50["notop"])  # no conv biases


def test_imagenet_from_cache_verifies_hash_and_loads(tfk_resnet50, tmp_path, monkeypatch):
    """weights='imagenet' reads keras.applications' file name from Keras' cache folder
    and checks its hash; the file here is tf_keras-written, its md5 patched into the table."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "models")
    for key, idx in (("top", 0), ("notop", 1)):
        dst = tmp_path / "models" / os.path.basename(tfk_resnet50[key])
        dst.write_bytes(open(tfk_resnet50[key], "rb").read())
        hashes = list(weights.WEIGHTS_HASHES["resnet50"])
        hashes[idx] = weights.file_hash(str(dst), "md5")
        monkeypatch.setitem(weights.WEIGHTS_HASHES, "resnet50", tuple(hashes))
    monkeypatch.setattr(weights, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")  # never used
    model = kr.ResNet50(weights="imagenet")
    np.testing.assert_allclose(model.predict(tfk_resnet50["x"], verbose=0), tfk_resnet50["probs"], atol=1e-5)
    notop = kr.ResNet50(weights="imagenet", include_top=False)
    np.testing.assert_allclose(notop.predict(tfk_resnet50["x"], verbose=0), tfk_resnet50["features"],
                               rtol=1e-4, atol=1e-4)


def test_imagenet_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")  # closed port
    start = time.monotonic()
    with pytest.raises(OSError) as e:
        kr.ResNet50V2(weights="imagenet", include_top=False)
    message = str(e.value)
    assert "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message
    assert time.monotonic() - start < 60  # generous: the point is seconds, not minutes
    assert os.listdir(tmp_path / "models") == []  # nothing half-written


def test_wrong_hash_in_cache_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")
    os.makedirs(tmp_path / "models")
    (tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"junk")
    with pytest.raises(OSError, match="wrong hash"):
        kr.ResNet50(weights="imagenet", include_top=False)


def test_keras3_weights_file_round_trip(tmp_path, rng):
    model = kr.CifarResNet(20)
    randomize_bn_statistics(model, rng)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    loaded = kr.CifarResNet(20, weights=path)
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ------------------------------------------------------------------------- preprocessing


def test_preprocess_modes_equal_keras_applications(rng):
    x = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    keep = x.copy()
    np.testing.assert_allclose(kr.preprocess_input(x, mode="caffe"),
                               keras.applications.resnet.preprocess_input(x.copy()), atol=1e-4)
    np.testing.assert_allclose(kr.preprocess_input(x, mode="tf"),
                               keras.applications.resnet_v2.preprocess_input(x.copy()), atol=1e-5)
    np.testing.assert_allclose(kr.preprocess_input(x, mode="torch"),
                               keras.applications.imagenet_utils.preprocess_input(x.copy(), mode="torch"),
                               atol=1e-5)
    np.testing.assert_array_equal(x, keep)  # ours never modifies the input in place
    # tensors take the same path
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kr.preprocess_input(keras.ops.convert_to_tensor(x), mode="caffe")),
                               keras.applications.resnet.preprocess_input(x.copy()), atol=1e-4)


def test_each_model_names_its_preprocessing():
    assert preprocessing.preprocessing_mode("ResNet50") == "caffe"  # keras.applications resnet
    assert preprocessing.preprocessing_mode("ResNet50V2") == "tf"  # keras.applications resnet_v2
    assert preprocessing.preprocessing_mode("ResNet50V1_5") == "torch"
    assert preprocessing.preprocessing_mode("ResNet50D") == "torch"
    with pytest.raises(ValueError, match="mode='bgr'"):
        kr.preprocess_input(np.zeros((1, 2, 2, 3)), mode="bgr")


def test_decode_predictions_equals_keras_offline(tmp_path, monkeypatch, rng):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "models")
    (tmp_path / "models" / "imagenet_class_index.json").write_text(json.dumps(index))
    # keras.applications keeps the index it loaded in a module global; give it the same file
    # content (its own loader would check the real file's hash and go to the network)
    monkeypatch.setattr("keras.src.applications.imagenet_utils.CLASS_INDEX", index)
    preds = rng.uniform(size=(3, 1000)).astype("float32")
    ours = kr.decode_predictions(preds, top=3)
    ref = keras.applications.imagenet_utils.decode_predictions(preds, top=3)
    assert [[(a, b) for a, b, _ in row] for row in ours] == [[(a, b) for a, b, _ in row] for row in ref]
    np.testing.assert_allclose([[s for *_, s in r] for r in ours], [[s for *_, s in r] for r in ref])
    # an explicit file works without the cache
    other = tmp_path / "index.json"
    other.write_text(json.dumps(index))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    assert kr.decode_predictions(preds, top=1, class_index_path=str(other))[0][0][1] == ours[0][0][1]
    with pytest.raises(ValueError, match="preds.shape"):
        kr.decode_predictions(preds[:, :10])
