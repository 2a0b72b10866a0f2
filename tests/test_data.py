"""Datasets and input pipelines (keras_resnet.data).

Outside references: scikit-learn's digits (1,797 images, per-class counts), Pillow's
decoding of the PNG files we write, numpy formulas for the three preprocessing modes,
numpy shifts and flips for the crop augmentations, TensorFlow Datasets' own reading of
its (mocked) datasets and CIFAR-10's published class names.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits

from keras_resnet import data as kdata
from keras_resnet.data import image_data, sources, tfds_source

@pytest.fixture(scope="module")
def digits():
    return kdata.load_data()


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _stack(batches):
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


# --- digits ------------------------------------------------------------------


def test_digits_counts_and_stratified_split(digits):
    target = load_digits().target
    assert digits.num_train + digits.num_test == 1797 == len(target)
    assert digits.num_val == 0 and digits.image_size == 32
    assert digits.class_names == [str(i) for i in range(10)]
    _, test_labels = _stack(_batches(digits.eval_dataset("test", 100)))
    _, train_labels = _stack(_batches(digits.eval_dataset("train", 100)))
    per_class = np.bincount(target, minlength=10)
    # every class in the test set, 20% of its images (rounded)
    np.testing.assert_array_equal(np.bincount(test_labels, minlength=10), np.round(0.2 * per_class))
    np.testing.assert_array_equal(
        np.bincount(train_labels, minlength=10) + np.bincount(test_labels, minlength=10), per_class
    )
    # no silent fall-back to the test split: "val" of a dataset without one is an error
    with pytest.raises(ValueError, match="--split val: .* no validation split; splits: train, test"):
        digits.eval_dataset("val", 100)


def test_digits_images_are_sklearn_digits_with_their_labels(digits):
    sk = load_digits()
    # reference: Pillow's bilinear 8x8 -> 32x32 resize of the 0..16 values scaled to 0..255
    reference = np.stack(
        [
            np.asarray(
                Image.fromarray((img * (255.0 / 16.0)).astype(np.float32), mode="F").resize(
                    (32, 32), Image.BILINEAR
                )
            )
            for img in sk.images
        ]
    )
    images, labels = digits.raw_images("test", 60)
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images[..., 0], images[..., 2])  # gray replicated to RGB
    diff = np.abs(images[:, None, :, :, 0] - reference[None]).max(axis=(2, 3))
    source = diff.argmin(axis=1)
    assert diff[np.arange(60), source].max() <= 1.0  # each one is a sklearn digit
    np.testing.assert_array_equal(sk.target[source], labels)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocessing_modes_match_numpy_formulas(digits, mode):
    raw, raw_labels = digits.raw_images("test", 50)
    x = raw.astype(np.float64)
    if mode == "tf":
        expected = x / 127.5 - 1
    elif mode == "torch":
        expected = (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    else:
        expected = x[..., ::-1] - [103.939, 116.779, 123.68]
    got = next(iter(digits.eval_dataset("test", 50, preprocessing=mode)))
    assert got[0].dtype == tf.float32 and got[1].dtype == tf.int32
    np.testing.assert_allclose(got[0].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(got[1].numpy(), raw_labels)


def test_train_batches_shapes_and_epochs_are_permutations(digits):
    steps = digits.steps_per_epoch(64)
    assert steps == digits.num_train // 64
    batches = _batches(digits.train_dataset(64, augmentation="none", epochs=2, seed=3))
    assert len(batches) == 2 * steps
    assert all(x.shape == (64, 32, 32, 3) and y.shape == (64,) for x, y in batches)
    # batch size 2 divides the 1,438 training images: one epoch is a permutation of them
    assert digits.num_train % 2 == 0
    epoch, epoch_labels = _stack(_batches(digits.train_dataset(2, augmentation="none", seed=3)))
    ordered, ordered_labels = _stack(_batches(digits.eval_dataset("train", 256)))

    def keyed(images, labels):
        return sorted((img.round(4).tobytes(), int(lab)) for img, lab in zip(images, labels))

    assert keyed(epoch, epoch_labels) == keyed(ordered, ordered_labels)
    assert not np.array_equal(epoch_labels, ordered_labels)


@pytest.mark.parametrize("augmentation", ["cifar", "imagenet"])
def test_resume_yields_the_tail_of_an_uninterrupted_run(digits, augmentation):
    steps = digits.steps_per_epoch(64)
    kwargs = dict(augmentation=augmentation, preprocessing="torch", seed=11, epochs=3)
    full = _batches(digits.train_dataset(64, **kwargs))
    for start_epoch, start_step in [(1, 7), (2, 0), (0, steps - 1)]:
        resumed = _batches(
            digits.train_dataset(64, start_epoch=start_epoch, start_step=start_step, **kwargs)
        )
        tail = full[start_epoch * steps + start_step :]
        assert len(resumed) == len(tail)
        for (x1, y1), (x2, y2) in zip(tail, resumed):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)


def _shift(image, dy, dx):
    """numpy reference of pad-with-zeros then crop: content moved by (dy, dx)."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize("augmentation,flip", [("cifar", True), ("crop", False)])
