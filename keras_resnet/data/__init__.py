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

The modules:

- :mod:`~keras_resnet.data.transforms`: decode, resize, crops and flips, preprocessing;
- :mod:`~keras_resnet.data.jpeg`: JPEG files: the crop drawn from the header, only its
  window decoded, DCT-domain downscaling (``jpeg_decode`` of the pipelines);
- :mod:`~keras_resnet.data.sources`: the kinds of split (arrays, files, tfds streams),
  stratified splits and the bundled digits; :mod:`~keras_resnet.data.folders` and
  :mod:`~keras_resnet.data.tfds_source` read class folders and TensorFlow Datasets;
- :mod:`~keras_resnet.data.image_data`: :class:`ImageData` and its pipelines;
- :mod:`~keras_resnet.data.loading`: :func:`load_data`.
"""

from keras_resnet.data.folders import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, SPLIT_FOLDERS
from keras_resnet.data.image_data import ImageData
from keras_resnet.data.loading import IMAGENET_SIZE, load_data, pipeline_throughput
from keras_resnet.data.sources import DIGITS_SIZE, digits_images, stratified_split
from keras_resnet.data.transforms import AUGMENTATIONS, CENTER_CROP_FRACTION

__all__ = [
    "AUGMENTATIONS",
    "CENTER_CROP_FRACTION",
    "DIGITS_SIZE",
    "IMAGE_EXTENSIONS",
    "IMAGENET_SIZE",
    "MAX_IMAGE_PIXELS",
    "SPLIT_FOLDERS",
    "ImageData",
    "digits_images",
    "load_data",
    "pipeline_throughput",
    "stratified_split",
]
