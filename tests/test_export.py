"""Export and serving: SavedModel signatures, versioning, atomic writes, predict CLI, ONNX, TFLite.

The model is the zoo's CIFAR ResNet20 (32x32, 10 classes) made into a real classifier of
scikit-learn's handwritten digits in seconds: BatchNormalization statistics are set from a
batch of digits and the head is fitted by ridge regression on the pooled features. Outside
references: numpy preprocessing written out here (not keras_resnet.preprocessing), the
in-process Keras model (unfolded, float32), PIL-encoded PNG/JPEG files, TensorFlow's own
SavedModel loader, graph and saved_model_cli, Keras' TFSMLayer, onnxruntime and the TFLite
interpreter.
"""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_digits

from keras_resnet import cli, export, get_model, hardware
from keras_resnet.export import cli as export_cli
from tests.conftest import randomize_batch_norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = [f"digit {i}" for i in range(10)]
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype="float32")


def tf_mode(pixels):  # keras.applications' "tf" preprocessing, written out
    return pixels / 127.5 - 1.0


def caffe_mode(pixels):  # RGB -> BGR, minus the ImageNet means
    return pixels[..., ::-1] - CAFFE_MEAN_BGR


@pytest.fixture(scope="module")
def digits():
    """Digits as RGB uint8 images at 32x32 (from 8x8, 0..16) and their labels."""
    data = load_digits()
    small = (data.images * (255.0 / 16.0)).round().astype("uint8")
    images = tf.image.resize(small[..., None], [32, 32], method="nearest").numpy()
    return np.repeat(images, 3, axis=-1), data.target


@pytest.fixture(scope="module")
def model(digits):
    keras.utils.set_random_seed(0)
    net = get_model("ResNet20", classes=10)
    images, labels = digits
    x = tf_mode(images[:300].astype("float32"))
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:  # one training-mode pass sets the moving statistics to batch statistics
        layer.momentum = 0.0
    net(x[:256], training=True)
    features = keras.Model(net.input, net.layers[-2].output).predict(x, verbose=0)
    mean, std = features.mean(0), features.std(0) + 1e-6
    z = (features - mean) / std
    targets = np.eye(10)[labels[:300]] - 0.1
    w = np.linalg.solve(z.T @ z + 10.0 * np.eye(z.shape[1]), z.T @ targets)
    net.layers[-1].kernel.assign((8.0 * w / std[:, None]).astype("float32"))
    net.layers[-1].bias.assign((-8.0 * (mean / std) @ w).astype("float32"))
    return net


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("saved_models") / "digits")


@pytest.fixture(scope="module")
def version_dir(model, base_dir):
    # the defaults (fold_bn=True, precision="auto") as on a CPU without fast bf16
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardware, "cpu_has_fast_bf16", lambda flags=None: False)
        return export.export_saved_model(
            model, base_dir, class_names=CLASS_NAMES, preprocessing="tf", top_k=3
        )


@pytest.fixture(scope="module")
def loaded(version_dir):
    return tf.saved_model.load(version_dir)


def png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_layout_and_signatures(version_dir, loaded):
    assert os.path.basename(version_dir) == "1"
    assert {"saved_model.pb", "variables", "assets"} <= set(os.listdir(version_dir))
    with open(os.path.join(version_dir, "assets", export.CLASS_NAMES_ASSET)) as f:
        assert f.read().splitlines() == CLASS_NAMES

    serving = loaded.signatures["serving_default"]
    pixels = loaded.signatures["predict_pixels"]
    (bytes_spec,) = serving.structured_input_signature[1].values()
    assert list(serving.structured_input_signature[1]) == ["image_bytes"]
    assert bytes_spec.dtype == tf.string and bytes_spec.shape.as_list() == [None]
    outputs = serving.structured_outputs
    assert {k: (v.dtype, v.shape.as_list()) for k, v in outputs.items()} == {
        "classes": (tf.int64, [None, 3]),
        "scores": (tf.float32, [None, 3]),
        "labels": (tf.string, [None, 3]),
    }
    assert list(pixels.structured_input_signature[1]) == ["pixels"]
    assert pixels.structured_input_signature[1]["pixels"].shape.as_list() == [None, 32, 32, 3]
    assert pixels.structured_outputs["probabilities"].shape.as_list() == [None, 10]

    # TensorFlow's own command-line inspector sees both signatures
    shown = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show",
         "--dir", version_dir, "--all"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "signature_def['serving_default']" in shown.stdout
    assert "signature_def['predict_pixels']" in shown.stdout
    assert "inputs['image_bytes']" in shown.stdout and "outputs['labels']" in shown.stdout


