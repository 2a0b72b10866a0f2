"""TensorFlow Datasets image-classification datasets as sources.

Any tfds dataset whose supervised keys are an image and a class label. An unprepared
dataset that cannot be downloaded fails within seconds (a connection probe) instead of
letting tfds retry for minutes. Fixed-size splits that fit in memory are read into
arrays; others are streamed.
"""

import os
import socket

import numpy as np

from keras_resnet.data import sources
from keras_resnet.data.sources import ArraySource, Loaded, TfdsStream
from keras_resnet.data.transforms import to_rgb
from keras_resnet.errors import Unavailable

# Where the network probe connects (tfds downloads mostly come from Google storage).
NETWORK_PROBE_ADDRESS = ("storage.googleapis.com", 443)
NETWORK_PROBE_TIMEOUT_S = 3.0


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
        raise Unavailable(
            f"Dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}) and "
            f"needs manually downloaded files: pass their folder as manual_dir (--manual-dir). "
            f"tfds says: {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    if not builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        if download is False:
            raise Unavailable(
                f"Dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}) "
                f"and downloading is off (download=False). {prepare}"
            )
        if download == "auto" and not _network_available():
            host, port = NETWORK_PROBE_ADDRESS
            raise Unavailable(
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
    return to_rgb(np.concatenate(images)), np.concatenate(labels).astype(np.int32)


def load_tfds(name: str, *, tfds_data_dir, manual_dir, holdout_fraction: float, download) -> Loaded:
    """A prepared (or now prepared) tfds dataset as a :class:`Loaded` record. A dataset
    without a labeled test split has the tail of its train split held out (tfds shuffled
    the examples when preparing them)."""
    builder = _tfds_builder(
        name, tfds_data_dir=tfds_data_dir, manual_dir=manual_dir, download=download
    )
    image_key, label_key = builder.info.supervised_keys
    shape = builder.info.features[image_key].shape
    fixed_size = shape[0] is not None and shape[0] == shape[1]
    names = _tfds_split_names(builder, name, holdout_fraction)
    splits = {}
    for split, spec in names.items():
        n = int(builder.as_dataset(split=spec, shuffle_files=False).cardinality())
        if n < 0:
            n = builder.info.splits[spec].num_examples
        if fixed_size and n * shape[0] * shape[1] * 3 <= sources.MEMORY_CACHE_BYTES:
            splits[split] = ArraySource(*_read_tfds_arrays(builder, spec))
        else:
            splits[split] = TfdsStream(builder, spec, n)
    return Loaded(
        name=name,
        class_names=list(builder.info.features[label_key].names),
        splits=splits,
        side=shape[0] if fixed_size else None,
        test_source=f"tfds split {names['test']!r}",
    )
