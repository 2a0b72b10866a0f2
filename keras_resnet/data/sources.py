"""Where the images of one split come from, and the bundled digits.

A *source* is one split of a dataset: ``n`` images, their ``labels`` and a way to read
them. :class:`ArraySource` holds decoded images in memory (digits, small tfds datasets),
:class:`FileSource` image files (class folders), :class:`TfdsStream` a tfds split too
large for memory. Each can give the subset of its images at some indices (a held-out
split). A loader returns a :class:`Loaded` record; :mod:`keras_resnet.data.image_data`
turns it into an ``ImageData``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_resnet.data.transforms import (
    as_eval_transform,
    decode,
    eval_image_encoded,
    to_rgb,
    to_uint8,
)

# Datasets (decoded, at training size) up to this many bytes are held in memory.
MEMORY_CACHE_BYTES = 1 << 30

DIGITS_SIZE = 32
# Split seed of the bundled digits: fixed, so the digits test set never changes.
DIGITS_SPLIT_SEED = 1797
DIGITS_TEST_FRACTION = 0.2


@dataclasses.dataclass
class Loaded:
    """What a loader found: the splits (``"train"``, ``"test"``, maybe ``"val"``) and
    what decides the defaults (``side``: the typical shorter image side, None when the
    images have no fixed size)."""

    name: str
    class_names: list
    splits: dict
    side: int | None = None
    default_augmentation: str | None = None  # None: from the image side
    skipped_files: list = dataclasses.field(default_factory=list)
    skip_reasons: dict = dataclasses.field(default_factory=dict)
    test_source: str = "the dataset's test split"


class ArraySource:
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

    def subset(self, indices):
        return ArraySource(self.images[indices], self.labels[indices])


class FileSource:
    """Image files decoded by tf.data; decoded and resized copies cached in memory
    (per transform and size) when they fit in the RAM budget (``MEMORY_CACHE_BYTES``
    unless a pipeline is given another)."""

    def __init__(self, paths, labels):
        self.paths = np.asarray(paths, dtype=object).astype(str)
        self.labels = np.asarray(labels, dtype=np.int32)
        self.n = len(self.labels)
        self._cache = {}

    def cache_bytes(self, size):
        """Bytes the decoded copies at ``size`` x ``size`` take in memory."""
        return self.n * size * size * 3

    def _decode_all(self, kind, size, jpeg_decode):
        key = (as_eval_transform(kind), size, jpeg_decode)  # "resize" is the whole-image transform
        if key not in self._cache:
            ds = tf.data.Dataset.from_tensor_slices(self.paths).map(
                lambda p: to_uint8(
                    eval_image_encoded(tf.io.read_file(p), kind, size, jpeg_decode)
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            batches = [b.numpy() for b in ds.batch(256)]
            self._cache[key] = np.concatenate(batches) if batches else None
        return self._cache[key]

    def cached(self, kind, size, ram_budget=MEMORY_CACHE_BYTES, jpeg_decode="scaled"):
        """fn(index) -> image transformed by ``kind`` at ``size``, from memory, when the
        decoded copies fit in ``ram_budget`` bytes; else None."""
        if kind is None or self.cache_bytes(size) > ram_budget:
            return None
        images = tf.constant(self._decode_all(kind, size, jpeg_decode))
        return lambda i: tf.gather(images, i)

    def read(self, index):
        """The encoded bytes of file ``index`` (a scalar tensor)."""
        return tf.io.read_file(tf.gather(tf.constant(self.paths), index))

    def loader(self, kind, size, ram_budget=MEMORY_CACHE_BYTES, jpeg_decode="scaled"):
        cached = self.cached(kind, size, ram_budget, jpeg_decode)
        if cached is not None:
            return cached, True
        return (lambda i: decode(self.read(i))), False

    def subset(self, indices):
        return FileSource(self.paths[indices], self.labels[indices])


def cached_images(source, kind, size, ram_budget, jpeg_decode):
    """fn(index) -> image of a file source's in-memory copies, or None (streamed)."""
    if not isinstance(source, FileSource):
        return None
    budget = MEMORY_CACHE_BYTES if ram_budget is None else ram_budget
    return source.cached(kind, size, budget, jpeg_decode)


def buffer_budget(ram_budget, cache_bytes):
    """tf.data's autotune RAM budget: what ``ram_budget`` leaves beside the cached images
    (a quarter of it at least); None: tf.data's default."""
    if ram_budget is None:
        return None
    return max(ram_budget - cache_bytes, ram_budget // 4)


class TfdsStream:
    """A tfds split read in its stored order (too large for memory); images decoded
    after shuffling and skipping, so a resume reads but does not decode skipped records.
    ``indices`` (sorted) keeps only those records of the split."""

    def __init__(self, builder, split, n, indices=None):
        self.builder = builder
        self.split = split
        self.n = n if indices is None else len(indices)
        self.indices = indices
        self._labels = None

    def _dataset(self):
        import tensorflow_datasets as tfds

        image_key, label_key = self.builder.info.supervised_keys
        ds = self.builder.as_dataset(
            split=self.split,
            shuffle_files=False,
            decoders={image_key: tfds.decode.SkipDecoding()},
        )
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

    def records(self):
        """(encoded image, int32 label) of the split, in stored order."""
        ds = self._dataset()
        if self.indices is None:
            return ds
        keep = np.zeros(int(self.indices[-1]) + 1 if len(self.indices) else 0, bool)
        keep[self.indices] = True
        keep = tf.constant(keep)
        ds = ds.take(len(keep)).enumerate()
        return ds.filter(lambda i, xy: tf.gather(keep, i)).map(lambda i, xy: xy)

    @property
    def labels(self):
        """All labels, read once (the images are read but not decoded)."""
        if self._labels is None:
            batches = [y.numpy() for _, y in self.records().batch(4096)]
            self._labels = np.concatenate(batches) if batches else np.zeros(0, np.int32)
        return self._labels

    def subset(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        if self.indices is not None:
            indices = self.indices[indices]
        return TfdsStream(self.builder, self.split, len(indices), indices)


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 scikit-learn digits as uint8 [1797, 32, 32, 3] (0..16 scaled to
    0..255, bilinear resize, gray replicated to RGB) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
    images = tf.image.resize(images, [DIGITS_SIZE, DIGITS_SIZE], method="bilinear").numpy()
    return to_rgb(to_uint8(images)), digits.target.astype(np.int32)


def load_digits_source() -> Loaded:
    """The bundled digits with their fixed stratified 80/20 train/test split."""
    images, labels = digits_images()
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Loaded(
        name="digits",
        class_names=[str(i) for i in range(10)],
        splits={
            "train": ArraySource(images[train], labels[train]),
            "test": ArraySource(images[test], labels[test]),
        },
        side=DIGITS_SIZE,
        # pad + crop without the flip: mirrored digits are not digits
        default_augmentation="crop",
        test_source=f"a fixed stratified {DIGITS_TEST_FRACTION:g} of each class, "
        f"seed {DIGITS_SPLIT_SEED}",
    )