def test_pad_crop_is_a_shift_and_flip_of_the_image(digits, augmentation, flip):
    plain, labels = next(iter(digits.train_dataset(32, augmentation="none", seed=5)))
    aug, aug_labels = next(iter(digits.train_dataset(32, augmentation=augmentation, seed=5)))
    plain, aug = (plain.numpy() + 1) * 127.5, (aug.numpy() + 1) * 127.5  # "tf" mode undone
    np.testing.assert_array_equal(labels.numpy(), aug_labels.numpy())  # same order
    moved = flipped = 0
    for original, augmented in zip(plain, aug):
        candidates = {
            (dy, dx, f): _shift(original[:, ::-1] if f else original, dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            for f in ((False, True) if flip else (False,))
        }
        matches = [k for k, c in candidates.items() if np.allclose(c, augmented, atol=1e-3)]
        assert matches, "augmented image is no shift (and flip) of the original"
        moved += (0, 0, False) not in matches
        flipped += all(k[2] for k in matches)
    assert moved >= 24  # P(no shift) = 1/81 per image
    assert (flipped > 4) if flip else flipped == 0


def test_augmentation_reproducible_from_seed_and_varies_with_it(digits):
    def first(seed, epoch=0):
        ds = digits.train_dataset(
            64, augmentation="imagenet", seed=seed, start_epoch=epoch, epochs=epoch + 1
        )
        return next(iter(ds))[0].numpy()

    a = first(1)
    np.testing.assert_array_equal(a, first(1))
    assert not np.array_equal(a, first(2))
    assert not np.array_equal(a, first(1, epoch=1))
    plain = next(iter(digits.train_dataset(64, augmentation="none", seed=1)))[0].numpy()
    changed = np.abs(a - plain).reshape(64, -1).max(axis=1) > 0.1
    assert changed.mean() > 0.9
    assert a.min() >= -1 - 1e-5 and a.max() <= 1 + 1e-5


def test_image_size_argument(digits):
    x, _ = next(iter(digits.train_dataset(16, image_size=48, augmentation="imagenet")))
    assert x.shape == (16, 48, 48, 3)
    x, _ = next(iter(digits.eval_dataset("test", 16, image_size=40, augmentation="imagenet")))
    assert x.shape == (16, 40, 40, 3)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda d: d.train_dataset(0), "global_batch_size=0"),
        (lambda d: d.train_dataset(5000), "global_batch_size=5000"),
        (lambda d: d.train_dataset(32, image_size=4), "image_size=4"),
        (lambda d: d.train_dataset(32, augmentation="autoaugment"), "augmentation='autoaugment'"),
        (lambda d: d.train_dataset(32, preprocessing="bgr"), "preprocessing='bgr'"),
        (lambda d: d.train_dataset(32, start_epoch=2, epochs=2), "start_epoch=2"),
        (lambda d: d.train_dataset(32, start_step=44), "start_step=44"),
        (lambda d: d.train_dataset(32, seed=1.5), "seed=1.5"),
        (lambda d: d.eval_dataset("holdout", 32), "split='holdout'"),
        (lambda d: d.eval_dataset("test", -1), "global_batch_size=-1"),
        (lambda d: d.raw_images("test", 0), "n=0"),
    ],
)
def test_bad_pipeline_arguments(digits, call, match):
    with pytest.raises(ValueError, match=match):
        call(digits)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(holdout_fraction=0), "holdout_fraction=0"),
        (dict(holdout_fraction=1.5), "holdout_fraction=1.5"),
        (dict(seed="x"), "seed='x'"),
        (dict(dataset=""), "dataset=''"),
        (dict(download="yes"), "download='yes'"),
    ],
)
def test_bad_load_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kdata.load_data(**kwargs)


