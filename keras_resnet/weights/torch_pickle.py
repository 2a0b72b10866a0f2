"""Read a PyTorch state dict (``torch.save`` / ``pytorch_model.bin``) without torch and
without running anything from the file.

``torch.save`` writes a pickle whose tensors point at raw storages: in the zip layout
(PyTorch >= 1.6) the storages are the archive's ``<name>/data/<key>`` records, in the legacy
layout they follow the pickle in the same stream. A pickle can name any importable callable
and call it while loading; this module's unpickler resolves only the few names a state dict
uses (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
``_rebuild_parameter``, the ``torch.*Storage`` types) to its own stand-ins that build numpy
arrays. Any other name raises ``ValueError`` before it is looked up, so nothing the file
names is imported or executed.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MAX_DIMS = 8


class _StorageType:
    """Stands in for a ``torch.*Storage`` class named by the pickle: only its dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _numpy_dtype(name: str):
    if name == "bfloat16":
        return np.dtype("uint16")  # widened to float32 in _to_float32
    return np.dtype(name)


class _Storage:
    """A flat array of one dtype: the bytes a storage record holds."""

    def __init__(self, data: bytes, dtype: str):
        self.dtype = dtype
        self.array = np.frombuffer(data, dtype=_numpy_dtype(dtype).newbyteorder("<"))


def _check_ints(name, values):
    if len(values) > _MAX_DIMS or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"checkpoint tensor has an invalid {name}: {values!r}")


class _TensorRef:
    """A tensor as ``torch._utils._rebuild_tensor_v2`` describes it; read once every storage
    is (the legacy layout stores them after the pickle)."""

    def __init__(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise ValueError("checkpoint tensor does not point at a storage")
        size, stride = tuple(size), tuple(stride)
        _check_ints("size", size)
        _check_ints("stride", stride)
        if len(size) != len(stride) or not isinstance(storage_offset, int) or storage_offset < 0:
            raise ValueError(f"checkpoint tensor has an invalid layout: size={size}, stride={stride}")
        self.storage, self.offset, self.size, self.stride = storage, storage_offset, size, stride

    def read(self) -> np.ndarray:
        flat = self.storage.array
        if not all(self.size):
            return np.zeros(self.size, _to_float32(flat[:0], self.storage.dtype).dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= flat.size:
            raise ValueError(
                f"checkpoint tensor of size {self.size} reads past its storage ({flat.size} items)")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * itemsize for s in self.stride), writeable=False)
        return _to_float32(np.array(view), self.storage.dtype)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor_v2``."""
    return _TensorRef(storage, storage_offset, size, stride)


def _materialize(obj):
    """Replace every :class:`_TensorRef` in dicts, lists and tuples by its numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.read()
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _to_float32(array, dtype):
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data, *_ignored):
    """``torch._utils._rebuild_parameter``: a Parameter is its data."""
    if not isinstance(data, _TensorRef):
        raise ValueError("checkpoint parameter does not hold a tensor")
    return data


_CALLABLES = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of :data:`_CALLABLES` and the storage types."""

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _CALLABLES:
            return _CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ValueError(
            f"checkpoint names {module}.{name}, which a state dict never needs; refusing to "
            "load it (only tensors, storages and dicts are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ValueError(f"checkpoint has an unknown persistent id {pid!r:.80}")
        return self._load_storage(pid)


def _unpickle(data: bytes, load_storage):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), load_storage).load()
    except ValueError:
        raise
    except Exception as e:  # malformed pickle: one error type for the caller
        raise ValueError(f"checkpoint is not a readable PyTorch pickle ({type(e).__name__}: {e})") from e


def _load_zip(path: str) -> object:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path} is a zip file but not a torch.save archive (no data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        big = prefix + "byteorder" in names and z.read(prefix + "byteorder").strip() == b"big"
        storages = {}

        def load_storage(pid):
            _, kind, key, _location, numel = pid[:5]
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise ValueError(f"checkpoint tensor points at a missing record {record!r}")
                raw = z.read(record)
                dtype = np.dtype(_numpy_dtype(kind.dtype)).newbyteorder(">" if big else "<")
                storages[key] = _Storage(np.frombuffer(raw, dtype).astype(dtype.newbyteorder("<")).tobytes(),
                                         kind.dtype)
            return storages[key]

        return _unpickle(z.read(pkl[0]), load_storage)


def _load_legacy(path: str) -> object:
    """The pre-1.6 layout: magic, protocol and system-info pickles, the object pickle, the
    list of storage keys, then each storage as an int64 count and its raw bytes."""
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)

    def plain(stream):
        return _RestrictedUnpickler(stream, lambda pid: None).load()

    try:
        if plain(stream) != _LEGACY_MAGIC:
            raise ValueError(f"{path} is neither a zip nor a legacy torch.save file")
        plain(stream)  # protocol version
        plain(stream)  # system info
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{path} is not a PyTorch checkpoint ({type(e).__name__})") from e
    pending = {}

    def load_storage(pid):
        _, kind, key = pid[:3]
        pending.setdefault(key, _Storage(b"", kind.dtype))
        return pending[key]

    obj = _RestrictedUnpickler(stream, load_storage).load()
    keys = _RestrictedUnpickler(stream, lambda pid: None).load()
    for key in keys:
        if key not in pending:
            raise ValueError(f"checkpoint lists an unknown storage {key!r}")
        (count,) = struct.unpack("<q", stream.read(8))
        storage = pending[key]
        size = count * _numpy_dtype(storage.dtype).itemsize
        raw = stream.read(size)
        if len(raw) != size:
            raise ValueError(f"checkpoint storage {key!r} is truncated")
        storage.array = np.frombuffer(raw, _numpy_dtype(storage.dtype).newbyteorder("<"))
    return obj


def load_torch_file(path: str) -> object:
    """The object ``torch.save`` wrote to ``path`` (zip or legacy layout), tensors as numpy
    arrays, read without torch. ``ValueError`` for anything but tensors, storages and dicts."""
    if zipfile.is_zipfile(path):
        return _materialize(_load_zip(path))
    try:
        return _materialize(_load_legacy(path))
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
