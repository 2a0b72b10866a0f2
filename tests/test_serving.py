"""Serving under hostile input and load (issue 14): image-size limit from headers, warm-up
requests, the eval transform, the preprocessing look-up of issue 10 and a small load test.

Outside references: image files written by Pillow and zlib (real PNG/JPEG/GIF/WebP/BMP
files, and headers patched to 60,000 x 60,000 as the format specifications lay them out),
scikit-image's sample photos, TensorFlow's own SavedModel loader and decoders, and TF
Serving's PredictionLog protos from the tensorflow-serving-api package.
"""

import importlib.util
import io
import json
import os
import struct
import zlib

import keras
import numpy as np
import psutil
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnet import cli, export, get_model
from keras_resnet.export import cli as export_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["a", "b", "c"]
SIZE = 32


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_bomb(width, height):
    """A real grayscale PNG of one colour: ~1/1000 of its pixels on the wire."""
    compressor = zlib.compressobj(9)
    rows = b"\x00" * (width + 1) * 1000  # filter byte + pixels, 1000 rows at a time
    idat = b"".join(compressor.compress(rows[: (width + 1) * min(1000, height - y)])
                    for y in range(0, height, 1000)) + compressor.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jxl_codestream_header(width, height):
    """A JPEG XL codestream signature and SizeHeader (ISO/IEC 18181-1 sec. D.2): div8=0,
    height and width as U32 with 18-bit selector 2, ratio 0; bits little-endian."""
    bits = [0]  # div8

    def put(value, count):
        bits.extend((value >> i) & 1 for i in range(count))

    for side in (height, None, width):
        if side is None:
            put(0, 3)  # ratio 0: the width follows
        else:
            put(2, 2)
            put(side - 1, 18)
    data = bytes(sum(bit << i for i, bit in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
    return b"\xff\x0a" + data + b"\x00" * 8


def huge_headers(small):
    """60,000 x 60,000 headers: a small real file of each format with its size fields set."""
    png, jpeg, gif, bmp = (encode(small, f) for f in ("PNG", "JPEG", "GIF", "BMP"))
    sof = jpeg.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    side = struct.pack(">H", 60000)
    return {
        "PNG": png[:16] + struct.pack(">II", 60000, 60000) + png[24:],
        "JPEG": jpeg[: sof + 5] + side + side + jpeg[sof + 9 :],
        "GIF": gif[:6] + struct.pack("<HH", 60000, 60000) + gif[10:],
        "BMP": bmp[:18] + struct.pack("<ii", 60000, -60000) + bmp[26:],  # top-down
        "WebP": b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10)
                + b"\x00" * 4 + (59999).to_bytes(3, "little") * 2,
        "JPEG XL": jxl_codestream_header(60000, 60000),
    }


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


@pytest.fixture(scope="module")
def version(small_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("served") / "small"
    return export.export_saved_model(small_model, str(base), class_names=CLASS_NAMES,
                                     preprocessing="tf", precision="fp32", top_k=2)


@pytest.fixture(scope="module")
def loaded(version):
    return tf.saved_model.load(version)


@pytest.fixture(scope="module")
def serve(loaded):
    return loaded.signatures["serving_default"]


@pytest.fixture(scope="module")
def photo():
    """A real 12-megapixel photo: scikit-image's astronaut upscaled to 4,000 x 3,000."""
    import skimage.data

    image = Image.fromarray(skimage.data.astronaut()).resize((4000, 3000), Image.BICUBIC)
    return encode(image, "JPEG", quality=90)


def rejection(serve, images):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        serve(image_bytes=tf.constant(images))
    return info.value.message


def test_header_sizes_match_the_files(small_model):
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype="uint8"))
    files = {fmt: encode(small, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP")}
    files["WebP lossy"] = encode(small, "WEBP", quality=80)
    files["WebP lossless"] = encode(small, "WEBP", lossless=True)
    files["WebP animated"] = encode(small, "WEBP", save_all=True, append_images=[small])
    files["JPEG XL"] = jxl_codestream_header(53, 37)
    for name, data in files.items():
        kind = export.headers.format_index(tf.constant(data))
        width, height, readable = export.headers.header_size(tf.constant(data), kind)
        expected = (53, 37)
        assert (int(width), int(height), bool(readable)) == (*expected, True), name
        if name != "JPEG XL":  # TensorFlow's decoder agrees (Pillow cannot write JPEG XL)
            decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
            assert tuple(decoded.shape[:2]) == expected[::-1], name


def test_oversized_images_are_refused_before_decoding(serve, photo, version):
    assert export.saved_model_metadata(version)["max_image_pixels"] == 50_000_000
    good = encode(Image.new("RGB", (40, 30), (200, 30, 30)), "PNG")
    serve(image_bytes=tf.constant([good]))  # traced and warm: later growth is the images'
    small = Image.fromarray(np.full((16, 24, 3), 90, "uint8"))
    real = {
        "20000x20000": png_bomb(20000, 20000),  # ~400 KB, 1.2 GB decoded
        "8000x7000": encode(Image.new("L", (8000, 7000), 128), "JPEG"),
        "8000x8000": encode(Image.new("P", (8000, 8000), 0), "GIF"),
        "9000x9000": encode(Image.new("RGB", (9000, 9000), (9, 9, 9)), "WEBP", lossless=True, method=0),
    }
    cases = [(dims, data) for dims, data in real.items()]
    cases += [("60000x60000", data) for data in huge_headers(small).values()]
    process = psutil.Process()
    before = process.memory_info().rss
    for dims, data in cases:
        message = rejection(serve, [good, data])
        assert f"image_bytes[1] is {dims} pixels" in message, message[:300]
        assert "max_image_pixels=50000000" in message
    grown = (process.memory_info().rss - before) / 2**20
    assert grown < 100, f"resident memory grew by {grown:.0f} MB"

    out = serve(image_bytes=tf.constant([photo, good]))  # a real 12-megapixel photo is served
    assert out["scores"].shape == (2, 2)


def test_predict_reuses_the_check(version, tmp_path, capsys):
    bomb, good = tmp_path / "bomb.png", tmp_path / "good.png"
    bomb.write_bytes(png_bomb(20000, 20000))
    good.write_bytes(encode(Image.new("RGB", (64, 48), (10, 200, 10)), "PNG"))
    assert export_cli.cli_main("predict", ["--saved-model", version, str(bomb), str(good)]) == 1
    out, err = capsys.readouterr()
    assert f"{bomb}: error: image is 20000x20000 pixels" in err and f"{good}: " in out
    # predict's own limit (--max-image-pixels) runs the graph's check as a TF function
    with pytest.raises(tf.errors.InvalidArgumentError, match="64x48 pixels"):
        export.header_checker(3000)(tf.constant([good.read_bytes()]))
    assert cli.main(["predict", "--saved-model", version, str(good), "--crop-fraction", "0.5"]) == 2
    capsys.readouterr()


def test_warmup_requests_parse_and_replay(version, loaded):
    meta = export.saved_model_metadata(version)
    assert meta["warmup_requests"] == 3
    requests = export.read_warmup_requests(version)  # PredictionLog, tensorflow-serving-api
    assert {name for name, _ in requests} == {"serving_default", "predict_pixels"}
    for name, inputs in requests:
        outputs = loaded.signatures[name](**inputs)
        batch = next(iter(inputs.values())).shape[0]
        assert all(value.shape[0] == batch for value in outputs.values())


def test_crop_fraction_is_served_and_recorded(small_model, tmp_path):
    path = export.export_saved_model(
        small_model, str(tmp_path / "m"), class_names=CLASS_NAMES, preprocessing="tf",
        precision="fp32", top_k=3, crop_fraction=0.5, interpolation="bicubic", warmup=False)
    meta = export.saved_model_metadata(path)
    assert meta["eval_transform"] == {"crop_fraction": 0.5, "interpolation": "bicubic", "resize": "squash"}
    assert meta["warmup_requests"] == 0 and not os.path.exists(os.path.join(path, "assets.extra"))
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (80, 120, 3), dtype="uint8")
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](image_bytes=tf.constant([encode(Image.fromarray(image), "PNG")]))
    center = image[20:60, 30:90]  # the central half of each side
    pixels = tf.image.resize(center, [SIZE, SIZE], method="bicubic", antialias=True)
    pixels = tf.clip_by_value(pixels, 0, 255)  # bicubic overshoots; clipped, as Pillow's uint8 resize
    expected = loaded.signatures["predict_pixels"](pixels=tf.cast(pixels, tf.float32)[None])["probabilities"]
    order = np.argsort(-expected.numpy()[0])
    np.testing.assert_array_equal(served["classes"].numpy()[0], order)
    np.testing.assert_allclose(served["scores"].numpy()[0], expected.numpy()[0][order], atol=1e-5)
    with pytest.raises(ValueError, match="crop_fraction=1.5"):
        export.EvalTransform(crop_fraction=1.5)


