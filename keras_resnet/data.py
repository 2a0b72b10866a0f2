"""Datasets and ``tf.data`` input pipelines for training and evaluating ResNets.

Three kinds of data, one object (:class:`ImageData`) with one pipeline API:

- ``"digits"`` (the default, bundled, offline): scikit-learn's 1,797 real handwritten
  digits (8x8, values 0..16), scaled to 0..255, resized to 32x32 and replicated to RGB,
  with a fixed stratified 80/20 train/test split.
- any TensorFlow Datasets image-classification dataset (``"cifar10"``, ``"cifar100"``,
  ``"imagenette"``, ``"imagenet2012"`` with ``manual_dir`` ...). An unprepared dataset
  that cannot be downloaded fails within seconds instead of letting tfds retry for minutes.
- a folder of class subfolders (``data_dir``), optionally split into ``train/``,
  ``test/`` and ``val/``. Unreadable files are skipped and reported.

Exact resume: every random choice of a training pipeline (the shuffle order of an
epoch, each crop and flip) is a stateless function of ``(seed, epoch, position)``, so
``train_dataset(..., start_epoch=e, start_step=s)`` yields exactly the batches an
uninterrupted run yields from step ``s`` of epoch ``e`` on.
"""

import dataclasses
import math
import os
import socket
import time

import numpy as np
import tensorflow as tf

from keras_resnet.preprocessing import MODES, preprocess_input

# Training augmentation presets:
# "cifar": pad, random crop back, horizontal flip (He et al. 2015, sec. 4.2).
# "crop": the same without the flip, for data where mirroring changes the class or is
#     never seen (handwritten digits: a mirrored 2, 3, 7 is not a digit).
# "imagenet": random resized crop, scale (0.08, 1), aspect (3/4, 4/3), and flip
#     (Szegedy et al. 2015, as torchvision / timm); evaluation resizes the shorter side
#     to size / 0.875 and takes the center crop.
# "none": resize only.
AUGMENTATIONS = ("cifar", "imagenet", "none", "crop")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# formats tf.io.decode_image reads (as Pillow names them)
_DECODABLE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")
SPLIT_FOLDERS = ("train", "val", "validation", "test")

DIGITS_SIZE = 32
# Split seed of the bundled digits: fixed, so the digits test set never changes.
_DIGITS_SPLIT_SEED = 1797
_DIGITS_TEST_FRACTION = 0.2

# Datasets (decoded, at training size) up to this many bytes are held in memory.
MEMORY_CACHE_BYTES = 1 << 30
# Streaming tfds datasets are shuffled in windows of this many records.
SHUFFLE_WINDOW = 10_000
# Images whose median shorter side is at most this train at their own size with the
# "cifar" preset; larger ones at 224 with the "imagenet" preset.
SMALL_IMAGE_MAX = 64
IMAGENET_SIZE = 224
CENTER_CROP_FRACTION = 0.875

# Where the network probe connects (tfds downloads mostly come from Google storage).
NETWORK_PROBE_ADDRESS = ("storage.googleapis.com", 443)
NETWORK_PROBE_TIMEOUT_S = 3.0


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}. Received: {name}={value!r}"
        )


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer. Received: seed={seed!r}")


# ---------------------------------------------------------------------------
# Image transforms (float32 HxWx3 in 0..255), all randomness from stateless ops
# ---------------------------------------------------------------------------


def _fold(seed, data):
    """A new [2] int64 seed from a seed and an integer (stateless, order-free)."""
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def _resize(image, size):
    return tf.image.resize(image, [size, size], method="bilinear", antialias=True)