def test_reloaded_outputs_match_keras(model, loaded, version_dir, digits):
    images = digits[0][300:316].astype("float32")
    expected = model(tf_mode(images), training=False).numpy()
    assert expected.max(-1).min() < 0.99  # a classifier with a spread, not saturated

    reloaded = loaded.signatures["predict_pixels"](pixels=tf.constant(images))["probabilities"]
    np.testing.assert_allclose(reloaded.numpy(), expected, atol=1e-5)

    layer = keras.layers.TFSMLayer(version_dir, call_endpoint="predict_pixels")
    np.testing.assert_allclose(layer(images)["probabilities"].numpy(), expected, atol=1e-5)


def test_serving_default_agrees_with_predict_pixels(loaded, digits):
    images = digits[0][300:304]
    encoded = [png_bytes(image) for image in images]  # lossless, at the input size
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    probabilities = loaded.signatures["predict_pixels"](
        pixels=tf.constant(images.astype("float32"))
    )["probabilities"].numpy()

    order = np.argsort(-probabilities, axis=-1)[:, :3]
    np.testing.assert_array_equal(served["classes"].numpy(), order)
    np.testing.assert_allclose(
        served["scores"].numpy(), np.take_along_axis(probabilities, order, -1), atol=1e-6
    )
    labels = [[label.decode() for label in row] for row in served["labels"].numpy()]
    assert labels == [[CLASS_NAMES[i] for i in row] for row in order]

    # any size and JPEG: resized in the graph
    buffer = io.BytesIO()
    Image.fromarray(np.kron(images[0], np.ones((3, 2, 1), "uint8"))).save(buffer, format="JPEG")
    other = loaded.signatures["serving_default"](image_bytes=tf.constant([buffer.getvalue()]))
    assert other["scores"].shape == (1, 3)
    assert 0.0 < float(tf.reduce_sum(other["scores"])) <= 1.0 + 1e-6


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", b"", b"\x89PNG\r\n\x1a\n but truncated"],
    ids=["text", "empty", "broken-png"],
)
def test_non_image_bytes_raise(loaded, digits, data):
    good = png_bytes(digits[0][0])
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        loaded.signatures["serving_default"](image_bytes=tf.constant([good, data]))
    message = str(info.value)
    if data.startswith(b"\x89PNG"):
        assert "PNG" in message  # the decoder's own error for a corrupt file
    else:
        assert "image_bytes[1] is not a decodable image" in message


def snapshot(folder):
    result = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return result


def test_versions_increment_and_are_never_overwritten(model, base_dir, version_dir, monkeypatch):
    before = snapshot(version_dir)
    with pytest.raises(ValueError, match="version=1"):
        export.export_saved_model(model, base_dir, version=1, class_names=CLASS_NAMES, preprocessing="tf")
    with pytest.raises(ValueError, match="version=0"):
        export.export_saved_model(model, base_dir, version=0, class_names=CLASS_NAMES, preprocessing="tf")
    assert snapshot(version_dir) == before

    # an export that fails half-way leaves neither a version nor its staging folder
    real_save = tf.saved_model.save

    def save_then_fail(obj, path, **kwargs):
        real_save(obj, path, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model, base_dir, class_names=CLASS_NAMES, preprocessing="tf")
    assert sorted(os.listdir(base_dir)) == ["1"]
    monkeypatch.undo()

    os.mkdir(os.path.join(base_dir, "7"))  # a version written by someone else
    os.mkdir(os.path.join(base_dir, ".tmp-9-1"))  # a stale staging folder is no version
    third = export.export_saved_model(model, base_dir, class_names=CLASS_NAMES, preprocessing="tf")
    assert os.path.basename(third) == "8"
    assert export.list_versions(base_dir) == [1, 7, 8]
    assert export.resolve_saved_model_path(base_dir) == third  # a base path means its newest
    assert snapshot(version_dir) == before


