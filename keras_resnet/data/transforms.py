"""Image transforms of the input pipelines: float32 HxWx3 images in 0..255 in and out.

Every random choice (a crop, a flip) comes from a stateless op and an explicit seed, so
a pipeline rebuilt from the same seeds yields the same images (exact resume).
"""

import numpy as np
import tensorflow as tf

from keras_resnet.preprocessing import preprocess_input
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
    return tf.image.resize(image, [size, size], method="bilinear", antialias=True)


def pad_crop(image, size, seed, flip):
    """Pad ``size // 8`` pixels (4 at 32x32, the paper's) and crop ``size`` back."""
    pad = max(1, size // 8)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.pad(resize(image, size), [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def random_resized_crop(image, size, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=crop_seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = resize(tf.slice(image, begin, extent), size)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def center_crop(image, size):
    """Resize the shorter side to ``size / 0.875``, then take the central square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(size / CENTER_CROP_FRACTION) / tf.reduce_min(shape)
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    return tf.image.resize_with_crop_or_pad(image, size, size)


def train_transform(image, augmentation, size, seed):
    """One training image through the ``augmentation`` preset, ``size`` x ``size`` out."""
    image = tf.cast(image, tf.float32)
    if augmentation == "cifar":
        image = pad_crop(image, size, seed, flip=True)
    elif augmentation == "crop":
        image = pad_crop(image, size, seed, flip=False)
    elif augmentation == "imagenet":
        image = random_resized_crop(image, size, seed)
    else:
        image = resize(image, size)
    image.set_shape([size, size, 3])
    return image


def eval_image(image, kind, size):
    """One evaluation image, ``size`` x ``size``: ``kind`` "center" (ImageNet-style: the
    center crop) or "resize" (small images: the whole image). Not to be confused with a
    weight set's stated transform (:func:`keras_resnet.weights.eval_transform`)."""
    image = tf.cast(image, tf.float32)
    image = center_crop(image, size) if kind == "center" else resize(image, size)
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


def batch_and_preprocess(ds, batch_size, preprocessing, *, drop_remainder):
    """Batch, ``preprocess_input(mode=preprocessing)``, deterministic order, prefetch."""
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(
        lambda x, y: (preprocess_input(x, mode=preprocessing), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    options = tf.data.Options()
    options.deterministic = True
    # every worker builds the same pipeline and keeps its share of the elements
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