def _pad_crop(image, size, seed, flip):
    """Pad ``size // 8`` pixels (4 at 32x32, the paper's) and crop ``size`` back."""
    pad = max(1, size // 8)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.pad(_resize(image, size), [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def _random_resized_crop(image, size, seed):
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
    image = _resize(tf.slice(image, begin, extent), size)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _center_crop(image, size):
    """Resize the shorter side to ``size / 0.875``, then take the central square."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = round(size / CENTER_CROP_FRACTION) / tf.reduce_min(shape)
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    return tf.image.resize_with_crop_or_pad(image, size, size)


def _train_transform(image, augmentation, size, seed):
    image = tf.cast(image, tf.float32)
    if augmentation == "cifar":
        image = _pad_crop(image, size, seed, flip=True)
    elif augmentation == "crop":
        image = _pad_crop(image, size, seed, flip=False)
    elif augmentation == "imagenet":
        image = _random_resized_crop(image, size, seed)
    else:
        image = _resize(image, size)
    image.set_shape([size, size, 3])
    return image


def _eval_transform(image, kind, size):
    """``kind`` "center" (ImageNet-style evaluation) or "resize" (small images)."""
    image = tf.cast(image, tf.float32)
    image = _center_crop(image, size) if kind == "center" else _resize(image, size)
    image.set_shape([size, size, 3])
    return image


def _decode(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _to_rgb(images):
    """uint8 [N,H,W,C] with C in (1, 3, 4) -> [N,H,W,3]."""
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images[..., :3]


# ---------------------------------------------------------------------------
# Sources: one split of a dataset
# ---------------------------------------------------------------------------


class _ArraySource:
    """Decoded images of one fixed size in memory (digits, small tfds datasets)."""

    def __init__(self, images, labels):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int32)
        self.n = len(self.labels)

    def loader(self, kind, size):
        """(fn(index) -> image, whether the image is already transformed)."""
        del kind, size
        images = tf.constant(self.images)
        return (lambda i: tf.gather(images, i)), False


class _FileSource:
    """Image files decoded by tf.data; decoded and resized copies cached in memory
    (per transform and size) when they fit in ``MEMORY_CACHE_BYTES``."""

    def __init__(self, paths, labels):
        self.paths = np.asarray(paths, dtype=object).astype(str)
        self.labels = np.asarray(labels, dtype=np.int32)
        self.n = len(self.labels)
        self._cache = {}

    def _decode_all(self, kind, size):
        key = (kind, size)
        if key not in self._cache:
            ds = tf.data.Dataset.from_tensor_slices(self.paths)
            ds = ds.map(
                lambda p: tf.cast(
                    tf.clip_by_value(
                        tf.round(_eval_transform(_decode(tf.io.read_file(p)), kind, size)),
                        0,
                        255,
                    ),
                    tf.uint8,
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            batches = [b.numpy() for b in ds.batch(256)]
            self._cache[key] = np.concatenate(batches) if batches else None
        return self._cache[key]

    def loader(self, kind, size):
        if kind is not None and self.n * size * size * 3 <= MEMORY_CACHE_BYTES:
            images = tf.constant(self._decode_all(kind, size))
            return (lambda i: tf.gather(images, i)), True
        paths = tf.constant(self.paths)
        return (lambda i: _decode(tf.io.read_file(tf.gather(paths, i)))), False


class _TfdsStream:
    """A tfds split read in its stored order (too large for memory); images decoded
    after shuffling and skipping, so a resume reads but does not decode skipped records."""

    def __init__(self, builder, split, n):
        self.builder = builder
        self.split = split
        self.n = n

    def records(self):
        import tensorflow_datasets as tfds

        image_key, label_key = self.builder.info.supervised_keys
        ds = self.builder.as_dataset(
            split=self.split,
            shuffle_files=False,
            decoders={image_key: tfds.decode.SkipDecoding()},
        )
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))


# ---------------------------------------------------------------------------
# ImageData
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class ImageData:
    """A dataset with its splits, and the ``tf.data`` pipelines over them.

    Build it with :func:`load_data`. Images enter every pipeline as RGB 0..255 and leave
    it as float32 preprocessed with ``preprocess_input(mode=preprocessing)``.
    """

    name: str
    class_names: list
    num_train: int
    num_val: int
    num_test: int
    image_size: int
    default_augmentation: str
    skipped_files: list = dataclasses.field(default_factory=list)
    _splits: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def num_classes(self):
        return len(self.class_names)

    def steps_per_epoch(self, global_batch_size):
        """Training steps per epoch (the last partial batch is dropped)."""
        _check_int("global_batch_size", global_batch_size, 1)
        if global_batch_size > self.num_train:
            raise ValueError(
                f"global_batch_size must be at most the number of training images "
                f"({self.num_train} in {self.name!r}). "
                f"Received: global_batch_size={global_batch_size}"
            )
        return self.num_train // global_batch_size

    def _eval_kind(self, augmentation):
        return "center" if augmentation == "imagenet" else "resize"

    def _split(self, split):
        _check_choice("split", split, ("train", "val", "test"))
        if split == "val" and self.num_val == 0:
            split = "test"
        return self._splits[split]

    def train_dataset(
        self,
        global_batch_size,
        *,
        image_size=None,
        augmentation=None,
        preprocessing="tf",
        seed=0,
        start_epoch=0,
        start_step=0,
        epochs=1,
    ):
        """Shuffled, augmented training batches for epochs ``start_epoch .. epochs - 1``.

        Args:
            global_batch_size: images per step over all replicas (per-replica batch x
                replicas); the last partial batch of each epoch is dropped.
            image_size: side of the square images (default ``self.image_size``).
            augmentation: one of ``AUGMENTATIONS`` (default ``self.default_augmentation``).
            preprocessing: ``"caffe"``, ``"tf"`` or ``"torch"``.
            seed: integer; the shuffle order of epoch ``e`` derives from ``(seed, e)``,
                the augmentation of the ``p``-th image of epoch ``e`` from ``(seed, e, p)``.
            start_epoch, start_step: where to begin (a resumed run); the batches equal
                those an uninterrupted run yields from that point.
            epochs: the epoch to stop before.

        Returns:
            ``tf.data.Dataset`` of ``(float32 [B, S, S, 3], int32 [B])``.
        """
        image_size = self.image_size if image_size is None else image_size
        augmentation = self.default_augmentation if augmentation is None else augmentation
        _check_int("image_size", image_size, 8)
        _check_choice("augmentation", augmentation, AUGMENTATIONS)
        _check_choice("preprocessing", preprocessing, MODES)
        _check_seed(seed)
        steps = self.steps_per_epoch(global_batch_size)
        _check_int("epochs", epochs, 1)
        _check_int("start_epoch", start_epoch, 0)
        if start_epoch >= epochs:
            raise ValueError(
                f"start_epoch must be less than epochs ({epochs}). "
                f"Received: start_epoch={start_epoch}"
            )
        _check_int("start_step", start_step, 0)
        if start_step >= steps:
            raise ValueError(
                f"start_step must be less than steps_per_epoch ({steps}). "
                f"Received: start_step={start_step}"
            )

        source = self._splits["train"]
        per_epoch = steps * global_batch_size
        first_epoch = tf.constant(start_epoch, tf.int64)
        first_position = tf.constant(start_step * global_batch_size, tf.int64)
        seed_t = tf.constant(seed, tf.int64)

        def epoch_seeds(epoch):
            base = tf.stack([seed_t, epoch])
            # 0: order of the epoch, 1: windows of a stream, 2: per-image augmentation
            return _fold(base, 0), _fold(base, 1), _fold(base, 2)

        def first(epoch):
            return tf.where(epoch == first_epoch, first_position, tf.constant(0, tf.int64))

        if isinstance(source, _TfdsStream):
            records = source.records()

            def epoch_elements(epoch):
                _, window_seed, _ = epoch_seeds(epoch)

                def shuffle_window(window, batch):
                    images, labels = batch
                    order = tf.random.experimental.stateless_shuffle(
                        tf.range(tf.shape(labels)[0]), seed=_fold(window_seed, window)
                    )
                    return tf.gather(images, order), tf.gather(labels, order)

                ds = records.batch(SHUFFLE_WINDOW).enumerate().map(shuffle_window).unbatch()
                ds = ds.take(per_epoch).enumerate().skip(first(epoch))
                return ds.map(lambda p, xy: (epoch, p, xy[0], xy[1]))

            def element(epoch, position, encoded, label):
                seed_ = _fold(epoch_seeds(epoch)[2], position)
                return _train_transform(_decode(encoded), augmentation, image_size, seed_), label

        else:
            kind = "resize" if augmentation in ("cifar", "crop", "none") else None
            load, _ = source.loader(kind, image_size)
            labels = tf.constant(source.labels, tf.int32)
            n = source.n

            def epoch_elements(epoch):
                order_seed, _, _ = epoch_seeds(epoch)
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(n, dtype=tf.int64), seed=order_seed
                )
                start = first(epoch)
                positions = tf.range(start, per_epoch, dtype=tf.int64)
                return tf.data.Dataset.from_tensor_slices(
                    (tf.fill(tf.shape(positions), epoch), positions, order[start:per_epoch])
                )

            def element(epoch, position, index):
                seed_ = _fold(epoch_seeds(epoch)[2], position)
                image = _train_transform(load(index), augmentation, image_size, seed_)
                return image, tf.gather(labels, index)

        ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_elements)
        ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE)
        return _finish(ds, global_batch_size, preprocessing, drop_remainder=True)

    def eval_dataset(
        self, split, global_batch_size, *, image_size=None, preprocessing="tf", augmentation=None
    ):
        """Batches of one split in its fixed order, the last partial batch kept.

        Args:
            split: ``"val"`` (falls back to ``"test"`` when ``num_val == 0``), ``"test"``
                or ``"train"``.
            augmentation: the training preset the evaluation goes with (default
                ``self.default_augmentation``): ``"imagenet"`` evaluates on the center
                crop of the image resized to ``image_size / 0.875``, the others on the
                whole image resized to ``image_size``.
        """
        image_size = self.image_size if image_size is None else image_size
        augmentation = self.default_augmentation if augmentation is None else augmentation
        _check_int("global_batch_size", global_batch_size, 1)
        _check_int("image_size", image_size, 8)
        _check_choice("preprocessing", preprocessing, MODES)
        _check_choice("augmentation", augmentation, AUGMENTATIONS)
        ds = self._eval_images(split, image_size, self._eval_kind(augmentation))
        return _finish(ds, global_batch_size, preprocessing, drop_remainder=False)

    def _eval_images(self, split, size, kind):
        """Unbatched (float32 image 0..255, int32 label) of a split, in order."""
        source = self._split(split)
        if isinstance(source, _TfdsStream):
            return source.records().map(
                lambda x, y: (_eval_transform(_decode(x), kind, size), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        load, transformed = source.loader(kind, size)
        ds = tf.data.Dataset.range(source.n).map(
            lambda i: (
                _eval_transform(load(i), "resize" if transformed else kind, size),
                tf.gather(tf.constant(source.labels, tf.int32), i),
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds

    def raw_images(self, split, n, *, image_size=None, augmentation=None):
        """The first ``n`` images of a split (fewer when the split is smaller) as the
        evaluation pipeline sees them before preprocessing.

        Returns:
            ``(uint8 [n, S, S, 3] numpy array, int32 [n] labels)``.
        """
        _check_int("n", n, 1)
        image_size = self.image_size if image_size is None else image_size
        augmentation = self.default_augmentation if augmentation is None else augmentation
        _check_int("image_size", image_size, 8)
        _check_choice("augmentation", augmentation, AUGMENTATIONS)
        ds = self._eval_images(split, image_size, self._eval_kind(augmentation)).take(n)
        images, labels = [], []
        for x, y in ds.batch(256):
            images.append(np.clip(np.round(x.numpy()), 0, 255).astype(np.uint8))
            labels.append(y.numpy())
        return np.concatenate(images), np.concatenate(labels)


def _finish(ds, batch_size, preprocessing, *, drop_remainder):
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


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def stratified_split(labels, fraction, seed):
    """Indices ``(keep, held_out)``: ``round(fraction * n_c)`` images of each class
    ``c`` held out (at least one when the class has two or more, never all), chosen
    by a NumPy generator seeded with ``seed``. Both index arrays are sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = len(members)
        k = min(max(int(round(fraction * count)), 1 if count >= 2 else 0), count - 1)
        held.extend(rng.permutation(members)[:k])
    held = np.sort(np.asarray(held, dtype=np.int64))
    keep = np.setdiff1d(np.arange(len(labels)), held)
    return keep, held


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------


def load_data(
    dataset="digits",
    *,
    data_dir=None,
    tfds_data_dir=None,
    manual_dir=None,
    seed=0,
    holdout_fraction=0.2,
    download="auto",
):
    """Load a dataset for training and evaluation.

    Args:
        dataset: ``"digits"`` (bundled) or a TensorFlow Datasets image-classification
            name (``"cifar10"``, ``"imagenette"``, ``"imagenet2012"`` ...).
        data_dir: a folder of class subfolders, or of ``train/``, ``test/`` (and
            optionally ``val/``) folders of class subfolders. Wins over ``dataset``.
        tfds_data_dir: where tfds datasets are (or are prepared); tfds' default else.
        manual_dir: folder with manually downloaded files (``imagenet2012``).
        seed: seed of the held-out test split of a folder (or tfds dataset) without a
            test split. Not the training seed: keep it fixed so the test set stays the
            same from run to run. The digits split is fixed and ignores it.
        holdout_fraction: fraction of each class held out as test data when there is
            no test split.
        download: ``"auto"`` (download an unprepared tfds dataset when the network is
            reachable), ``True`` (always try) or ``False`` (never).

    Returns:
        :class:`ImageData`.
    """
    _check_seed(seed)
    if not isinstance(holdout_fraction, (int, float)) or not 0 < holdout_fraction < 1:
        raise ValueError(
            "holdout_fraction must be a number in (0, 1). "
            f"Received: holdout_fraction={holdout_fraction!r}"
        )
    _check_choice("download", download, ("auto", True, False))
    if data_dir is not None:
        return _load_folder(data_dir, seed=seed, holdout_fraction=holdout_fraction)
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(
            f"dataset must be 'digits' or a TensorFlow Datasets name. Received: dataset={dataset!r}"
        )
    if dataset == "digits":
        return _load_digits()
    return _load_tfds(
        dataset,
        tfds_data_dir=tfds_data_dir,
        manual_dir=manual_dir,
        seed=seed,
        holdout_fraction=holdout_fraction,
        download=download,
    )


def digits_images():
    """All 1,797 scikit-learn digits as uint8 [1797, 32, 32, 3] (0..16 scaled to
    0..255, bilinear resize, gray replicated to RGB) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
    images = tf.image.resize(images, [DIGITS_SIZE, DIGITS_SIZE], method="bilinear").numpy()
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return _to_rgb(images), digits.target.astype(np.int32)


def _load_digits():
    images, labels = digits_images()
    train, test = stratified_split(labels, _DIGITS_TEST_FRACTION, _DIGITS_SPLIT_SEED)
    return ImageData(
        name="digits",
        class_names=[str(i) for i in range(10)],
        num_train=len(train),
        num_val=0,
        num_test=len(test),
        image_size=DIGITS_SIZE,
        # pad + crop without the flip: mirrored digits are not digits
        default_augmentation="crop",
        _splits={
            "train": _ArraySource(images[train], labels[train]),
            "test": _ArraySource(images[test], labels[test]),
        },
    )


# --- folders ---------------------------------------------------------------


def _check_image_file(path):
    """None when Pillow reads a JPEG/PNG/BMP/GIF header that checks out (PNG CRCs,
    JPEG end marker), else the reason it is skipped. Returns (reason, shorter side)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image_format, size = image.format, image.size
            image.verify()
    except Exception as error:  # Pillow raises many kinds for broken files
        return f"not a readable image ({type(error).__name__})", 0
    if image_format not in _DECODABLE_FORMATS:
        return f"format {image_format} is not one of {_DECODABLE_FORMATS}", 0
    if image_format == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64))
            if b"\xff\xd9" not in f.read():
                return "truncated JPEG (no end marker)", 0
    return None, min(size)