def test_pipeline_throughput(digits):
    assert kdata.pipeline_throughput(digits, global_batch_size=32, steps=3, warmup_steps=1) > 0


# --- folders -------------------------------------------------------------------

COLORS = {"blue": (20, 40, 230), "green": (30, 220, 40), "red": (230, 30, 20)}


def _write_class_images(folder, count, size=(20, 16), rng=None, fmt="png"):
    rng = rng or np.random.default_rng(0)
    written = {}
    for name, color in COLORS.items():
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i in range(count):
            noise = rng.integers(-20, 20, size=(size[1], size[0], 3))
            pixels = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)
            ext = fmt if fmt != "mixed" else ("png" if i % 2 else "jpg")
            path = os.path.join(folder, name, f"img{i:03d}.{ext}")
            Image.fromarray(pixels).save(path, quality=95)
            written[path] = pixels
    return written


def _dominant(images):
    return images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1)


# blue, green, red class index -> dominant RGB channel
CHANNEL_OF_CLASS = np.array([2, 1, 0])


def test_folder_skips_corrupt_and_non_image_files(tmp_path, capsys):
    root = tmp_path / "colors"
    _write_class_images(str(root), 10, fmt="mixed")
    bad = [root / "red" / "broken.jpg", root / "green" / "notes.txt", root / "blue" / "cut.png",
           root / "blue" / "cut.jpg"]  # fmt: skip
    bad[0].write_bytes(os.urandom(300))
    bad[1].write_text("not an image")
    good_png = (root / "blue" / "img001.png").read_bytes()
    bad[2].write_bytes(good_png[: len(good_png) // 2])
    good_jpg = (root / "blue" / "img000.jpg").read_bytes()
    bad[3].write_bytes(good_jpg[: len(good_jpg) // 2])
    (root / "red" / ".DS_Store").write_bytes(b"\0\1")  # hidden files are ignored
    red = Image.open(root / "red" / "img001.png")
    red.save(root / "red" / "extra.bmp")
    red.save(root / "red" / "extra.gif")  # BMP and GIF decode too

    data = kdata.load_data(data_dir=str(root))
    assert sorted(data.skipped_files) == sorted(str(p) for p in bad)
    out = capsys.readouterr().out
    assert "skipped 4 of 36 files" in out and out.count("\n") == 1
    assert data.name == "colors" and data.class_names == ["blue", "green", "red"]
    assert data.num_train + data.num_test == 32 and data.num_val == 0
    assert data.image_size == 16 and data.default_augmentation == "cifar"
    for split in ("train", "test"):
        images, labels = data.raw_images(split, 100)
        assert len(labels) == (data.num_train if split == "train" else data.num_test)
        assert set(labels) == {0, 1, 2}  # stratified: every class in each split
        np.testing.assert_array_equal(_dominant(images), CHANNEL_OF_CLASS[labels])
    x, y = next(iter(data.train_dataset(8, preprocessing="caffe")))
    assert x.shape == (8, 16, 16, 3) and y.shape == (8,)
    # the resumed pipeline of a folder dataset equals the tail of a full one
    kwargs = dict(augmentation="cifar", seed=2, epochs=2)
    full = _batches(data.train_dataset(4, **kwargs))
    resumed = _batches(data.train_dataset(4, start_epoch=1, start_step=1, **kwargs))
    steps = data.steps_per_epoch(4)
    for (x1, y1), (x2, y2) in zip(full[steps + 1 :], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_folder_holdout_is_fixed_by_seed(tmp_path):
    root = str(tmp_path / "d")
    _write_class_images(root, 10)
    a = kdata.load_data(data_dir=root).raw_images("test", 100)
    b = kdata.load_data(data_dir=root).raw_images("test", 100)
    c = kdata.load_data(data_dir=root, seed=1).raw_images("test", 100)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[1]) == 6 and not np.array_equal(a[0], c[0])


def test_split_folders_and_pixels_equal_pillow(tmp_path):
    root = tmp_path / "splits"
    rngs = [np.random.default_rng(i) for i in range(3)]
    _write_class_images(str(root / "train"), 6, size=(24, 24), rng=rngs[0])
    test_files = _write_class_images(str(root / "test"), 3, size=(24, 24), rng=rngs[1])
    _write_class_images(str(root / "val"), 2, size=(24, 24), fmt="jpg", rng=rngs[2])
    data = kdata.load_data(data_dir=str(root))
    assert (data.num_train, data.num_val, data.num_test) == (18, 6, 9)
    images, labels = data.raw_images("test", 9)
    # test files in class order, then file name order; PNG pixels exactly as Pillow reads them
    expected = [test_files[p] for p in sorted(test_files)]
    np.testing.assert_array_equal(images, np.stack(expected))
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    val_images, val_labels = data.raw_images("val", 100)
    np.testing.assert_array_equal(_dominant(val_images), CHANNEL_OF_CLASS[val_labels])
    assert len(_batches(data.eval_dataset("val", 4))) == 2  # 6 images, remainder kept


def test_large_images_default_to_imagenet_preset(tmp_path):
    root = str(tmp_path / "big")
    _write_class_images(root, 4, size=(120, 90), fmt="jpg")
    data = kdata.load_data(data_dir=root)
    assert data.image_size == 224 and data.default_augmentation == "imagenet"
    x, _ = next(iter(data.eval_dataset("train", 4, image_size=64)))
    assert x.shape == (4, 64, 64, 3)
    x, _ = next(iter(data.train_dataset(2, image_size=64)))
    assert x.shape == (2, 64, 64, 3)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="data_dir=.*missing"):
        kdata.load_data(data_dir=str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="two class subfolders.*Received: data_dir="):
        kdata.load_data(data_dir=str(empty))
    one = tmp_path / "one"
    (one / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one / "cats" / "a.png")
    with pytest.raises(ValueError, match="two class subfolders.*Received: data_dir="):
        kdata.load_data(data_dir=str(one))
    junk = tmp_path / "junk"
    for name in ("a", "b"):
        (junk / name).mkdir(parents=True)
        (junk / name / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no readable images.*2 files skipped"):
        kdata.load_data(data_dir=str(junk))
    split = tmp_path / "split"
    _write_class_images(str(split / "train"), 2)
    (split / "test" / "zebra").mkdir(parents=True)
    with pytest.raises(ValueError, match="zebra"):
        kdata.load_data(data_dir=str(split))


# --- TensorFlow Datasets ---------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """No network, and a tfds download attempt fails the test."""
    monkeypatch.setattr(tfds_source, "_network_available", lambda: False)

    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)


def _tfds_reference(split, n):
    ds = tfds.load("cifar10", split=split, as_supervised=True, shuffle_files=False)
    pairs = list(ds.take(n).as_numpy_iterator())
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@pytest.mark.parametrize("in_memory", [True, False])
def test_tfds_mock_cifar10(monkeypatch, in_memory):
    monkeypatch.setattr(tfds_source, "_network_available", lambda: True)  # download is mocked
    if not in_memory:
        monkeypatch.setattr(sources, "MEMORY_CACHE_BYTES", 0)
        monkeypatch.setattr(image_data, "SHUFFLE_WINDOW", 16)
    with tfds.testing.mock_data(num_examples=48):
        data = kdata.load_data("cifar10")
        assert isinstance(data._splits["train"], sources.TfdsStream) != in_memory
        # mocked tfds has no label file: its names are "0".."9", not "airplane", ...
        assert data.class_names == tfds.builder("cifar10").info.features["label"].names
        assert len(data.class_names) == 10
        assert (data.num_train, data.num_val, data.num_test) == (48, 0, 48)
        assert data.image_size == 32 and data.default_augmentation == "cifar"
        images, labels = data.raw_images("test", 10)
        ref_images, ref_labels = _tfds_reference("test", 10)
        np.testing.assert_array_equal(images, ref_images)
        np.testing.assert_array_equal(labels, ref_labels)
        # an epoch without augmentation is a permutation of tfds' images
        epoch, epoch_labels = _stack(_batches(data.train_dataset(8, augmentation="none")))
        all_images, all_labels = _tfds_reference("train", 48)
        key = lambda xs, ys: sorted((x.tobytes(), int(y)) for x, y in zip(xs, ys))  # noqa: E731
        assert key(np.round((epoch + 1) * 127.5).astype(np.uint8), epoch_labels) == key(
            all_images, all_labels
        )
        kwargs = dict(augmentation="cifar", seed=4, epochs=2)
        full = _batches(data.train_dataset(8, **kwargs))
        resumed = _batches(data.train_dataset(8, start_epoch=0, start_step=3, **kwargs))
        for (x1, y1), (x2, y2) in zip(full[3:], resumed, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
        # a validation split held out of train, in memory or from the stream
        held = data.with_validation_holdout(0.25, seed=0)
        assert held.num_train + held.num_val == 48 and held.num_val >= 10
        parts = [held.raw_images(s, 48) for s in ("train", "val")]
        assert _multiset(*parts[0]) + _multiset(*parts[1]) == _multiset(*_tfds_reference("train", 48))
        assert len(_batches(held.train_dataset(8, augmentation="none"))) == held.num_train // 8


@pytest.mark.timeout(60)
def test_tfds_unprepared_offline_fails_fast(tmp_path, offline):
    with pytest.raises(RuntimeError) as error:
        kdata.load_data("cifar10", tfds_data_dir=str(tmp_path))
    message = str(error.value)
    assert "'cifar10' is not prepared" in message and str(tmp_path) in message
    assert "tfds build cifar10" in message and "tfds_data_dir" in message
    with pytest.raises(RuntimeError, match="download=False"):
        kdata.load_data("cifar10", tfds_data_dir=str(tmp_path), download=False)
    with pytest.raises(RuntimeError, match="manual_dir"):
        kdata.load_data("imagenet2012", tfds_data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="manual_dir="):
        kdata.load_data(
            "imagenet2012", tfds_data_dir=str(tmp_path), manual_dir=str(tmp_path / "no")
        )


def test_tfds_unknown_or_unsuitable_dataset(tmp_path, offline):
    with pytest.raises(ValueError, match="dataset='no_such_dataset_xyz'"):
        kdata.load_data("no_such_dataset_xyz", tfds_data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="image classification.*dataset='imdb_reviews'"):
        kdata.load_data("imdb_reviews", tfds_data_dir=str(tmp_path))


def test_network_probe_gives_up_on_a_closed_port(monkeypatch):
    with socket_on_free_port() as port:
        pass  # closed again: connecting is refused
    monkeypatch.setattr(tfds_source, "NETWORK_PROBE_ADDRESS", ("127.0.0.1", port))
    assert tfds_source._network_available() is False


class socket_on_free_port:
    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


# --- decompression bombs in class folders ------------------------------------------


def _png_20000_square(path, side=20_000):
    """A real 1-bit grayscale PNG of side x side pixels (all black), written row by row:
    a few hundred KB on disk, 400 million pixels (1.2 GB as RGB) when decoded."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, idat = zlib.compressobj(9), b"\0" * (1 + side // 8), []
    for _ in range(side):
        idat.append(compressor.compress(row))
    idat.append(compressor.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))


def _large_headers(folder):
    """JPEG 13,000^2, GIF 16,000^2 and WebP 16,383^2 headers (as in the serving issue):
    small real files whose dimension fields say so. Returns {path: (width, height)}."""
    import io
    import struct

    out = {}
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(buf, "JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 13_000, 13_000)
    out[os.path.join(folder, "bomb.jpg")] = (bytes(jpeg), (13_000, 13_000))
    buf = io.BytesIO()
    Image.new("P", (16, 16)).save(buf, "GIF")
    gif = bytearray(buf.getvalue())
    gif[6:10] = struct.pack("<HH", 16_000, 16_000)  # logical screen size
    out[os.path.join(folder, "bomb.gif")] = (bytes(gif), (16_000, 16_000))
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "WEBP", lossless=True)
    webp = bytearray(buf.getvalue())
    at = webp.index(b"VP8L") + 9  # 14 bits width - 1, 14 bits height - 1
    bits = int.from_bytes(webp[at : at + 4], "little") & ~((1 << 28) - 1)
    webp[at : at + 4] = (bits | 16_382 | 16_382 << 14).to_bytes(4, "little")
    out[os.path.join(folder, "bomb.webp")] = (bytes(webp), (16_383, 16_383))
    for path, (data, _) in out.items():
        with open(path, "wb") as f:
            f.write(data)
    return {path: size for path, (_, size) in out.items()}


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident_during(fn):
    """(fn(), highest resident memory sampled every 5 ms while it ran)."""
    import threading

    peak, done = [_resident_bytes()], threading.Event()

    def sample():
        while not done.wait(0.005):
            peak.append(_resident_bytes())

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return result, max(peak + [_resident_bytes()])


def test_folder_skips_decompression_bombs_from_their_headers(tmp_path, capsys, monkeypatch):
    import skimage.data

    root = tmp_path / "photos"
    (root / "animals").mkdir(parents=True)
    (root / "things").mkdir()
    photos = {"animals/chelsea.jpg": skimage.data.chelsea(), "animals/astronaut.png": skimage.data.astronaut(),
              "things/coffee.jpg": skimage.data.coffee(), "things/rocket.jpg": skimage.data.rocket()}  # fmt: skip
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(root / name, quality=95)
    png = str(root / "animals" / "bomb.png")
    _png_20000_square(png)
    assert os.path.getsize(png) < 1_000_000
    bombs = {png: (20_000, 20_000), **_large_headers(str(root / "things"))}
    with monkeypatch.context() as m:  # a real PNG: Pillow reads it and its checksums
        m.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(png) as image:
            assert image.size == (20_000, 20_000)
            image.verify()
    pillow_limit = Image.MAX_IMAGE_PIXELS

    before = _resident_bytes()
    data, peak = _peak_resident_during(lambda: kdata.load_data(data_dir=str(root)))
    assert peak - before < 100 * 2**20, f"resident memory grew by {(peak - before) / 2**20:.0f} MB"
    assert sorted(data.skipped_files) == sorted(bombs)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # Pillow's own check is back
    for path, (width, height) in bombs.items():
        assert f"{width} x {height} pixels, over max_image_pixels=50,000,000" in data.skip_reasons[path]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "skipped 4 of 8 files" in out
    assert "4 over max_image_pixels (e.g. " in out and "20000 x 20000 pixels" in out
    # the real photos (up to 512 x 512) load and decode
    assert data.num_train + data.num_test == 4
    images, _ = data.raw_images("train", 4, image_size=64)
    assert images.shape[1:] == (64, 64, 3) and images.std() > 10

    # the limit is an option: at 250,000 pixels the 512 x 512 astronaut goes too
    data = kdata.load_data(data_dir=str(root), max_image_pixels=250_000)
    astronaut = str(root / "animals" / "astronaut.png")
    assert data.skip_reasons[astronaut] == "512 x 512 pixels, over max_image_pixels=250,000"
    assert data.num_train + data.num_test == 2  # chelsea (451 x 300), coffee (600 x 400)
    with pytest.raises(ValueError, match="max_image_pixels=0"):
        kdata.load_data(data_dir=str(root), max_image_pixels=0)


# --- validation hold-out ------------------------------------------------------------


def _multiset(images, labels):
    from collections import Counter

    return Counter((x.tobytes(), int(y)) for x, y in zip(images, labels))


def test_validation_holdout_is_stratified_seeded_and_disjoint(digits):
    train_images, train_labels = digits.raw_images("train", 10_000)
    held = digits.with_validation_holdout(0.1, seed=7)
    assert digits.num_val == 0 and digits.num_train == 1438  # the original is unchanged
    per_class = np.bincount(train_labels, minlength=10)
    val_images, val_labels = held.raw_images("val", 10_000)
    rest_images, rest_labels = held.raw_images("train", 10_000)
    # stratified: round(10%) of each class of train
    np.testing.assert_array_equal(np.bincount(val_labels, minlength=10), np.round(0.1 * per_class))
    # disjoint, and together exactly the old train split
    assert _multiset(val_images, val_labels) + _multiset(rest_images, rest_labels) == _multiset(
        train_images, train_labels
    )
    assert (held.num_train, held.num_val, held.num_test) == (len(rest_labels), len(val_labels), 359)
    # the same for a seed, another for another seed
    again = digits.with_validation_holdout(0.1, seed=7).raw_images("val", 10_000)
    np.testing.assert_array_equal(again[0], val_images)
    other = digits.with_validation_holdout(0.1, seed=8).raw_images("val", 10_000)
    assert not np.array_equal(other[0], val_images)
    # the test split is untouched; what was held out is reported
    np.testing.assert_array_equal(held.raw_images("test", 400)[0], digits.raw_images("test", 400)[0])
    expected_val = int(np.round(0.1 * per_class).sum())  # 143 of 1,438
    assert held.split_info["counts"] == {"train": 1438 - expected_val, "val": expected_val, "test": 359}
    assert held.split_info["validation"] == {
        "source": "held out of train, stratified per class", "fraction": 0.1, "seed": 7
    }  # fmt: skip
    assert f"{expected_val} val (0.1 of each class of train, seed 7)" in held.describe_splits()
    # the training pipeline reads only what stayed in train
    assert held.steps_per_epoch(64) == held.num_train // 64
    epoch, epoch_labels = _stack(_batches(held.train_dataset(2, augmentation="none", seed=1)))
    seen = _multiset(np.round((epoch + 1) * 127.5).astype(np.uint8), epoch_labels)
    assert len(epoch_labels) == held.num_train // 2 * 2  # the odd one out is dropped
    assert not seen - _multiset(rest_images, rest_labels)  # and every one is from train


def test_validation_holdout_arguments_and_existing_val_split(digits, tmp_path):
    with pytest.raises(ValueError, match="fraction=0"):
        digits.with_validation_holdout(0)
    with pytest.raises(ValueError, match="seed=None"):
        digits.with_validation_holdout(0.1, seed=None)
    with pytest.raises(ValueError, match="validation_fraction=2"):
        kdata.load_data(validation_fraction=2)
    via_load = kdata.load_data(validation_fraction=0.1, seed=3)
    assert via_load.split_info == digits.with_validation_holdout(0.1, seed=3).split_info
    root = tmp_path / "splits"
    for split, count in (("train", 4), ("test", 2), ("val", 2)):
        _write_class_images(str(root / split), count)
    data = kdata.load_data(data_dir=str(root))
    assert data.with_validation_holdout(0.5) is data  # a dataset's own val split is kept
    assert data.split_info["validation"] == {"source": "the dataset's validation split"}
