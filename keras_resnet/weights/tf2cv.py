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
MAX_MEMBER_BYTES = 1 << 31  # osmr's largest CIFAR file is under 100 MB
_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
           "moving_mean": "running_mean", "moving_variance": "running_var"}


def _open(path: str):
    """A readable binary stream of the HDF5 file at ``path`` or inside its one-file zip."""
    from keras_resnet.weights.download import zip_member

    member = zip_member(path)
    if member is None:
        return open(path, "rb")
    with zipfile.ZipFile(path) as z:
        size = z.getinfo(member).file_size
        if size > MAX_MEMBER_BYTES:
            raise ValueError(f"{path}: {member} would be {size} bytes, more than a tf2cv file "
                             f"holds ({MAX_MEMBER_BYTES}); refusing to extract it")
        with z.open(member) as f:
            data = f.read(MAX_MEMBER_BYTES + 1)
    return io.BytesIO(data[:MAX_MEMBER_BYTES])


def is_tf2cv(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a tf2cv weights file (plain or a one-file zip): Keras 2's HDF5
    layout whose top-level layers are tf2cv's ``features`` and ``output1``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with _open(path) as f:
        if f.read(8) != H5_SIGNATURE:
            return False
        f.seek(0)
        import h5py

        with h5py.File(f, "r") as h5:
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