def _scan_classes(folder, class_names=None):
    """(paths, labels, shorter sides, skipped) of ``folder/<class>/*``; the classes are
    the sorted subfolders, or ``class_names`` (each subfolder must be one of them)."""
    subfolders = sorted(
        d for d in os.listdir(folder)
        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )
    if class_names is None:
        class_names = subfolders
    else:
        unknown = sorted(set(subfolders) - set(class_names))
        if unknown:
            raise ValueError(
                f"data_dir split folder {folder!r} has classes {unknown} that its train "
                f"folder does not have. Received: data_dir={os.path.dirname(folder)!r}"
            )
    paths, labels, sides, skipped = [], [], [], []
    for label, name in enumerate(class_names):
        class_folder = os.path.join(folder, name)
        if not os.path.isdir(class_folder):
            continue
        for root, dirs, files in os.walk(class_folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                if file.startswith("."):
                    continue
                path = os.path.join(root, file)
                reason, side = _check_image_file(path)
                if reason is None:
                    paths.append(path)
                    labels.append(label)
                    sides.append(side)
                else:
                    skipped.append(path)
    return class_names, paths, np.asarray(labels, dtype=np.int32), sides, skipped


def _load_folder(data_dir, *, seed, holdout_fraction):
    if not isinstance(data_dir, (str, os.PathLike)) or not os.path.isdir(data_dir):
        raise ValueError(
            "data_dir must be an existing folder of class subfolders. "
            f"Received: data_dir={data_dir!r}"
        )
    data_dir = os.fspath(data_dir)
    subfolders = {d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d))}
    split_layout = "train" in subfolders and subfolders <= set(SPLIT_FOLDERS)
    train_folder = os.path.join(data_dir, "train") if split_layout else data_dir
    class_names, paths, labels, sides, skipped = _scan_classes(train_folder)
    if len(class_names) < 2:
        raise ValueError(
            "data_dir must hold at least two class subfolders (PATH/<class>/*.jpg|png), "
            f"found {len(class_names)} in {train_folder!r}. Received: data_dir={data_dir!r}"
        )
    if not paths:
        raise ValueError(
            f"data_dir has no readable images ({IMAGE_EXTENSIONS}) in its class folders "
            f"({len(skipped)} files skipped). Received: data_dir={data_dir!r}"
        )
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "data_dir must have readable images in at least two classes. "
            f"Received: data_dir={data_dir!r}"
        )
    total = len(paths) + len(skipped)
    splits, counts = {}, {}
    for split, names in (("test", ("test",)), ("val", ("val", "validation"))):
        folder = next(
            (os.path.join(data_dir, s) for s in names if split_layout and s in subfolders), None
        )
        if folder is None:
            continue
        _, split_paths, split_labels, _, split_skipped = _scan_classes(folder, class_names)
        skipped += split_skipped
        total += len(split_paths) + len(split_skipped)
        if split_paths:
            splits[split] = _FileSource(split_paths, split_labels)
    if "test" not in splits:
        keep, held = stratified_split(labels, holdout_fraction, seed)
        splits["test"] = _FileSource([paths[i] for i in held], labels[held])
        paths, labels, sides = [paths[i] for i in keep], labels[keep], [sides[i] for i in keep]
    splits["train"] = _FileSource(paths, labels)
    if skipped:
        print(
            f"keras_resnet.data: skipped {len(skipped)} of {total} files in {data_dir} that are "
            "not readable JPEG/PNG/BMP/GIF images (listed in ImageData.skipped_files)",
            flush=True,
        )
    side = int(np.median(sides))
    small = side <= SMALL_IMAGE_MAX
    return ImageData(
        name=os.path.basename(os.path.normpath(data_dir)),
        class_names=list(class_names),
        num_train=splits["train"].n,
        num_val=splits["val"].n if "val" in splits else 0,
        num_test=splits["test"].n,
        image_size=max(8, side) if small else IMAGENET_SIZE,
        default_augmentation="cifar" if small else "imagenet",
        skipped_files=skipped,
        _splits=splits,
    )


