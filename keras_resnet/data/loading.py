"""``load_data``: a dataset name or a folder in, an :class:`ImageData` out."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from keras_resnet import specs
from keras_resnet.data.folders import MAX_IMAGE_PIXELS, load_folder
from keras_resnet.data.image_data import ImageData, check_fraction, check_seed
from keras_resnet.data.sources import Loaded, load_digits_source
from keras_resnet.utils import check_choice, check_non_negative_int, check_positive_int, fail

# Images larger than small ones (specs.family_for_image_size) train at this size.
IMAGENET_SIZE = 224


def load_data(
    dataset: str = "digits",
    *,
    data_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | None = None,
    manual_dir: str | None = None,
    seed: int = 0,
    holdout_fraction: float = 0.2,
    download: bool | str = "auto",
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    validation_fraction: float | None = None,
) -> ImageData:
    """Load a dataset for training and evaluation.

    Args:
        dataset: ``"digits"`` (bundled) or a TensorFlow Datasets image-classification
            name (``"cifar10"``, ``"imagenette"``, ``"imagenet2012"`` ...).
        data_dir: a folder of class subfolders, or of ``train/``, ``test/`` (and
            optionally ``val/``) folders of class subfolders. Wins over ``dataset``.
        tfds_data_dir: where tfds datasets are (or are prepared); tfds' default else.
        manual_dir: folder with manually downloaded files (``imagenet2012``).
        seed: seed of the held-out test split of a folder without a test split. Not the
            training seed: keep it fixed so the test set stays the same from run to run.
            The digits split is fixed and ignores it; a tfds dataset without a test
            split holds out the tail of its train split.
        holdout_fraction: fraction of each class held out as test data when there is
            no test split.
        download: ``"auto"`` (download an unprepared tfds dataset when the network is
            reachable), ``True`` (always try) or ``False`` (never).
        max_image_pixels: the most decoded pixels (width x height) a folder image may
            have, read from its header before anything decodes it (default 50
            megapixels); larger ones are skipped and reported with their dimensions.
            None: no limit.
        validation_fraction: when given and the dataset has no validation split, hold
            out this fraction of each class of train as one, chosen with ``seed``
            (:meth:`ImageData.with_validation_holdout`).

    Returns:
        :class:`ImageData`.
    """
    check_seed(seed)
    check_fraction("holdout_fraction", holdout_fraction)
    check_choice("download", download, ("auto", True, False))
    if max_image_pixels is not None:
        check_positive_int("max_image_pixels", max_image_pixels)
    if validation_fraction is not None:
        check_fraction("validation_fraction", validation_fraction)
    if data_dir is not None:
        loaded = load_folder(
            data_dir, seed=seed, holdout_fraction=holdout_fraction,
            max_image_pixels=max_image_pixels,
        )
    elif not isinstance(dataset, str) or not dataset:
        fail("dataset", dataset, "'digits' or a TensorFlow Datasets name")
    elif dataset == "digits":
        loaded = load_digits_source()
    else:
        from keras_resnet.data.tfds_source import load_tfds

        loaded = load_tfds(
            dataset,
            tfds_data_dir=tfds_data_dir,
            manual_dir=manual_dir,
            holdout_fraction=holdout_fraction,
            download=download,
        )
    data = build_image_data(loaded)
    if validation_fraction is not None:
        data = data.with_validation_holdout(validation_fraction, seed=seed)
    return data


def build_image_data(loaded: Loaded) -> ImageData:
    """An :class:`ImageData` over what a loader found. Small images (the CIFAR family:
    ``specs.family_for_image_size``) train at their own size with the "cifar" preset,
    others at 224 with the "imagenet" preset."""
    splits = loaded.splits
    small = loaded.side is not None and specs.family_for_image_size(loaded.side) == "cifar"
    counts = {s: splits[s].n if s in splits else 0 for s in ("train", "val", "test")}
    return ImageData(
        name=loaded.name,
        class_names=list(loaded.class_names),
        num_train=counts["train"],
        num_val=counts["val"],
        num_test=counts["test"],
        image_size=max(8, loaded.side) if small else IMAGENET_SIZE,
        default_augmentation=loaded.default_augmentation or ("cifar" if small else "imagenet"),
        skipped_files=list(loaded.skipped_files),
        skip_reasons=dict(loaded.skip_reasons),
        split_info={
            "counts": counts,
            "validation": {"source": "the dataset's validation split" if counts["val"] else "none"},
            "test": {"source": loaded.test_source},
        },
        _splits=splits,
    )


def pipeline_throughput(
    data: ImageData | str, *, global_batch_size: int = 128, steps: int = 50,
    warmup_steps: int = 5, **pipeline: Any,
) -> float:
    """Images per second the training pipeline of ``data`` (an :class:`ImageData` or
    a name for :func:`load_data`) delivers, measured over ``steps`` batches after
    ``warmup_steps`` (no model attached). ``pipeline``: keywords of
    :meth:`ImageData.train_dataset` (``image_size``, ``augmentation``, ``preprocessing``,
    ``seed``, ``jpeg_decode``, ``threads``, ``ram_budget``). Side by side with
    torchvision's and DALI's pipelines: ``benchmarks/input_pipeline.py``."""
    check_positive_int("steps", steps)
    check_non_negative_int("warmup_steps", warmup_steps)
    if not isinstance(data, ImageData):
        data = load_data(data)
    per_epoch = data.steps_per_epoch(global_batch_size)
    epochs = math.ceil((steps + warmup_steps) / per_epoch)
    ds = data.train_dataset(global_batch_size, epochs=epochs, **pipeline)
    iterator = iter(ds)
    for _ in range(warmup_steps):
        next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * global_batch_size / (time.perf_counter() - started)
