"""Image transforms of the input pipelines: float32 HxWx3 images in 0..255 in and out.

Every random choice (a crop, a flip) comes from a stateless op and an explicit seed, so
a pipeline rebuilt from the same seeds yields the same images (exact resume).
"""

import numpy as np
import tensorflow as tf

from keras_resnet.data import jpeg
from keras_resnet.preprocessing import check_preprocessing, preprocess_affine, preprocess_input
from keras_resnet.specs import AUGMENTATIONS  # noqa: F401  (keras_resnet.data.AUGMENTATIONS)

# Training augmentation presets:
# "cifar": pad, random crop back, horizontal flip (He et al. 2015, sec. 4.2).
# "crop": the same without the flip, for data where mirroring changes the class or is
#     never seen (handwritten digits: a mirrored 2, 3, 7 is not a digit).
# "imagenet": random resized crop, scale (0.08, 1), aspect (3/4, 4/3), and flip
#     (Szegedy et al. 2015, as torchvision / timm); evaluation resizes the shorter side
#     to size / 0.875 and takes the center crop.
# "none": resize only.
# (specs.AUGMENTATIONS names them, for modules that must not load TensorFlow.)
CENTER_CROP_FRACTION = 0.875


def fold(seed, data):
    """A new [2] int64 seed from a seed and an integer (stateless, order-free)."""
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def resize(image, size):
    """Bilinear with antialiasing to ``size`` (an int: square, or int32 [2] height, width)."""
    shape = [size, size] if isinstance(size, int) else size
    return tf.image.resize(image, shape, method="bilinear", antialias=True)


def pad_crop(image, size, seed, flip):
    """Pad ``size // 8`` pixels (4 at 32x32, the paper's) around the image resized to
    ``size`` and crop ``size`` back."""
    pad = max(1, size // 8)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def crop_window(height_width, seed):
    """``(begin, extent)``, int32 [2] each: the random resized crop of an image of
    ``height_width`` (int32 [2]), scale (0.08, 1), aspect (3/4, 4/3), a stateless
    function of the size and ``seed`` alone, so the same whether the size comes from
    the decoded image or from a JPEG's header."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([height_width, [3]], 0),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[:2], extent[:2]


def split_seed(seed):
    """(crop seed, flip seed) of one image's seed."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, 2))


def center_geometry(height_width, size):
    """``(resized shape, crop offset)`` of :func:`center_crop`, int32 [2] each: the image
    scaled so its shorter side is ``round(size / 0.875)``, then its central square."""
    shape = tf.cast(height_width, tf.float32)
    scale = round(size / CENTER_CROP_FRACTION) / tf.reduce_min(shape)
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    return new_shape, (new_shape - size) // 2


def center_crop(image, size):
    """Resize the shorter side to ``size / 0.875``, then take the central square."""
    new_shape, _ = center_geometry(tf.shape(image)[:2], size)
    image = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    return tf.image.resize_with_crop_or_pad(image, size, size)


def train_transform(image, augmentation, size, seed):
    """One training image through the ``augmentation`` preset, ``size`` x ``size`` out."""
    image = tf.cast(image, tf.float32)
    if augmentation == "imagenet":
        crop_seed, flip_seed = split_seed(seed)
        begin, extent = crop_window(tf.shape(image)[:2], crop_seed)
        image = resize(tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([extent, [-1]], 0)), size)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    else:
        image = _after_resize(resize(image, size), augmentation, size, seed)
    image.set_shape([size, size, 3])
    return image


def _after_resize(image, augmentation, size, seed):
    """The pad-crop presets on an image already resized to ``size``; "none" as it is."""
    if augmentation in ("cifar", "crop"):
        return pad_crop(image, size, seed, flip=augmentation == "cifar")
    return image


def eval_image(image, kind, size):
    """One evaluation image, ``size`` x ``size``: ``kind`` "center" (ImageNet-style: the
    center crop) or "resize" (small images: the whole image). Not to be confused with a
    weight set's stated transform (:func:`keras_resnet.weights.eval_transform`)."""
    image = tf.cast(image, tf.float32)
    image = center_crop(image, size) if kind == "center" else resize(image, size)
    image.set_shape([size, size, 3])
    return image