# --- TensorFlow Datasets -----------------------------------------------------


def _network_available():
    """Whether tfds' download host answers within a few seconds."""
    try:
        socket.create_connection(NETWORK_PROBE_ADDRESS, timeout=NETWORK_PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def _default_tfds_dir():
    import tensorflow_datasets as tfds

    return os.environ.get("TFDS_DATA_DIR") or tfds.core.constants.DATA_DIR


def _tfds_builder(name, *, tfds_data_dir, manual_dir, download):
    """A prepared tfds builder, or an error within seconds saying how to prepare it."""
    import tensorflow_datasets as tfds

    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise ValueError(
            f"manual_dir must be an existing folder. Received: manual_dir={manual_dir!r}"
        )
    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            "dataset must be 'digits' or the name of a TensorFlow Datasets image "
            f"classification dataset (see `tfds.list_builders()`). Received: dataset={name!r}"
        ) from error
    keys = builder.info.supervised_keys
    features = builder.info.features
    if (
        not isinstance(keys, tuple)
        or len(keys) != 2
        or not isinstance(features[keys[0]], tfds.features.Image)
        or not isinstance(features[keys[1]], tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"dataset must be an image classification dataset (an image and a class label); "
            f"{name!r} has supervised keys {keys}. Received: dataset={name!r}"
        )
    if builder.is_prepared():
        return builder
    where = tfds_data_dir or _default_tfds_dir()
    prepare = (
        f"Prepare it where there is internet access with "
        f"`tfds build {name} --data_dir DIR` (or "
        f"`tfds.builder({name!r}, data_dir=DIR).download_and_prepare()`), copy DIR here "
        f"and pass it as tfds_data_dir (--tfds-data-dir)."
    )
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS and manual_dir is None:
        raise RuntimeError(
            f"Dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}) and "
            f"needs manually downloaded files: pass their folder as manual_dir (--manual-dir). "
            f"tfds says: {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    if not builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        if download is False:
            raise RuntimeError(
                f"Dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}) "
                f"and downloading is off (download=False). {prepare}"
            )
        if download == "auto" and not _network_available():
            host, port = NETWORK_PROBE_ADDRESS
            raise RuntimeError(
                f"Dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}) "
                f"and cannot be downloaded: no connection to {host}:{port} within "
                f"{NETWORK_PROBE_TIMEOUT_S:g} s. {prepare}"
            )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return builder


def _tfds_split_names(builder, name, holdout_fraction):
    """{"train", "val", "test"} -> tfds split spec."""
    available = {s: info.num_examples for s, info in builder.info.splits.items()}
    if not available:  # no split metadata (tfds.testing.mock_data): the usual names
        return {"train": "train", "test": "test"}
    if "train" not in available:
        raise ValueError(
            f"dataset must have a 'train' split; {name!r} has {sorted(available)}. "
            f"Received: dataset={name!r}"
        )
    # ImageNet's test split is unlabeled: its validation split is the test set
    test_is_labeled = "test" in available and not name.startswith("imagenet2012")
    if test_is_labeled:
        names = {"train": "train", "test": "test"}
        if "validation" in available:
            names["val"] = "validation"
        return names
    if "validation" in available:
        return {"train": "train", "test": "validation"}
    # only a train split: hold out its tail (tfds shuffles examples when preparing)
    keep = int(round(available["train"] * (1 - holdout_fraction)))
    return {"train": f"train[:{keep}]", "test": f"train[{keep}:]"}


def _read_tfds_arrays(builder, split):
    image_key, label_key = builder.info.supervised_keys
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=None)
    images, labels = [], []
    for batch in ds.batch(4096):
        images.append(batch[image_key].numpy())
        labels.append(batch[label_key].numpy())
    return _to_rgb(np.concatenate(images)), np.concatenate(labels).astype(np.int32)


def _load_tfds(name, *, tfds_data_dir, manual_dir, seed, holdout_fraction, download):
    del seed  # tfds holdouts are slices of tfds' own (shuffled at preparation) order
    builder = _tfds_builder(
        name, tfds_data_dir=tfds_data_dir, manual_dir=manual_dir, download=download
    )
    image_key, label_key = builder.info.supervised_keys
    shape = builder.info.features[image_key].shape
    class_names = list(builder.info.features[label_key].names)
    fixed_size = shape[0] is not None and shape[0] == shape[1]
    splits = {}
    for split, spec in _tfds_split_names(builder, name, holdout_fraction).items():
        n = int(builder.as_dataset(split=spec, shuffle_files=False).cardinality())
        if n < 0:
            n = builder.info.splits[spec].num_examples
        if fixed_size and n * shape[0] * shape[1] * 3 <= MEMORY_CACHE_BYTES:
            source = _ArraySource(*_read_tfds_arrays(builder, spec))
        else:
            source = _TfdsStream(builder, spec, n)
        splits[split] = source
    small = fixed_size and shape[0] <= SMALL_IMAGE_MAX
    return ImageData(
        name=name,
        class_names=class_names,
        num_train=splits["train"].n,
        num_val=splits["val"].n if "val" in splits else 0,
        num_test=splits["test"].n,
        image_size=shape[0] if small else IMAGENET_SIZE,
        default_augmentation="cifar" if small else "imagenet",
        _splits=splits,
    )


# ---------------------------------------------------------------------------
# Benchmark helper
# ---------------------------------------------------------------------------


def pipeline_throughput(
    data,
    *,
    global_batch_size=128,
    image_size=None,
    augmentation=None,
    preprocessing="tf",
    steps=50,
    warmup_steps=5,
    seed=0,
):
    """Images per second the training pipeline of ``data`` (an :class:`ImageData` or
    a name for :func:`load_data`) delivers, measured over ``steps`` batches after
    ``warmup_steps`` (no model attached)."""
    _check_int("steps", steps, 1)
    _check_int("warmup_steps", warmup_steps, 0)
    if not isinstance(data, ImageData):
        data = load_data(data)
    per_epoch = data.steps_per_epoch(global_batch_size)
    epochs = math.ceil((steps + warmup_steps) / per_epoch)
    ds = data.train_dataset(
        global_batch_size,
        image_size=image_size,
        augmentation=augmentation,
        preprocessing=preprocessing,
        seed=seed,
        epochs=epochs,
    )
    iterator = iter(ds)
    for _ in range(warmup_steps):
        next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * global_batch_size / (time.perf_counter() - started)


__all__ = [
    "AUGMENTATIONS",
    "ImageData",
    "load_data",
    "stratified_split",
    "digits_images",
    "pipeline_throughput",
]
