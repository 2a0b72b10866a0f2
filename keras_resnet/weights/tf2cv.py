"""osmr/imgclsmob's tf2cv weight files (``*.tf2.h5``, published as ``*.tf2.h5.zip``) read into
pytorchcv's tensor names and torch layouts, so one converter
(:func:`keras_resnet.weights.convert.pytorchcv_prefix`) serves both.

tf2cv's models are subclassed ``tf.keras`` models saved with ``save_weights`` (Keras 2's
HDF5 layout): the root lists ``layer_names`` (``features``, ``output1``), each group lists
``weight_names`` such as ``features/features/stage1/stage1/unit1/body/conv1/conv/conv/kernel:0``
and holds each array at that path. tf2cv's ``Conv2d`` wraps a Keras ``Conv2D`` named ``conv``
(``.../conv/kernel``, one level below pytorchcv's module), its ``SimpleSequential``
containers repeat their names (``features/features``, ``stage1/stage1``), its
``BatchNormalization`` stores gamma / beta / moving_mean / moving_variance, and the
classifier is ``output1``. Kernels are HWIO (Dense: in x out); they become OIHW / out x in.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np

H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
           "moving_mean": "running_mean", "moving_variance": "running_var"}


def _head(path: str) -> bytes:
    """The first bytes of the file at ``path``, or of the one file inside its zip."""
    from keras_resnet.weights.download import zip_member

    member = zip_member(path)
    if member is None:
        with open(path, "rb") as f:
            return f.read(len(H5_SIGNATURE))
    with zipfile.ZipFile(path) as z, z.open(member) as f:
        return f.read(len(H5_SIGNATURE))


def _open(path: str):
    """A readable binary stream of the HDF5 file at ``path`` or inside its one-file zip (read
    into memory after the zip's declared sizes are checked, as torch records are)."""
    from keras_resnet.weights.download import zip_member
    from keras_resnet.weights.torch_pickle import read_zip_record

    member = zip_member(path)
    if member is None:
        return open(path, "rb")
    with zipfile.ZipFile(path) as z:
        return io.BytesIO(bytes(read_zip_record(z, member, None, path)))


def is_tf2cv(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a tf2cv weights file (plain or a one-file zip): Keras 2's HDF5
    layout whose top-level layers are tf2cv's ``features`` and ``output1``."""
    path = os.fspath(path)
    if not os.path.isfile(path) or _head(path) != H5_SIGNATURE:
        return False
    import h5py

    with _open(path) as f, h5py.File(f, "r") as h5:
        names = [n.decode() if isinstance(n, bytes) else n for n in h5.attrs.get("layer_names", [])]
    return "features" in names and "output1" in names


def pytorchcv_name(weight_name: str) -> str:
    """The pytorchcv tensor a tf2cv weight name stands for
    (``features/features/init_block/conv/conv/kernel:0`` -> ``features.init_block.conv.weight``)."""
    parts = weight_name.split(":", 1)[0].split("/")
    kept = [p for i, p in enumerate(parts)
            if not (i and p == parts[i - 1] and re.fullmatch(r"features|stage\d+", p))]
    *module, leaf = kept
    if leaf not in _LEAVES:
        raise ValueError(f"tf2cv weight {weight_name!r} is none of {sorted(_LEAVES)}")
    if leaf in ("kernel", "bias") and module[-1] == "conv":
        module = module[:-1]  # tf2cv's Conv2d wrapper holds a Keras Conv2D named "conv"
    if module == ["output1"]:
        module = ["output"]
    return ".".join(module + [_LEAVES[leaf]])


def read_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{pytorchcv name: array in torch's layout}`` of a tf2cv ``.tf2.h5`` (or its zip)."""
    import h5py

    path = os.fspath(path)
    state = {}
    with _open(path) as f, h5py.File(f, "r") as h5:
        for layer in h5.attrs["layer_names"]:
            group = h5[layer.decode() if isinstance(layer, bytes) else layer]
            for name in group.attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                value = np.asarray(group[name])
                if value.ndim == 4:
                    value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
                elif value.ndim == 2:
                    value = value.T  # Dense (in, out) -> Linear (out, in)
                key = pytorchcv_name(name)
                if key in state:
                    raise ValueError(f"{path}: two tf2cv weights map to {key!r}")
                state[key] = value
    return state