KILLED_EXPORT = textwrap.dedent(
    """
    import os, sys, time
    import keras, tensorflow as tf
    from keras_resnet import export

    export_dir, marker = sys.argv[1], sys.argv[2]
    real_save = tf.saved_model.save

    def save_then_hang(obj, path, **kwargs):
        real_save(obj, path, **kwargs)
        open(marker, "w").close()  # everything written, not yet renamed
        time.sleep(600)

    tf.saved_model.save = save_then_hang
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    export.export_saved_model(model, export_dir, class_names=["a", "b", "c"], preprocessing="torch")
    """
)


@pytest.mark.slow
def test_killed_export_leaves_no_version(tmp_path):
    export_dir, marker = tmp_path / "m", tmp_path / "written"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(export_dir), str(marker)],
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the export never reached the write"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    left = os.listdir(export_dir)
    assert len(left) == 1 and left[0].startswith(".tmp-")  # the half-done staging folder
    assert os.path.isfile(export_dir / left[0] / "saved_model.pb")
    # TF Serving loads only all-digit folder names as versions
    assert not [name for name in left if name.isdigit()]
    assert export.list_versions(export_dir) == []


def test_predict_cli_reports_bad_files_and_predicts_the_rest(loaded, version_dir, digits, tmp_path, capsys):
    good = tmp_path / "three.png"
    good.write_bytes(png_bytes(digits[0][303]))
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image")
    missing = tmp_path / "missing.jpg"
    expected = loaded.signatures["serving_default"](image_bytes=tf.constant([good.read_bytes()]))
    expected_labels = [label.decode() for label in expected["labels"].numpy()[0][:2]]

    status = export_cli.cli_main(
        "predict", ["--saved-model", version_dir, str(good), str(missing), str(text), "--top-k", "2"]
    )
    out, err = capsys.readouterr()
    assert status != 0
    assert f"{good}: {expected_labels[0]} (" in out and expected_labels[1] in out
    assert str(missing) in err and str(text) in err and "not a decodable image" in err

    status = export_cli.cli_main(
        "predict", ["--saved-model", version_dir, str(good), str(missing), "--json"]
    )
    out, _ = capsys.readouterr()
    results = json.loads(out)
    assert status != 0
    assert [r["file"] for r in results] == [str(good), str(missing)]
    predictions = results[0]["predictions"]
    assert [p["label"] for p in predictions] == [
        label.decode() for label in expected["labels"].numpy()[0]
    ]
    np.testing.assert_allclose([p["score"] for p in predictions], expected["scores"].numpy()[0], atol=1e-6)
    assert "error" in results[1] and "predictions" not in results[1]

    assert export_cli.cli_main("predict", ["--saved-model", version_dir, str(good)]) == 0
    capsys.readouterr()


def test_export_cli_refuses_to_overwrite(tmp_path, capsys):
    export_dir = str(tmp_path / "resnet20")
    # no --weights: a CIFAR model has no keras.applications file, so it exports untrained
    args = ["--model", "ResNet20", "--export-dir", export_dir, "--version", "3", "--no-fold-bn"]
    with pytest.warns(UserWarning, match="ResNet20 has no keras.applications weights, so it is used untrained"):
        assert export_cli.cli_main("export", args) == 0
    assert "folded: 0, kept: 19" in capsys.readouterr().out
    assert export.saved_model_metadata(os.path.join(export_dir, "3"))["batch_norm_folded"] == 0
    before = snapshot(os.path.join(export_dir, "3"))
    assert cli.main(["export", *args]) == 2  # a user error: one line, no traceback
    err = capsys.readouterr().err
    assert "version=3" in err and len(err.strip().splitlines()) == 1
    assert snapshot(os.path.join(export_dir, "3")) == before
    assert export.list_versions(export_dir) == [3]


