"""Deterministic reference weights and ``torch.save``'s file layout, in numpy only.

Both ``tools/make_weight_fixtures.py`` (with torch, writing the reference logits) and the
tests (without torch) regenerate the same tensors from a name and a shape, so no weights
are committed; the tests then write them in the real file formats.
"""

import io
import struct
from collections import OrderedDict
import zipfile
import zlib

import numpy as np


def tensor_for(name, shape, dtype="float32"):
    """The tensor called ``name``: a seed from the name, a distribution from its role
    (He-normal convs, non-trivial BN statistics), the same on every machine."""
    shape = tuple(int(d) for d in shape)
    if dtype == "int64":
        return np.full(shape, 7, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if leaf == "running_mean" or (leaf == "bias" and len(shape) == 1):
        return rng.uniform(-0.2, 0.2, shape).astype(np.float32)
    if leaf == "weight" and len(shape) == 1:  # BN gamma
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    gain = 2.0 if len(shape) == 4 else 1.0
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(gain / fan_in))


def state_from_manifest(manifest):
    """``{name: array}`` for a manifest of ``[name, shape, dtype]`` rows."""
    return {name: tensor_for(name, shape, dtype) for name, shape, dtype in manifest}


# ---------------------------------------------------------------- torch.save's zip layout

_STORAGE = {"float32": "FloatStorage", "int64": "LongStorage", "float16": "HalfStorage",
            "float64": "DoubleStorage"}


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s):
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(i):
    return b"J" + struct.pack("<i", i)


def _tuple(items):
    return b"(" + b"".join(_int(i) for i in items) + b"t" if items else b")"


def _ordered_dict():
    return _global("collections", "OrderedDict") + b")R"


def _contiguous_strides(shape):
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


def state_dict_pickle(state):
    """Protocol-2 pickle bytes of an ``OrderedDict`` of tensors as ``torch.save`` writes it
    (``_rebuild_tensor_v2`` over persistent storage ids "0", "1", ...), and the storages."""
    out = [b"\x80\x02", _ordered_dict(), b"("]
    storages = []
    for key, (name, array) in enumerate(state.items()):
        array = np.array(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        pid = (b"(" + _str("storage") + _global("torch", _STORAGE[str(array.dtype)])
               + _str(str(key)) + _str("cpu") + _int(array.size) + b"t" + b"Q")
        out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), b"(", pid, _int(0),
                _tuple(array.shape), _tuple(_contiguous_strides(array.shape)), b"\x89",
                _ordered_dict(), b"tR"]
        storages.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    out += [b"u", b"."]
    return b"".join(out), storages


def write_torch_zip(path, state, archive="archive"):
    """Write ``state`` as ``torch.save(state_dict, path)`` lays it out (PyTorch >= 1.6).
    A ``state`` that is not a flat dict of arrays (a training checkpoint) goes through
    :func:`checkpoint_pickle`."""
    if all(isinstance(v, np.ndarray) for v in state.values()):
        data_pkl, storages = state_dict_pickle(state)
    else:
        data_pkl, storages = checkpoint_pickle(state)
        storages = [raw for _key, _numel, raw in storages]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", data_pkl)
        z.writestr(f"{archive}/byteorder", "little")
        for key, raw in enumerate(storages):
            z.writestr(f"{archive}/data/{key}", raw)
        z.writestr(f"{archive}/version", "3\n")


# ------------------------------------------------- training checkpoints, legacy layout

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _float(x):
    return b"G" + struct.pack(">d", x)


