"""JPEG files in the input pipelines (keras_resnet.data.jpeg, issue 25).

Outside references: TensorFlow's decode of the whole file (the path before: a window
must be its exact slice), libjpeg's own scaled decode (``decode_jpeg(ratio=r)``),
Pillow's crop + antialiased bilinear resize of the same window (the filter TensorFlow's
``antialias=True`` mirrors), and the batches of the old path for the same seed. The
photos are scikit-image's, written as JPEG by Pillow at test time.
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnet import data as kdata
from keras_resnet.data import jpeg, transforms
from keras_resnet.preprocessing import preprocess_affine, preprocess_input

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _photo(name):
    import skimage.data

    return getattr(skimage.data, name)()[..., :3]


def _jpeg_bytes(pixels, subsampling=2, progressive=False):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, subsampling=subsampling,
                                 progressive=progressive)
    return buffer.getvalue()


def _photo_folder(root, size, per_photo=4, png_every=0):
    """``root/<photo>/<i>.jpg``: crops of scikit-image photos resized to ``size``
    (width, height), every ``png_every``-th one a PNG."""
    rng = np.random.default_rng(0)
    for name in PHOTOS[:3]:
        photo = _photo(name)
        os.makedirs(os.path.join(root, name))
        for i in range(per_photo):
            h, w = photo.shape[0] // 2, photo.shape[1] // 2
            y, x = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
            image = Image.fromarray(photo[y:y + h, x:x + w]).resize(size, Image.BICUBIC)
            ext = "png" if png_every and i % png_every == 0 else "jpg"
            image.save(os.path.join(root, name, f"{i}.{ext}"), quality=90)
    return root


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory):
    """Photos near the output size (ratio 1 everywhere), one PNG in three."""
    root = _photo_folder(str(tmp_path_factory.mktemp("small") / "photos"), (60, 45), png_every=3)
    return kdata.load_data(data_dir=root, holdout_fraction=0.25)


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory):
    """Photos 5-6x the output size (32): most crops decode at 1/2 or 1/4 scale."""
    root = _photo_folder(str(tmp_path_factory.mktemp("large") / "photos"), (200, 150))
    return kdata.load_data(data_dir=root, holdout_fraction=0.25)


# --- decoding a window --------------------------------------------------------------


@pytest.mark.parametrize("subsampling,progressive", [(2, False), (0, False), (1, True)])
def test_window_is_the_exact_slice_of_the_whole_decode(subsampling, progressive):
    encoded = _jpeg_bytes(_photo("astronaut")[:301, :257], subsampling, progressive)
    height, width = 301, 257
    np.testing.assert_array_equal(jpeg.header_size(tf.constant(encoded)).numpy(), [height, width])
    rng = np.random.default_rng(subsampling)
    for ratio in (1, 2, 4):
        whole = tf.io.decode_jpeg(encoded, channels=3, ratio=ratio).numpy()
        size = whole.shape[:2]
        for _ in range(12):
            begin = rng.integers(0, np.array(size) - 2)
            end = begin + rng.integers(1, np.array(size) - begin + 1)
            window = jpeg._decode_region(tf.constant(encoded), tf.constant(begin, tf.int32),
                                         tf.constant(end, tf.int32), ratio).numpy()
            np.testing.assert_array_equal(window, whole[begin[0]:end[0], begin[1]:end[1]])


def test_unpadded_window_differs_where_chroma_is_subsampled():
    """Why the margin exists: libjpeg-turbo's window decode treats its border as the
    image's edge, which changes upsampled colour there (4:2:0)."""
    encoded = _jpeg_bytes(_photo("astronaut")[:301, :257], subsampling=2)
    whole = tf.io.decode_jpeg(encoded, channels=3).numpy()
    differs = 0
    for y, x in [(13, 17), (31, 9), (101, 55), (7, 120)]:
        raw = tf.io.decode_and_crop_jpeg(encoded, [y, x, 120, 100], channels=3).numpy()
        differs += not np.array_equal(raw, whole[y:y + 120, x:x + 100])
    assert differs > 0


def test_crop_window_from_the_header_is_the_crop_of_the_decoded_image():
    encoded = tf.constant(_jpeg_bytes(_photo("coffee")[:333, :517]))
    decoded = tf.io.decode_jpeg(encoded, channels=3)
    for s in range(20):
        seed = tf.constant([s, 7], tf.int64)
        # the old path: the bounding box drawn from the decoded image's shape
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(decoded), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
            min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True)
        got_begin, got_extent = transforms.crop_window(jpeg.header_size(encoded), seed)
        np.testing.assert_array_equal(got_begin.numpy(), begin.numpy()[:2])
        np.testing.assert_array_equal(got_extent.numpy(), extent.numpy()[:2])


