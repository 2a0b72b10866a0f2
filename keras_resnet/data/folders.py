"""A folder of class subfolders as a dataset.

``PATH/<class>/*`` or ``PATH/train/<class>/*`` with ``test/`` and optionally ``val/``
(or ``validation/``) beside it. Every file's header is read by Pillow before TensorFlow
decodes anything. Files that are not readable JPEG/PNG/BMP/GIF images, and images whose
header promises more than ``max_image_pixels`` decoded pixels (decompression bombs: a
390 KB PNG can decode to 20,000 x 20,000), are skipped, listed in
``ImageData.skipped_files`` (why: ``ImageData.skip_reasons``) and counted in one line.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from keras_resnet.data.sources import FileSource, Loaded, stratified_split
from keras_resnet.utils import MAX_IMAGE_PIXELS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# formats tf.io.decode_image reads (as Pillow names them)
DECODABLE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")
SPLIT_FOLDERS = ("train", "val", "validation", "test")
OVER_LIMIT = "over max_image_pixels"


@contextlib.contextmanager
def _own_pixel_limit():
    """Pillow's decompression-bomb check off while headers are read: ours replaces it,
    at the limit asked for, and reports the dimensions (Pillow only warns below twice
    its 89-megapixel default, and its error does not name them)."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_image_file(path: str, max_image_pixels: int | None = MAX_IMAGE_PIXELS) -> tuple:
    """(None, shorter side) when Pillow reads a JPEG/PNG/BMP/GIF header that checks
    out (PNG CRCs, JPEG end marker) and promises at most ``max_image_pixels`` decoded
    pixels, else (the reason it is skipped, 0). Nothing is decoded: ``Image.open``
    reads the header, ``verify`` the chunk checksums. Call it inside
    ``_own_pixel_limit()``."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image_format, size = image.format, image.size
            if max_image_pixels is not None and size[0] * size[1] > max_image_pixels:
                return f"{size[0]} x {size[1]} pixels, {OVER_LIMIT}={max_image_pixels:,}", 0
            image.verify()
    except Exception as error:  # Pillow raises many kinds for broken files
        return f"not a readable image ({type(error).__name__})", 0
    if image_format not in DECODABLE_FORMATS:
        return f"format {image_format} is not one of {DECODABLE_FORMATS}", 0
    if image_format == "JPEG":
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64))
            if b"\xff\xd9" not in f.read():
                return "truncated JPEG (no end marker)", 0
    return None, min(size)


def _class_files(class_folder):
    """Non-hidden files under ``class_folder``, walked in sorted order."""
    for root, dirs, files in os.walk(class_folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(files):
            if not file.startswith("."):
                yield os.path.join(root, file)


def _subfolders(folder):
    return sorted(
        d for d in os.listdir(folder)
        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def scan_classes(folder, class_names=None, max_image_pixels=MAX_IMAGE_PIXELS):
    """``(class_names, paths, labels, shorter sides, {skipped path: reason})`` of
    ``folder/<class>/*``; the classes are the sorted subfolders, or ``class_names``
    (each subfolder must be one of them)."""
    subfolders = _subfolders(folder)
    if class_names is None:
        class_names = subfolders
    else:
        unknown = sorted(set(subfolders) - set(class_names))
        if unknown:
            raise ValueError(
                f"data_dir split folder {folder!r} has classes {unknown} that its train "
                f"folder does not have. Received: data_dir={os.path.dirname(folder)!r}"
            )
    paths, labels, sides, skipped = [], [], [], {}
    for label, name in enumerate(class_names):
        class_folder = os.path.join(folder, name)
        if not os.path.isdir(class_folder):
            continue
        for path in _class_files(class_folder):
            with _own_pixel_limit():
                reason, side = check_image_file(path, max_image_pixels)
            if reason is None:
                paths.append(path)
                labels.append(label)
                sides.append(side)
            else:
                skipped[path] = reason
    return class_names, paths, np.asarray(labels, dtype=np.int32), sides, skipped


def _check_train_folder(data_dir, train_folder, class_names, paths, labels, skipped):
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


def skipped_notice(data_dir: str, total: int, skipped: dict) -> str:
    """The one line that reports the skipped files of a folder (``{path: reason}``):
    how many, why, and an example of each kind; an image over the pixel limit is named
    with its dimensions."""
    over = [(p, r) for p, r in skipped.items() if OVER_LIMIT in r]
    unreadable = [p for p, r in skipped.items() if OVER_LIMIT not in r]
    parts = []
    if unreadable:
        parts.append(
            f"{len(unreadable)} not readable JPEG/PNG/BMP/GIF images (e.g. {unreadable[0]})"
        )
    if over:
        path, reason = over[0]
        parts.append(f"{len(over)} {OVER_LIMIT} (e.g. {path}: {reason})")
    return (
        f"keras_resnet.data: skipped {len(skipped)} of {total} files in {data_dir}: "
        + "; ".join(parts)
    )


def load_folder(
    data_dir, *, seed: int, holdout_fraction: float, max_image_pixels: int | None = MAX_IMAGE_PIXELS
) -> Loaded:
    """The class folders of ``data_dir`` as a :class:`Loaded` record."""
    if not isinstance(data_dir, (str, os.PathLike)) or not os.path.isdir(data_dir):
        raise ValueError(
            "data_dir must be an existing folder of class subfolders. "
            f"Received: data_dir={data_dir!r}"
        )
    data_dir = os.fspath(data_dir)
    subfolders = {d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d))}
    split_layout = "train" in subfolders and subfolders <= set(SPLIT_FOLDERS)
    train_folder = os.path.join(data_dir, "train") if split_layout else data_dir
    class_names, paths, labels, sides, skipped = scan_classes(
        train_folder, max_image_pixels=max_image_pixels
    )
    _check_train_folder(data_dir, train_folder, class_names, paths, labels, skipped)
    total = len(paths) + len(skipped)
    splits = {}
    for split, names in (("test", ("test",)), ("val", ("val", "validation"))):
        folder = next(
            (os.path.join(data_dir, s) for s in names if split_layout and s in subfolders), None
        )
        if folder is None:
            continue
        _, split_paths, split_labels, _, split_skipped = scan_classes(
            folder, class_names, max_image_pixels
        )
        skipped.update(split_skipped)
        total += len(split_paths) + len(split_skipped)
        if split_paths:
            splits[split] = FileSource(split_paths, split_labels)
    test_source = "the folder's test/ split"
    if "test" not in splits:
        keep, held = stratified_split(labels, holdout_fraction, seed)
        splits["test"] = FileSource([paths[i] for i in held], labels[held])
        paths, labels, sides = [paths[i] for i in keep], labels[keep], [sides[i] for i in keep]
        test_source = f"a stratified {holdout_fraction:g} of each class, seed {seed}"
    splits["train"] = FileSource(paths, labels)
    if skipped:
        print(skipped_notice(data_dir, total, skipped), flush=True)
    return Loaded(
        name=os.path.basename(os.path.normpath(data_dir)),
        class_names=list(class_names),
        splits=splits,
        side=int(np.median(sides)),
        skipped_files=list(skipped),
        skip_reasons=skipped,
        test_source=test_source,
    )
