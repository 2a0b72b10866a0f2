"""Read a checkpoint into ``{tensor name: numpy array}``, whatever its file format.

A file is recognised by its content, never by its name:

- ``torch.save`` files in the zip layout (PyTorch >= 1.6: a zip with one ``*/data.pkl``)
  or the legacy layout (a pickle starting with torch's magic number: PyTorch 0.3 - 1.5 and
  ``_use_new_zipfile_serialization=False``), whatever they are called: ``.pth``, ``.pt``,
  ``.th``, ``.pth.tar``, ``.bin`` (``pytorch_model.bin``), ``.ckpt``, no extension. They
  are read by :mod:`keras_resnet.weights.torch_pickle`, which never imports torch, never
  runs code from the file and checks every size before reading;
- safetensors files (timm / Hugging Face ``model.safetensors``) through
  ``safetensors.numpy``;
- a zip holding exactly one member that is one of these (osmr's ``.pth.zip``), read from
  memory within the same size bounds.

Training scripts save more than the weights: ``{"state_dict": ..., "epoch": 90,
"optimizer": ..., "best_prec1": 91.7}``. The state dict is taken from the first of
:data:`CONTAINER_KEYS` that holds one (at most three levels deep); the other entries are
ignored and named in :attr:`Checkpoint.ignored_entries`. A prefix that every name shares
(``module.`` from ``DataParallel``, ``_orig_mod.`` from ``torch.compile``, ``model.``,
``backbone.``) is kept here and stripped when the names are matched to a model
(:class:`keras_resnet.weights.convert.Porter`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile

import numpy as np

# Where training scripts put the state dict: the PyTorch ImageNet example and akamaster
# ("state_dict"), torchvision's reference scripts / timm / Lightning ("model",
# "state_dict"), others ("model_state", "model_state_dict", "net", "network"), and EMA
# copies (timm's "state_dict_ema", "model_ema", "ema"), tried in this order.
CONTAINER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net", "network",
                  "module", "state_dict_ema", "model_ema", "ema")
# What ``weights=`` accepts as a file or folder, for error messages.
ACCEPTED_FORMATS = (
    "a Keras file (.h5 / .weights.h5 / .keras), a torch.save checkpoint (zip or legacy "
    "layout, any name: .pth, .pt, .th, .pth.tar, .bin, .ckpt), a .safetensors file, a zip "
    "holding one such checkpoint (.pth.zip) or a keras-hub preset folder")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HEAD = 64


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint file as read: its state dict and what was left beside it."""

    state: dict[str, np.ndarray]
    format: str  # "torch.save zip", "torch.save legacy", "safetensors"
    container: str | None = None  # the key path of the state dict, e.g. "state_dict"
    ignored_entries: tuple[str, ...] = ()  # entries beside it (epoch, optimizer, ...)


def _head(f) -> bytes:
    f.seek(0)
    return f.read(_HEAD)


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _sniff_file(f, size: int, *, nested: bool = False) -> str | None:
    """The format of an open binary file: "torch zip", "torch legacy", "safetensors",
    "hdf5", "keras", "wrapped" (a zip of one checkpoint) or None."""
    from keras_resnet.weights import torch_pickle

    head = _head(f)
    if head.startswith(_HDF5_SIGNATURE):
        return "hdf5"
    if torch_pickle.is_legacy(head):
        return "torch legacy"
    if _is_safetensors(head, size):
        return "safetensors"
    f.seek(0)
    if not zipfile.is_zipfile(f):
        return None
    with zipfile.ZipFile(f) as z:
        if torch_pickle.is_torch_zip(z):
            return "torch zip"
        names = z.namelist()
        if "config.json" in names and "model.weights.h5" in names:
            return "keras"
        infos = [i for i in z.infolist() if not i.is_dir()]
        if nested or len(infos) != 1:
            return None
        with z.open(infos[0]) as member:
            inner = _sniff_member(member, infos[0])
        return "wrapped" if inner in _TENSOR_FORMATS else None


def _sniff_member(member, info) -> str | None:
    """The format of a zip member, from its first bytes (and, for a zip inside, from the
    member read into memory within the size bounds)."""
    from keras_resnet.weights import torch_pickle

    head = member.read(_HEAD)
    if head.startswith(b"PK"):
        return "torch zip"  # checked again when read
    if torch_pickle.is_legacy(head):
        return "torch legacy"
    if _is_safetensors(head, info.file_size):
        return "safetensors"
    return "hdf5" if head.startswith(_HDF5_SIGNATURE) else None