def test_dct_level_needs_twice_the_output_on_both_axes():
    def level(extent, out):
        return int(jpeg.dct_level(tf.constant(extent), tf.constant(out), "scaled"))

    assert level([447, 600], [224, 224]) == 0
    assert level([448, 448], [224, 224]) == 1
    assert level([900, 1800], [224, 224]) == 2
    assert level([4000, 3000], [224, 224]) == 3
    # evaluation keeps the reduced image twice the resized one
    eval_level = jpeg.dct_level(tf.constant([1023, 1500]), tf.constant([256, 256]), "scaled", 2)
    assert int(eval_level) == 0
    eval_level = jpeg.dct_level(tf.constant([1024, 1500]), tf.constant([256, 256]), "scaled", 2)
    assert int(eval_level) == 1
    assert int(jpeg.dct_level(tf.constant([4000, 3000]), tf.constant([224, 224]), "window")) == 0


# --- training pipelines --------------------------------------------------------------


@pytest.mark.parametrize("augmentation", ["imagenet", "cifar", "none"])
def test_window_path_batches_equal_the_full_decode_bit_for_bit(small_photos, augmentation):
    # ram_budget=1: nothing cached, every preset streams from the files
    kwargs = dict(image_size=32, augmentation=augmentation, seed=5, epochs=2, ram_budget=1)
    full = _batches(small_photos.train_dataset(3, jpeg_decode="full", **kwargs))
    window = _batches(small_photos.train_dataset(3, jpeg_decode="window", **kwargs))
    assert len(full) == len(window) == 2 * small_photos.steps_per_epoch(3)
    for (x1, y1), (x2, y2) in zip(full, window):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_scaled_path_on_small_photos_is_the_full_decode(small_photos):
    """No window is twice 32 in a 60x45 photo: only enlargements change, by rounding."""
    kwargs = dict(image_size=32, seed=2, preprocessing="caffe")
    full = np.concatenate([x for x, _ in _batches(small_photos.train_dataset(3, jpeg_decode="full", **kwargs))])
    scaled = np.concatenate([x for x, _ in _batches(small_photos.train_dataset(3, **kwargs))])
    np.testing.assert_allclose(scaled, full, atol=0.01)