def _long(i):
    data = i.to_bytes((i.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


class _Writer:
    """Protocol-2 pickle of a training checkpoint as torch.save writes one: dicts,
    ``OrderedDict`` state dicts, lists, tuples, str / int / float / bool / None, and arrays
    as ``torch._utils.<rebuild>(storage, offset, size, stride, ...)`` over persistent
    storage ids. ``legacy``: the ids of PyTorch 0.3 / 0.4 (an address-like key, the
    device, the count and a None view), with ``_rebuild_tensor`` (v1) and no
    ``requires_grad`` / hooks arguments."""

    def __init__(self, legacy):
        self.legacy = legacy
        self.storages = []  # (key, numel, raw bytes)

    def __call__(self, obj):
        if isinstance(obj, np.ndarray):
            return self.tensor(obj)
        if isinstance(obj, dict):
            head = _ordered_dict() if isinstance(obj, OrderedDict) else b"}"
            return head + b"(" + b"".join(self(k) + self(v) for k, v in obj.items()) + b"u"
        if isinstance(obj, list):
            return b"](" + b"".join(self(v) for v in obj) + b"e"
        if isinstance(obj, tuple):
            return b"(" + b"".join(self(v) for v in obj) + b"t"
        if isinstance(obj, str):
            return _str(obj)
        if obj is None:
            return b"N"
        if isinstance(obj, bool):
            return b"\x88" if obj else b"\x89"
        if isinstance(obj, int):
            return _int(obj) if -2**31 <= obj < 2**31 else _long(obj)
        if isinstance(obj, float):
            return _float(obj)
        raise TypeError(type(obj))

    def tensor(self, array):
        array = np.array(array, order="C")
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        if self.legacy:
            key = str(94020243121552 + 4096 * len(self.storages))
            pid = (b"(" + _str("storage") + _global("torch", _STORAGE[str(array.dtype)]) + _str(key)
                   + _str("cuda:0") + _int(array.size) + b"N" + b"t" + b"Q")
            rebuild, extra = "_rebuild_tensor", b""
        else:
            key = str(len(self.storages))
            pid = (b"(" + _str("storage") + _global("torch", _STORAGE[str(array.dtype)]) + _str(key)
                   + _str("cpu") + _int(array.size) + b"t" + b"Q")
            rebuild, extra = "_rebuild_tensor_v2", b"\x89" + _ordered_dict()
        self.storages.append((key, array.size, raw))
        return (_global("torch._utils", rebuild) + b"(" + pid + _int(0) + _tuple(array.shape)
                + _tuple(_contiguous_strides(array.shape)) + extra + b"tR")


def checkpoint_pickle(obj, *, legacy=False):
    """``(pickle bytes, [(storage key, element count, raw bytes)])`` of ``obj`` (see
    :class:`_Writer`); state dicts should be ``OrderedDict``s as torch's are."""
    writer = _Writer(legacy)
    return b"\x80\x02" + writer(obj) + b".", writer.storages


def write_torch_legacy(path, obj):
    """Write ``obj`` in the legacy ``torch.save`` layout of PyTorch 0.3 / 0.4, as
    akamaster/pytorch_resnet_cifar10's ``resnet20-12fca82f.th`` is: the magic number,
    protocol 1001 and system-info pickles, the object pickle (``_rebuild_tensor`` v1), the
    sorted storage keys, then each storage as an int64 count and its bytes."""
    data_pkl, storages = checkpoint_pickle(obj, legacy=True)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    writer = _Writer(legacy=True)
    keys = sorted(key for key, _, _ in storages)
    by_key = {key: (numel, raw) for key, numel, raw in storages}
    with open(path, "wb") as f:
        f.write(b"\x80\x02" + _long(_LEGACY_MAGIC) + b".")
        f.write(b"\x80\x02" + writer(1001) + b".")
        f.write(b"\x80\x02" + writer(sys_info) + b".")
        f.write(data_pkl)
        f.write(b"\x80\x02" + writer(keys) + b".")
        for key in keys:
            numel, raw = by_key[key]
            f.write(struct.pack("<q", numel) + raw)


def crafted_pickle(command_module="os", command="system", argument="touch /tmp/x"):
    """A pickle that, loaded by ``pickle.load``, would call ``command_module.command(argument)``."""
    return b"\x80\x02" + _global(command_module, command) + b"(" + _str(argument) + b"tR."


def write_crafted_legacy(path, payload):
    """``payload`` as the object pickle of a legacy ``torch.save`` file (after the magic
    number, protocol and system-info pickles)."""
    with open(path, "wb") as f:
        f.write(b"\x80\x02" + _long(_LEGACY_MAGIC) + b"." + b"\x80\x02" + _int(1001) + b"."
                + b"\x80\x02}." + payload)


def write_crafted_zip(path, payload):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


# ------------------------------------------------------------------- keras-hub presets

_BN_ROLES = ("weight", "bias", "running_mean", "running_var")


def keras_tensor_for(layer, index, shape):
    """The value of variable ``index`` of keras-hub layer ``layer`` (Keras layout: HWIO
    kernels; BN gamma, beta, moving mean, moving variance), deterministic like
    :func:`tensor_for`."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 4:  # HWIO: He-normal over h * w * in
        rng = np.random.default_rng(zlib.crc32(f"{layer}/{index}".encode()))
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[:3])))
    return tensor_for(f"{layer}.{_BN_ROLES[int(index)]}", shape)


def write_keras_hub_weights(path, manifest):
    """A Keras 3 ``model.weights.h5`` laid out as keras-hub's ``save_to_preset`` writes it:
    ``layers/<generic name>/vars`` groups named by the layer, one dataset per variable."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "res_net_backbone"
        for generic, name, count, shapes in manifest:
            group = f.create_group(f"layers/{generic}/vars")
            group.attrs["name"] = name
            for index in range(count):
                group.create_dataset(str(index), data=keras_tensor_for(name, index, shapes[index]))