@pytest.mark.parametrize("name,mode", [("ResNet20", "tf"), ("ResNet18", "caffe"), ("ResNet26D", "torch")])
def test_preprocessing_found_for_package_models(name, mode, tmp_path):
    """Issue 10: no preprocessing= needed for the package's models, also after a .keras
    round trip and inside a transfer-learning model; a renamed model is not guessed."""
    shape = {} if name == "ResNet20" else {"input_shape": (32, 32, 3), "width_multiplier": 0.125}
    model = get_model(name, weights=None, classes=3, **shape)
    path = tmp_path / "m.keras"
    model.save(str(path))
    reloaded = keras.models.load_model(str(path), compile=False)
    assert export.model_preprocessing(model) == export.model_preprocessing(reloaded) == mode
    inputs = keras.Input((32, 32, 3))
    wrapped = keras.Model(inputs, keras.layers.Dense(2)(model(inputs)))
    assert export.model_preprocessing(wrapped) == mode
    renamed = keras.Model(model.inputs, model.outputs, name="mine")  # as name="mine" builds
    assert export.model_preprocessing(renamed) is None
    if name == "ResNet20":
        served = export.export_saved_model(reloaded, str(tmp_path / "served"), precision="fp32",
                                           class_names=CLASS_NAMES, warmup=False)
        assert export.saved_model_metadata(served)["preprocessing"] == "tf"