def test_scaled_path_resumes_exactly(large_photos):
    kwargs = dict(image_size=32, seed=11, epochs=2, preprocessing="torch")
    steps = large_photos.steps_per_epoch(2)
    full = _batches(large_photos.train_dataset(2, **kwargs))
    again = _batches(large_photos.train_dataset(2, **kwargs))
    resumed = _batches(large_photos.train_dataset(2, start_epoch=1, start_step=1, **kwargs))
    for (x1, _), (x2, _) in zip(full, again):
        np.testing.assert_array_equal(x1, x2)
    tail = full[steps + 1:]
    assert len(resumed) == len(tail)
    for (x1, y1), (x2, y2) in zip(tail, resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def _pillow_crop_resize(encoded, begin, extent, size):
    """Pillow's decode, crop and antialiased bilinear resize of the same window."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    box = (int(begin[1]), int(begin[0]), int(begin[1] + extent[1]), int(begin[0] + extent[0]))
    return np.asarray(image.resize((size, size), Image.BILINEAR, box=box), np.float32)


def test_scaled_windows_agree_with_pillow_as_closely_as_the_full_decode():
    """The reduced-scale decode keeps the window's geometry: against Pillow's crop and
    resize of the same window, its error is within a level of the full decode's."""
    size = 48
    errors = {"full": [], "scaled": []}
    for name in PHOTOS:
        encoded = _jpeg_bytes(_photo(name))
        height_width = jpeg.header_size(tf.constant(encoded))
        for s in range(6):
            begin, extent = transforms.crop_window(height_width, tf.constant([s, 1], tf.int64))
            if int(jpeg.dct_level(extent, tf.constant([size, size]), "scaled")) == 0:
                continue
            reference = _pillow_crop_resize(encoded, begin.numpy(), extent.numpy(), size)
            for mode in errors:
                out = jpeg.decode_resized(tf.constant(encoded), begin, extent,
                                          tf.constant([size, size]), mode, transforms.resize)
                errors[mode].append(np.abs(out.numpy() - reference).mean())
    assert len(errors["scaled"]) >= 12
    full, scaled = np.mean(errors["full"]), np.mean(errors["scaled"])
    assert full < 3.0  # the decoders differ (TF's default IDCT is libjpeg's fast one)
    assert scaled < full + 1.0


def test_scaled_training_images_stay_close_to_the_full_decode(large_photos):
    kwargs = dict(image_size=32, seed=4, preprocessing="caffe", augmentation="imagenet")
    full = np.concatenate([x for x, _ in _batches(large_photos.train_dataset(3, jpeg_decode="full", **kwargs))])
    scaled = np.concatenate([x for x, _ in _batches(large_photos.train_dataset(3, **kwargs))])
    per_image = np.abs(scaled - full).reshape(len(full), -1).mean(axis=1)
    assert (per_image > 0.1).sum() >= len(full) // 3  # the reduced decode did run
    assert per_image.max() < 6.0 and per_image.mean() < 3.0  # levels of 0..255


# --- evaluation ------------------------------------------------------------------------


def test_scaled_evaluation_stays_close_to_the_full_decode(large_photos):
    full = np.concatenate([x for x, _ in _batches(large_photos.eval_dataset(
        "test", 4, image_size=32, augmentation="imagenet", jpeg_decode="full", ram_budget=1))])
    scaled = np.concatenate([x for x, _ in _batches(large_photos.eval_dataset(
        "test", 4, image_size=32, augmentation="imagenet", ram_budget=1))])
    # 150-pixel shorter sides are 4x round(32 / 0.875) = 37: every photo decodes at 1/2
    per_image = np.abs(scaled - full).reshape(len(full), -1).mean(axis=1) * 127.5
    assert per_image.min() > 0.1
    assert per_image.max() < 4.0


def test_scaled_evaluation_matches_pillow_resize_and_center_crop():
    """torchvision's eval transform, Resize(37) + CenterCrop(32), in Pillow: the scaled
    decode is within a level of the full decode's distance to it."""
    size, resized = 32, round(32 / transforms.CENTER_CROP_FRACTION)
    errors = {"full": [], "scaled": []}
    for name in PHOTOS:
        encoded = _jpeg_bytes(_photo(name))
        image = Image.open(io.BytesIO(encoded)).convert("RGB")
        w, h = image.size
        scale = resized / min(w, h)
        new = (round(w * scale), round(h * scale))
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        reference = np.asarray(image.resize(new, Image.BILINEAR), np.float32)[top:top + size, left:left + size]
        for mode in errors:
            out = transforms.eval_image_encoded(tf.constant(encoded), "center", size, mode)
            errors[mode].append(np.abs(out.numpy() - reference).mean())
    assert np.mean(errors["full"]) < 3.0
    assert np.mean(errors["scaled"]) < np.mean(errors["full"]) + 1.0


# --- options and arguments -------------------------------------------------------------


def test_threads_and_ram_budget_reach_tf_data(small_photos):
    budget = 1 << 28
    options = small_photos.train_dataset(3, threads=2, ram_budget=budget, augmentation="imagenet").options()
    assert options.threading.private_threadpool_size == 2
    assert options.autotune.cpu_budget == 2
    assert options.autotune.ram_budget == budget  # streamed: all of it for tf.data's buffers
    # the "cifar" preset caches the decoded 45x45 images: tf.data gets what they leave
    cached = small_photos.train_dataset(3, ram_budget=budget, augmentation="cifar").options()
    assert cached.autotune.ram_budget == budget - small_photos.num_train * 45 * 45 * 3
    assert small_photos.train_dataset(3).options().threading.private_threadpool_size in (None, 0)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda d: d.train_dataset(3, jpeg_decode="fast"), "jpeg_decode='fast'"),
        (lambda d: d.train_dataset(3, ram_budget=0), "ram_budget=0"),
        (lambda d: d.train_dataset(3, threads=0), "threads=0"),
        (lambda d: d.eval_dataset("test", 3, jpeg_decode=None), "jpeg_decode=None"),
        (lambda d: d.eval_dataset("test", 3, threads=1.5), "threads=1.5"),
    ],
)
def test_bad_reading_arguments(small_photos, call, match):
    with pytest.raises(ValueError, match=match):
        call(small_photos)


@pytest.mark.parametrize("mode", ["tf", "torch", "kinetics"])
def test_affine_preprocessing_is_preprocess_input(mode):
    x = np.random.default_rng(0).uniform(0, 255, (4, 5, 5, 3)).astype(np.float32)
    scale, offset = preprocess_affine(mode)
    np.testing.assert_allclose(x * scale + offset, preprocess_input(x, mode=mode), atol=2e-6)


def test_caffe_preprocessing_has_no_affine_form():
    assert preprocess_affine("caffe") is None