def test_export_cli_from_a_run_folder(model, tmp_path, digits, capsys):
    run = tmp_path / "digits-run"
    run.mkdir()
    model.save(str(run / "model.keras"))
    names = [f"number {9 - i}" for i in range(10)]  # not the fixture's names
    config = {"model": "ResNet20", "class_names": names, "image_size": 32,
              "preprocessing": "tf", "num_classes": 10, "dataset": "digits"}
    (run / "config.json").write_text(json.dumps(config))
    export_dir = str(tmp_path / "served")
    args = ["--run", str(run), "--export-dir", export_dir, "--top-k", "2", "--precision", "fp32"]
    assert export_cli.cli_main("export", args) == 0
    out = capsys.readouterr().out
    assert "served/1" in out.replace(os.sep, "/")
    assert "precision fp32" in out and "folded: 19, kept: 0" in out  # folded by default

    image = digits[0][310]
    served = tf.saved_model.load(os.path.join(export_dir, "1")).signatures["serving_default"](
        image_bytes=tf.constant([png_bytes(image)])
    )
    expected = np.argsort(-model(tf_mode(image[None].astype("float32"))).numpy()[0])[:2]
    assert [label.decode() for label in served["labels"].numpy()[0]] == [names[i] for i in expected]

    # refused before the run's model is even loaded
    assert cli.main(["export", "--run", str(run), "--export-dir", export_dir, "--version", "1"]) == 2
    assert "version=1" in capsys.readouterr().err


def test_imagenet_labels_from_a_cached_class_index_else_generic(tmp_path, monkeypatch):
    net = get_model("ResNet20", classes=1000)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # empty cache, and no network is tried
    with pytest.warns(UserWarning, match="imagenet_class_index.json"):
        options = export.resolve_options(net, preprocessing="tf")
    assert options.class_names[:2] == ("class_0", "class_1") and options.num_classes == 1000

    # keras.applications' class index format: {"0": ["n01440764", "tench"], ...}
    index = {str(i): [f"n{i:08d}", f"name_{i}"] for i in range(1000)}
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "imagenet_class_index.json").write_text(json.dumps(index))
    options = export.resolve_options(net, preprocessing="tf")
    assert options.class_names == tuple(index[str(i)][1] for i in range(1000))

    with pytest.raises(ValueError, match="class_names"):
        export.resolve_options(net, preprocessing="tf", class_names=["a", "b"])
    inputs = keras.Input((8, 8, 3))  # not a keras_resnet model: its preprocessing is unknown
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="preprocessing=None"):
        export.resolve_options(plain, class_names=["a", "b"])
    with pytest.raises(ValueError, match="top_k=0"):
        export.resolve_options(net, preprocessing="tf", top_k=0)


