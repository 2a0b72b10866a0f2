"""``ImageData``: a dataset's splits and the ``tf.data`` pipelines over them.

Exact resume: every random choice of a training pipeline (the shuffle order of an
epoch, each crop and flip) is a stateless function of ``(seed, epoch, position)``, so
``train_dataset(..., start_epoch=e, start_step=s)`` yields exactly the batches an
uninterrupted run yields from step ``s`` of epoch ``e`` on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_resnet.data.jpeg import JPEG_DECODES
from keras_resnet.data.sources import (
    FileSource,
    TfdsStream,
    buffer_budget,
    cached_images,
    stratified_split,
)
from keras_resnet.data.transforms import (
    AUGMENTATIONS,
    batch_and_preprocess,
    eval_kind,
    eval_image,
    eval_image_encoded,
    fold,
    to_uint8,
    train_transform,
    train_transform_encoded,
)
from keras_resnet.preprocessing import check_preprocessing
from keras_resnet.utils import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    fail,
    is_int,
)

# Streaming tfds datasets are shuffled in windows of this many records.
SHUFFLE_WINDOW = 10_000
SPLITS = ("train", "val", "test")
MIN_IMAGE_SIZE = 8


def check_seed(seed, argument="seed"):
    if not is_int(seed):
        fail(argument, seed, "an integer")


def check_fraction(argument, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        fail(argument, value, "a number in (0, 1)")


def _check_image_size(image_size):
    if not is_int(image_size) or image_size < MIN_IMAGE_SIZE:
        fail("image_size", image_size, f"an integer >= {MIN_IMAGE_SIZE}")


def _check_reading(jpeg_decode, ram_budget, threads):
    check_choice("jpeg_decode", jpeg_decode, JPEG_DECODES)
    if ram_budget is not None:
        check_positive_int("ram_budget", ram_budget)
    if threads is not None:
        check_positive_int("threads", threads)


@dataclasses.dataclass
class ImageData:
    """A dataset with its splits, and the ``tf.data`` pipelines over them.

    Build it with :func:`keras_resnet.data.load_data`. Images enter every pipeline as
    RGB 0..255 and leave it as float32 preprocessed with
    ``preprocess_input(mode=preprocessing)``.

    ``skipped_files`` lists the files of a folder that were not loaded and
    ``skip_reasons`` says why (unreadable, or over the pixel limit with its size).
    ``split_info`` says where each split comes from (see :meth:`with_validation_holdout`).
    """

    name: str
    class_names: list
    num_train: int
    num_val: int
    num_test: int
    image_size: int
    default_augmentation: str
    skipped_files: list = dataclasses.field(default_factory=list)
    skip_reasons: dict = dataclasses.field(default_factory=dict, repr=False)
    split_info: dict = dataclasses.field(default_factory=dict, repr=False)
    _splits: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def splits(self) -> tuple:
        """The splits this dataset has, of ``("train", "val", "test")``."""
        return tuple(s for s in SPLITS if s in self._splits)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Training steps per epoch (the last partial batch is dropped)."""
        check_positive_int("global_batch_size", global_batch_size)
        if global_batch_size > self.num_train:
            raise ValueError(
                f"global_batch_size must be at most the number of training images "
                f"({self.num_train} in {self.name!r}). "
                f"Received: global_batch_size={global_batch_size}"
            )
        return self.num_train // global_batch_size

    def chance_accuracy(self, split: str) -> float | None:
        """The accuracy of always answering the commonest class of ``split`` (None when its
        labels are not known without reading it, e.g. a streamed tfds split)."""
        labels = getattr(self._split(split), "labels", None)
        if labels is None or not len(labels):
            return None
        return float(np.bincount(np.asarray(labels)).max() / len(labels))

    def _split(self, split):
        check_choice("split", split, SPLITS)
        if split == "val" and self.num_val == 0:
            raise ValueError(
                f"--split val: this dataset ({self.name}) has no validation split; "
                f"splits: {', '.join(self.splits)}"
            )
        return self._splits[split]

    # ------------------------------------------------------------ validation hold-out

    def with_validation_holdout(self, fraction: float = 0.1, *, seed: int = 0) -> ImageData:
        """This dataset with a validation split held out of train when it has none.

        ``round(fraction * n_c)`` training images of each class ``c`` (at least one
        when the class has two or more) become the ``"val"`` split, chosen by a NumPy
        generator seeded with ``seed``: the same for a seed, disjoint from what stays
        in train, and together with it exactly the old train split. A dataset that has
        a validation split is returned as it is. ``split_info`` records what was done.
        """
        check_fraction("fraction", fraction)
        check_seed(seed)
        if self.num_val:
            return self
        train = self._splits["train"]
        keep, held = stratified_split(train.labels, fraction, seed)
        splits = dict(self._splits, train=train.subset(keep), val=train.subset(held))
        info = dict(self.split_info)
        info["validation"] = {
            "source": "held out of train, stratified per class",
            "fraction": fraction,
            "seed": seed,
        }
        info["counts"] = {s: splits[s].n for s in SPLITS}
        return dataclasses.replace(
            self, num_train=len(keep), num_val=len(held), split_info=info, _splits=splits
        )

    def flip_check(self, seed: int = 0) -> tuple:
        """``(keep flips?, why)``: whether horizontal flips keep this dataset's classes,
        judged on up to 2,000 training images chosen with ``seed``
        (:mod:`keras_resnet.data.flips`). tfds datasets (photos) keep them unasked."""
        from keras_resnet.data.flips import SAMPLE, flips_keep_classes

        source = self._split("train")
        if isinstance(source, TfdsStream):
            return True, "a tfds dataset: flips kept"
        n = min(SAMPLE, source.n)
        pick = np.sort(np.random.default_rng(seed).choice(source.n, n, replace=False))
        sample = dataclasses.replace(self, _splits=dict(self._splits, train=source.subset(pick)))
        size = min(self.image_size, 64)
        images, labels = sample.raw_images("train", n, image_size=size, augmentation="none")
        return flips_keep_classes(images, labels)

    def auto_augmentation(self, seed: int = 0) -> tuple:
        """``(augmentation, why)`` the auto recipe trains with: the ``cifar`` preset loses its
        flip where :meth:`flip_check` finds that mirror images change the classes (``why``
        gives the check's verdict); any other default is kept as it is (``why`` is None)."""
        default = self.default_augmentation
        if default != "cifar":
            return default, None
        keep, why = self.flip_check(seed)
        return (default if keep else "crop"), why

    def describe_splits(self) -> str:
        """One line for a run's header: counts and where val and test come from."""
        info = self.split_info
        val = info.get("validation", {})
        val_from = val.get("source", "none")
        if "fraction" in val:
            val_from = f"{val['fraction']:g} of each class of train, seed {val['seed']}"
        test_from = info.get("test", {}).get("source", "the dataset's test split")
        return (
            f"{self.num_train} train / {self.num_val} val ({val_from}) / "
            f"{self.num_test} test ({test_from})"
        )

    # ---------------------------------------------------------------------- training

    def train_dataset(
        self,
        global_batch_size: int,
        *,
        image_size: int | None = None,
        augmentation: str | None = None,
        preprocessing: str | dict = "tf",
        seed: int = 0,
        start_epoch: int = 0,
        start_step: int = 0,
        epochs: int = 1,
        jpeg_decode: str = "scaled",
        ram_budget: int | None = None,
        threads: int | None = None,
    ) -> tf.data.Dataset:
        """Shuffled, augmented training batches for epochs ``start_epoch .. epochs - 1``.

        Args:
            global_batch_size: images per step over all replicas (per-replica batch x
                replicas); the last partial batch of each epoch is dropped.
            image_size: side of the square images (default ``self.image_size``).
            augmentation: one of ``AUGMENTATIONS`` (default ``self.default_augmentation``).
            preprocessing: ``"caffe"``, ``"tf"``, ``"torch"`` or ``"kinetics"``, or a
                publisher's ``{"mean": [r, g, b], "std": [r, g, b]}`` on [0, 1]
                (:func:`keras_resnet.preprocessing.check_preprocessing`).
            seed: integer; the shuffle order of epoch ``e`` derives from ``(seed, e)``,
                the augmentation of the ``p``-th image of epoch ``e`` from ``(seed, e, p)``.
            start_epoch: where to begin (a resumed run), with ``start_step``; the batches
                equal those an uninterrupted run yields from that point.
            start_step: the step inside ``start_epoch`` to begin at.
            epochs: the epoch to stop before.
            jpeg_decode: how the JPEG files of a folder or tfds dataset are decoded
                (:mod:`keras_resnet.data.jpeg`): ``"scaled"`` (default) draws the crop
                from the file's header, decodes only its window and, where the window
                is at least twice ``image_size`` on both axes, decodes it at 1/2, 1/4
                or 1/8 scale in the DCT domain (a few levels of pixel difference, the
                same geometry); ``"window"`` the same without the reduced scale
                (batches bit-for-bit those of ``"full"``); ``"full"`` decodes every
                whole file (the path before; PNG, BMP and GIF files always take it).
                The crop drawn is the same in all three.
            ram_budget: bytes of memory the pipeline may hold: a folder's images,
                decoded at ``image_size`` for the presets that resize the whole image,
                are cached when they fit (default: up to 1 GiB), and tf.data's
                autotuner keeps its buffers within what is left (default: tf.data's
                own budget, half the RAM).
            threads: threads of a private tf.data thread pool and the autotuner's
                CPU budget (default: TensorFlow's shared pool, all cores).

        Returns:
            ``tf.data.Dataset`` of ``(float32 [B, S, S, 3], int32 [B])``.
        """
        image_size = self.image_size if image_size is None else image_size
        augmentation = self.default_augmentation if augmentation is None else augmentation
        _check_image_size(image_size)
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        preprocessing = check_preprocessing(preprocessing)
        check_seed(seed)
        _check_reading(jpeg_decode, ram_budget, threads)
        steps = self.steps_per_epoch(global_batch_size)
        _check_resume_point(start_epoch, start_step, epochs, steps)
        plan = _EpochPlan(
            seed=seed,
            per_epoch=steps * global_batch_size,
            start_epoch=start_epoch,
            start_position=start_step * global_batch_size,
            augmentation=augmentation,
            image_size=image_size,
            jpeg_decode=jpeg_decode,
        )
        source = self._splits["train"]
        cache_bytes = 0
        if isinstance(source, TfdsStream):
            epoch_elements, stages = _stream_epochs(source, plan)
        else:
            epoch_elements, stages, cache_bytes = _indexed_epochs(source, plan, ram_budget)
        ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_elements)
        for stage in stages:  # reading files apart from decoding: reads overlap
            ds = ds.map(stage, num_parallel_calls=tf.data.AUTOTUNE)
        return batch_and_preprocess(ds, global_batch_size, preprocessing, drop_remainder=True,
                                    threads=threads, ram_budget=buffer_budget(ram_budget, cache_bytes))

    # -------------------------------------------------------------------- evaluation

    def eval_dataset(
        self,
        split: str,
        global_batch_size: int,
        *,
        image_size: int | None = None,
        preprocessing: str | dict = "tf",
        augmentation: str | None = None,
        jpeg_decode: str = "scaled",
        ram_budget: int | None = None,
        threads: int | None = None,
    ) -> tf.data.Dataset:
        """Batches of one split in its fixed order, the last partial batch kept.

        Args:
            split: ``"val"``, ``"test"`` or ``"train"``. ``"val"`` of a dataset without
                a validation split is a ``ValueError`` (hold one out with
                :meth:`with_validation_holdout`).
            augmentation: the training preset the evaluation goes with (default
                ``self.default_augmentation``): ``"imagenet"`` evaluates on the center
                crop of the image resized to ``image_size / 0.875``, the others on the
                whole image resized to ``image_size``.
            jpeg_decode: ``"scaled"`` (default) decodes a JPEG at 1/2, 1/4 or 1/8
                scale where the reduced image is still twice the resized one (at 224
                and 1/2: a shorter side of 1,024 pixels or more), and resamples that
                onto the same grid (:mod:`keras_resnet.data.jpeg`); smaller files, and
                all under ``"full"`` and ``"window"``, are decoded whole.
            ram_budget: as for :meth:`train_dataset`.
            threads: as for :meth:`train_dataset`.
        """
        image_size = self.image_size if image_size is None else image_size
        augmentation = self.default_augmentation if augmentation is None else augmentation
        check_positive_int("global_batch_size", global_batch_size)
        _check_image_size(image_size)
        preprocessing = check_preprocessing(preprocessing)
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        _check_reading(jpeg_decode, ram_budget, threads)
        ds, cache_bytes = self._eval_images(
            split, image_size, eval_kind(augmentation), jpeg_decode, ram_budget
        )
        return batch_and_preprocess(
            ds, global_batch_size, preprocessing, drop_remainder=False,
            threads=threads, ram_budget=buffer_budget(ram_budget, cache_bytes),
        )

    def _eval_images(self, split, size, kind, jpeg_decode="scaled", ram_budget=None):
        """(unbatched (float32 image 0..255, int32 label) of a split in order, bytes
        of decoded images it holds in memory)."""
        source = self._split(split)
        if isinstance(source, TfdsStream):
            return source.records().map(
                lambda x, y: (eval_image_encoded(x, kind, size, jpeg_decode), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            ), 0
        labels = tf.constant(source.labels, tf.int32)
        ds = tf.data.Dataset.range(source.n)
        cached = cached_images(source, kind, size, ram_budget, jpeg_decode)
        if cached is not None:
            return ds.map(
                lambda i: (eval_image(cached(i), "resize", size), tf.gather(labels, i)),
                num_parallel_calls=tf.data.AUTOTUNE,
            ), source.cache_bytes(size)
        if isinstance(source, FileSource):
            ds = ds.map(lambda i: (source.read(i), i), num_parallel_calls=tf.data.AUTOTUNE)
            return ds.map(
                lambda x, i: (eval_image_encoded(x, kind, size, jpeg_decode),
                              tf.gather(labels, i)),
                num_parallel_calls=tf.data.AUTOTUNE,
            ), 0
        load, _ = source.loader(kind, size)
        return ds.map(
            lambda i: (eval_image(load(i), kind, size), tf.gather(labels, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
        ), 0

    def raw_images(
        self, split: str, n: int, *, image_size: int | None = None, augmentation: str | None = None
    ) -> tuple:
        """The first ``n`` images of a split (fewer when the split is smaller) as the
        evaluation pipeline sees them before preprocessing.

        Returns:
            ``(uint8 [n, S, S, 3] numpy array, int32 [n] labels)``.
        """
        check_positive_int("n", n)
        image_size = self.image_size if image_size is None else image_size
        augmentation = self.default_augmentation if augmentation is None else augmentation
        _check_image_size(image_size)
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        ds, _ = self._eval_images(split, image_size, eval_kind(augmentation))
        ds = ds.take(n)
        images, labels = [], []
        for x, y in ds.batch(256):
            images.append(to_uint8(x.numpy()))
            labels.append(y.numpy())
        return np.concatenate(images), np.concatenate(labels)


# ------------------------------------------------------------- training pipeline parts


def _check_resume_point(start_epoch, start_step, epochs, steps):
    check_positive_int("epochs", epochs)
    check_non_negative_int("start_epoch", start_epoch)
    if start_epoch >= epochs:
        raise ValueError(
            f"start_epoch must be less than epochs ({epochs}). Received: start_epoch={start_epoch}"
        )
    check_non_negative_int("start_step", start_step)
    if start_step >= steps:
        raise ValueError(
            f"start_step must be less than steps_per_epoch ({steps}). "
            f"Received: start_step={start_step}"
        )


@dataclasses.dataclass(frozen=True)
class _EpochPlan:
    """What every epoch of a training pipeline derives from."""

    seed: int
    per_epoch: int  # images per epoch (steps x global batch)
    start_epoch: int
    start_position: int  # first image of the start epoch
    augmentation: str
    image_size: int
    jpeg_decode: str = "scaled"

    def seeds(self, epoch):
        """(order of the epoch, windows of a stream, per-image augmentation) seeds."""
        base = tf.stack([tf.constant(self.seed, tf.int64), epoch])
        return fold(base, 0), fold(base, 1), fold(base, 2)

    def first(self, epoch):
        """Position of the first image of ``epoch`` to yield (> 0 only when resuming)."""
        start = tf.constant(self.start_position, tf.int64)
        return tf.where(epoch == self.start_epoch, start, tf.constant(0, tf.int64))

    def image_seed(self, epoch, position):
        return fold(self.seeds(epoch)[2], position)

    def transform(self, image, epoch, position):
        seed = self.image_seed(epoch, position)
        return train_transform(image, self.augmentation, self.image_size, seed)

    def transform_encoded(self, encoded, epoch, position):
        seed = self.image_seed(epoch, position)
        return train_transform_encoded(
            encoded, self.augmentation, self.image_size, seed, self.jpeg_decode
        )


def _indexed_epochs(source, plan, ram_budget):
    """Epochs of a source read by index: a stateless permutation per epoch. Returns
    (epoch -> elements, the map stages, bytes of images cached in memory): files
    that are not cached are read in one stage and decoded in the next."""
    kind = "resize" if plan.augmentation != "imagenet" else None
    labels = tf.constant(source.labels, tf.int32)
    n = source.n

    def epoch_elements(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=plan.seeds(epoch)[0]
        )
        start = plan.first(epoch)
        positions = tf.range(start, plan.per_epoch, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill(tf.shape(positions), epoch), positions, order[start : plan.per_epoch])
        )

    cached = cached_images(source, kind, plan.image_size, ram_budget, plan.jpeg_decode)
    if cached is not None:
        load, cache_bytes = cached, source.cache_bytes(plan.image_size)
    elif isinstance(source, FileSource):

        def read(epoch, position, index):
            return epoch, position, source.read(index), tf.gather(labels, index)

        def decode_element(epoch, position, encoded, label):
            return plan.transform_encoded(encoded, epoch, position), label

        return epoch_elements, (read, decode_element), 0
    else:
        load, _ = source.loader(kind, plan.image_size)
        cache_bytes = 0

    def element(epoch, position, index):
        return plan.transform(load(index), epoch, position), tf.gather(labels, index)

    return epoch_elements, (element,), cache_bytes


def _stream_epochs(source, plan):
    """Epochs of a stream: its stored order shuffled in windows of ``SHUFFLE_WINDOW``."""
    records = source.records()

    def epoch_elements(epoch):
        window_seed = plan.seeds(epoch)[1]

        def shuffle_window(window, batch):
            images, labels = batch
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(labels)[0]), seed=fold(window_seed, window)
            )
            return tf.gather(images, order), tf.gather(labels, order)

        ds = records.batch(SHUFFLE_WINDOW).enumerate().map(shuffle_window).unbatch()
        ds = ds.take(plan.per_epoch).enumerate().skip(plan.first(epoch))
        return ds.map(lambda p, xy: (epoch, p, xy[0], xy[1]))

    def element(epoch, position, encoded, label):
        return plan.transform_encoded(encoded, epoch, position), label

    return epoch_elements, (element,)