def train_transform_encoded(encoded, augmentation, size, seed, jpeg_decode):
    """:func:`train_transform` of an encoded image. A JPEG, unless ``jpeg_decode`` is
    "full", has its crop drawn from its header and only the window decoded
    (:mod:`keras_resnet.data.jpeg`); other formats are decoded whole."""
    if jpeg_decode == "full":
        return train_transform(decode(encoded), augmentation, size, seed)

    def from_window():
        height_width = jpeg.header_size(encoded)
        out = tf.constant([size, size], tf.int32)
        if augmentation == "imagenet":
            crop_seed, flip_seed = split_seed(seed)
            begin, extent = crop_window(height_width, crop_seed)
            image = jpeg.decode_resized(encoded, begin, extent, out, jpeg_decode, resize)
            return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        image = jpeg.decode_resized(encoded, tf.zeros([2], tf.int32), height_width, out,
                                    jpeg_decode, resize)
        return _after_resize(image, augmentation, size, seed)

    image = tf.cond(
        tf.io.is_jpeg(encoded),
        from_window,
        lambda: train_transform(decode(encoded), augmentation, size, seed),
    )
    image.set_shape([size, size, 3])
    return image


def eval_image_encoded(encoded, kind, size, jpeg_decode):
    """:func:`eval_image` of an encoded image; a JPEG under ``jpeg_decode="scaled"``
    is decoded at 1/2, 1/4 or 1/8 scale where the reduced image is still twice the
    resized one (``jpeg.EVAL_HEADROOM``: the shorter side at least ``2 r`` times
    ``round(size / 0.875)`` for "center", both sides ``2 r`` times ``size`` for
    "resize"), then resampled onto the same grid."""
    if jpeg_decode != "scaled":
        return eval_image(decode(encoded), kind, size)

    def from_scaled():
        height_width = jpeg.header_size(encoded)
        if kind == "center":
            new_shape, offset = center_geometry(height_width, size)
        else:
            new_shape, offset = tf.constant([size, size], tf.int32), tf.zeros([2], tf.int32)
        # output pixel j of the crop is pixel j + offset of the resized image
        scale = tf.cast(new_shape, tf.float32) / tf.cast(height_width, tf.float32)

        def decode_at(ratio):
            if ratio == 1:
                return eval_image(decode(encoded), kind, size)
            pixels = tf.io.decode_jpeg(encoded, channels=3, ratio=ratio)
            offset_in_pixels = tf.cast(offset, tf.float32) / scale / ratio
            return jpeg.resample(pixels, offset_in_pixels, size / scale / ratio,
                                 tf.constant([size, size], tf.int32))

        level = jpeg.dct_level(height_width, new_shape, "scaled", headroom=jpeg.EVAL_HEADROOM)
        return jpeg.by_level(level, decode_at)

    image = tf.cond(tf.io.is_jpeg(encoded), from_scaled,
                    lambda: eval_image(decode(encoded), kind, size))
    image.set_shape([size, size, 3])
    return image


def eval_kind(augmentation):
    """The evaluation transform that goes with a training preset."""
    return "center" if augmentation == "imagenet" else "resize"


def decode(encoded):
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 [H, W, 3] (first frame of a GIF)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def to_uint8(images):
    """float 0..255 -> uint8, rounded and clipped (works on numpy arrays and tensors)."""
    if isinstance(images, np.ndarray):
        return np.clip(np.round(images), 0, 255).astype(np.uint8)
    return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)


def to_rgb(images):
    """uint8 [N,H,W,C] with C in (1, 3, 4) -> [N,H,W,3]."""
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images[..., :3]


def batch_and_preprocess(ds, batch_size, preprocessing, *, drop_remainder, threads=None,
                         ram_budget=None):
    """Batch, ``preprocess_input(mode=preprocessing)`` (a mode or a ``{"mean", "std"}``),
    deterministic order, prefetch (autotuned); ``threads``: a private thread pool of that size and the autotuner's CPU
    budget; ``ram_budget``: the autotuner's RAM budget in bytes (None: tf.data's)."""
    preprocessing = check_preprocessing(preprocessing)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    affine = preprocess_affine(preprocessing)
    if affine is None:
        ds = ds.map(
            lambda x, y: (preprocess_input(x, mode=preprocessing), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:  # the same mapping in one multiply-add per value
        scale, offset = (tf.constant(c) for c in affine)
        ds = ds.map(lambda x, y: (x * scale + offset, y), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    # every worker builds the same pipeline and keeps its share of the elements
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = True
    if threads is not None:
        options.threading.private_threadpool_size = threads
        options.autotune.cpu_budget = threads
    if ram_budget is not None:
        options.autotune.ram_budget = ram_budget
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