_TENSOR_FORMATS = ("torch zip", "torch legacy", "safetensors")


def file_format(path) -> str | None:
    """What ``path`` holds, judged by content: "torch zip", "torch legacy", "safetensors",
    "wrapped" (a zip of one checkpoint), "hdf5", "keras" (a ``.keras`` archive), or None
    (not a file, or none of these)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return _sniff_file(f, os.path.getsize(path))


def is_checkpoint(path) -> bool:
    """Whether ``path`` is a file :func:`read_checkpoint` reads (by content, any name)."""
    try:
        return file_format(path) in _TENSOR_FORMATS + ("wrapped",)
    except (OSError, zipfile.BadZipFile):
        return False


def _describe(obj) -> str:
    if isinstance(obj, dict):
        return f"a dict with keys {[str(k) for k in list(obj)[:8]]}"
    return f"a {type(obj).__name__}"


def _find_state(obj, source: str):
    """``(state dict, container key path, entries ignored beside it)`` of what
    ``torch.save`` stored; ``ValueError`` naming what the file holds when there is none."""
    trail, ignored = [], []
    top = obj
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, np.ndarray)}
        key = None if len(tensors) == len(obj) else next(
            (k for k in CONTAINER_KEYS if isinstance(obj.get(k), dict) and obj[k]), None)
        where = "".join(f"{t}." for t in trail)
        if key is None:
            if not tensors:
                break
            ignored += [f"{where}{k}" for k in obj if k not in tensors]
            return tensors, ".".join(trail) or None, tuple(ignored)
        ignored += [f"{where}{k}" for k in obj if k != key]
        trail.append(key)
        obj = obj[key]
    raise ValueError(
        f"{source} holds no state dict (a dict of tensors, or one under "
        f"{' / '.join(repr(k) for k in CONTAINER_KEYS)}); it holds {_describe(top)}")


def _read_torch(file, source, fmt) -> Checkpoint:
    from keras_resnet.weights.torch_pickle import load_torch_file

    state, container, ignored = _find_state(load_torch_file(file, source=source), source)
    return Checkpoint(dict(state), f"torch.save {fmt.split()[1]}", container, ignored)


def _read_safetensors(data_or_path, source) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.numpy import load, load_file

    try:
        if isinstance(data_or_path, str):
            state = load_file(data_or_path)
        else:
            state = load(bytes(data_or_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{source} is not a readable safetensors file ({e})") from e
    return Checkpoint(dict(state), "safetensors")


def _read_wrapped(path) -> Checkpoint:
    """The one checkpoint inside a zip (osmr's ``.pth.zip``), read into memory after
    checking its declared sizes (no extraction to disk)."""
    from keras_resnet.weights import torch_pickle

    with zipfile.ZipFile(path) as z:
        (info,) = [i for i in z.infolist() if not i.is_dir()]
        data = torch_pickle.read_zip_record(z, info.filename, None, path)
    source = f"{path}:{info.filename}"
    f = io.BytesIO(data)
    fmt = _sniff_file(f, len(data), nested=True)
    if fmt == "safetensors":
        return _read_safetensors(data, source)
    if fmt not in _TENSOR_FORMATS:
        raise ValueError(f"{source} is not a checkpoint; weights must be {ACCEPTED_FORMATS}")
    checkpoint = _read_torch(f, source, fmt)
    checkpoint.format += " in a zip"
    return checkpoint


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The :class:`Checkpoint` in ``path`` (``torch.save`` in any layout and under any
    name, safetensors, or a zip of one of them), read without torch.

    Raises ``ValueError`` naming the file when it is in none of these formats, holds no
    state dict, names anything a checkpoint does not need (a pickled model object
    included), or declares sizes that disagree with its content.
    """
    path = os.fspath(path)
    try:
        fmt = file_format(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e})") from e
    if fmt == "safetensors":
        return _read_safetensors(path, path)
    if fmt in ("torch zip", "torch legacy"):
        return _read_torch(path, path, fmt)
    if fmt == "wrapped":
        return _read_wrapped(path)
    raise ValueError(f"weights must be {ACCEPTED_FORMATS}. Received: {path!r}"
                     + (f" (a {fmt} file)" if fmt else ""))


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of the checkpoint in ``path`` (:func:`open_checkpoint`), names as
    stored (a shared prefix such as ``module.`` included)."""
    return open_checkpoint(path).state