def graph_ops(signature):
    """Counts of (op type, its T attribute) in a loaded signature's graph and functions."""
    graph = signature.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    counts = {}
    for node in nodes:
        dtype = tf.dtypes.as_dtype(node.attr["T"].type).name if "T" in node.attr else None
        counts[(node.op, dtype)] = counts.get((node.op, dtype), 0) + 1
    return counts


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_folded_by_default_matches_unfolded_keras(variant, model, version_dir, digits, tmp_path):
    """Both signatures of the default (folded) export equal the unfolded Keras model.

    v1 (ResNet20): every BN follows a convolution. v2 (a narrow ResNet18V2): the
    pre-activation BNs follow additions, not convolutions, and stay in the graph.
    """
    if variant == "v1":
        net, path, mode, bn_left = model, version_dir, tf_mode, 0
    else:
        keras.utils.set_random_seed(1)
        net = get_model("ResNet18V2", weights=None, input_shape=(32, 32, 3), classes=10,
                        width_multiplier=0.25)
        randomize_batch_norm(net)
        path = export.export_saved_model(net, str(tmp_path), class_names=CLASS_NAMES, preprocessing="tf",
                                          precision="fp32")
        mode, bn_left = tf_mode, 9  # 8 units' preact_bn and post_bn
    bn_total = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in net.layers)
    meta = export.saved_model_metadata(path)
    assert (meta["batch_norm_folded"], meta["batch_norm_kept"]) == (bn_total - bn_left, bn_left)
    assert meta["precision"] == "fp32" and meta["compute_dtype"] == "float32"

    loaded = tf.saved_model.load(path)
    ops = graph_ops(loaded.signatures["predict_pixels"])
    batch_norm_ops = sum(n for (op, _), n in ops.items() if op.startswith("FusedBatchNorm"))
    assert batch_norm_ops == bn_left  # the graph really lost the folded BNs

    images = digits[0][300:316]
    expected = net(mode(images.astype("float32")), training=False).numpy()
    assert expected.max(-1).min() < 0.99  # not saturated: differences would show
    pixels = loaded.signatures["predict_pixels"](pixels=tf.constant(images.astype("float32")))
    np.testing.assert_allclose(pixels["probabilities"].numpy(), expected, atol=1e-4)
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([png_bytes(i) for i in images]))
    order = np.argsort(-expected, axis=-1)[:, : served["scores"].shape[-1]]
    np.testing.assert_allclose(served["scores"].numpy(), np.take_along_axis(expected, order, -1), atol=1e-4)