def test_export_run_writes_beside_the_runs_own_version(small_model, version, tmp_path, capsys):
    """Issue 10: after train exported version 1, `export --run RUN` writes 2 beside it."""
    run = tmp_path / "r1"
    run.mkdir()
    small_model.save(str(run / "model.keras"))
    (run / "config.json").write_text(json.dumps({
        "model": "custom", "class_names": CLASS_NAMES, "image_size": SIZE,
        "preprocessing": "tf", "export_path": version}))  # as train records its export
    assert cli.main(["export", "--run", str(run), "--precision", "fp32", "--no-warmup"]) == 0
    base = os.path.dirname(version)
    assert f"SavedModel written to {os.path.join(base, '2')} " in capsys.readouterr().out
    assert export.list_versions(base) == [1, 2]
    assert cli.main(["export", "--run", str(tmp_path / "nothing")]) == 2  # one line, no traceback
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_small_load_run(version):
    spec = importlib.util.spec_from_file_location(
        "serving_load", os.path.join(REPO, "benchmarks", "serving_load.py"))
    serving_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serving_load)
    for batch in (1, 4):
        row = serving_load.run_load(version, threads=2, requests=20, batch=batch, bad_every=4)
        assert row["bad_requests"] == 10 and row["requests"] == 40
        assert row["good_failed"] == 0, row["first_good_failure"]
        assert row["bad_accepted"] == 0 and row["bad_wrong_message"] == []
        assert row["rss_growth_mb"] < 100
        assert row["ok"]