@pytest.fixture(scope="module")
def trained_model(digits):
    """ResNet20 trained one epoch on the first 800 digits (about 93% on the other 997).

    A trained network, unlike the ridge-fitted fixture above, has features whose spread
    across images dwarfs bf16's rounding; its BN statistics are then set from 512 images.
    """
    keras.utils.set_random_seed(0)
    net = get_model("ResNet20", classes=10)
    images, labels = digits
    x = tf_mode(images[:800].astype("float32"))
    net.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    net.fit(x, labels[:800], batch_size=32, epochs=1, verbose=0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    net(x[:512], training=True)
    return net


@pytest.mark.slow
def test_bf16_saved_model_agrees_with_fp32_keras(trained_model, digits, tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda flags=None: True)
    path = export.export_saved_model(
        trained_model, str(tmp_path), class_names=CLASS_NAMES, preprocessing="tf"
    )  # precision="auto" on a CPU with fast bf16
    meta = export.saved_model_metadata(path)
    assert (meta["precision_requested"], meta["precision"], meta["compute_dtype"]) == ("auto", "bf16", "bfloat16")

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["predict_pixels"]
    ops = graph_ops(signature)
    convs = sum(isinstance(layer, keras.layers.Conv2D) for layer in trained_model.layers)
    assert ops.get(("Conv2D", "bfloat16")) == convs and ("Conv2D", "float32") not in ops
    assert ("Softmax", "float32") in ops and ("MatMul", "float32") in ops  # classifier in float32
    assert signature.structured_input_signature[1]["pixels"].dtype == tf.float32
    assert signature.structured_outputs["probabilities"].dtype == tf.float32

    images, labels = digits
    held_out = images[800:].astype("float32")  # 997 digits the model never saw
    features = keras.Model(trained_model.input, trained_model.layers[-2].output)(tf_mode(held_out))
    dense = trained_model.layers[-1]
    logits = features @ dense.kernel + dense.bias
    expected = tf.nn.softmax(logits).numpy()  # the Keras model's float32 probabilities
    logits = logits.numpy()
    served = signature(pixels=tf.constant(held_out))["probabilities"].numpy()

    agreement = float(np.mean(served.argmax(-1) == expected.argmax(-1)))
    accuracy = float(np.mean(expected.argmax(-1) == labels[800:]))
    # bf16 keeps 8 significant bits: each rounding errs by at most 2**-8 relative. The
    # graph rounds every convolution's input and kernel (2 x 19 roundings in series);
    # independent errors add in quadrature, so the logits carry ~sqrt(38) * 2**-8 (2.4%)
    # of their scale, and softmax moves a probability by at most half the largest logit change.
    tolerance = 0.5 * np.sqrt(2 * convs) * 2.0**-8 * float(np.abs(logits).max())
    difference = float(np.abs(served - expected).max())
    print(f"bf16 vs fp32 on 997 held-out digits: top-1 agreement {agreement:.2%}, max |dp| "
          f"{difference:.4f} (tolerance {tolerance:.4f}), fp32 accuracy {accuracy:.1%}")
    assert accuracy >= 0.8  # a real classifier
    assert agreement >= 0.98
    assert difference <= tolerance


def test_precision_auto_choice_and_bad_arguments(model, tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda flags=None: False)
    assert export.resolve_serving_precision("auto") == "fp32"
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda flags=None: True)
    assert export.resolve_serving_precision("auto") == "bf16"
    assert export.resolve_serving_precision("fp32") == "fp32"

    target = tmp_path / "m"
    with pytest.raises(ValueError, match="precision='fp16'"):
        export.export_saved_model(model, str(target), class_names=CLASS_NAMES, precision="fp16")
    with pytest.raises(ValueError, match="fold_bn='yes'"):
        export.export_saved_model(model, str(target), class_names=CLASS_NAMES, fold_bn="yes")
    assert not target.exists()
    assert cli.main(["export", "--model", "ResNet20", "--format", "onnx", "--precision", "bf16",
                     "--export-dir", str(target)]) == 2
    assert not target.exists()

    # a model built under mixed_bfloat16 (e.g. trained so) serves in float32 with precision="fp32"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = get_model("ResNet20", classes=10)
    finally:
        keras.config.set_dtype_policy(previous)
    mixed.set_weights(model.get_weights())
    served, facts = export.prepare_for_serving(mixed, fold_bn=False, precision="fp32")
    assert {layer.compute_dtype for layer in served.layers} == {"float32"}
    assert facts["batch_norm_folded"] == 0
    x = tf_mode(np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32"))
    np.testing.assert_allclose(served(x).numpy(), model(x).numpy(), atol=1e-6)


@pytest.mark.slow
def test_onnx_matches_keras_under_onnxruntime(model, digits, tmp_path):
    path = export.export_onnx(
        model, str(tmp_path / "resnet20.onnx"), class_names=CLASS_NAMES, preprocessing="caffe"
    )
    images = digits[0][300:332].astype("float32")
    expected = model(caffe_mode(images), training=False).numpy()
    np.testing.assert_allclose(export.onnx_probabilities(path, images), expected, atol=1e-4)
    with pytest.raises(ValueError, match="path"):
        export.export_onnx(model, path, class_names=CLASS_NAMES, preprocessing="caffe")


@pytest.mark.slow
def test_tflite_float_and_int8(model, version_dir, digits, tmp_path):
    images, _ = digits
    held_out = images[300:400].astype("float32")
    expected = model(tf_mode(held_out), training=False).numpy()

    float_path = export.export_tflite(version_dir, str(tmp_path / "float.tflite"))
    np.testing.assert_allclose(export.tflite_probabilities(float_path, held_out), expected, atol=1e-4)

    int8_path = export.export_tflite(
        version_dir, str(tmp_path / "int8.tflite"), quantize="int8",
        representative_images=list(images[:32]),
    )
    quantized = export.tflite_probabilities(int8_path, held_out)
    agreement = float(np.mean(quantized.argmax(-1) == expected.argmax(-1)))
    print(f"int8 top-1 agreement with float on 100 held-out digits: {agreement:.0%}")
    assert os.path.getsize(int8_path) < 0.4 * os.path.getsize(float_path)  # int8 weights
    np.testing.assert_allclose(quantized.sum(-1), 1.0, atol=0.02)
    assert agreement >= 0.7
    with pytest.raises(ValueError, match="representative_images"):
        export.export_tflite(version_dir, str(tmp_path / "x.tflite"), quantize="int8")
