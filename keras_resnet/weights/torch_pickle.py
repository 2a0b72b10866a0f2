"""Read a PyTorch ``torch.save`` file without torch, without running anything from the
file, and with memory bounded by what the file declares.

``torch.save`` writes a pickle whose tensors point at raw storages: in the zip layout
(PyTorch >= 1.6) the storages are the archive's ``<name>/data/<key>`` records, in the legacy
layout (``_use_new_zipfile_serialization=False``, and every file of PyTorch 0.4 - 1.5) they
follow the pickle in the same stream, each behind an int64 element count.

A pickle can name any importable callable and call it while loading. This module's
unpickler resolves only the few names a checkpoint uses to its own stand-ins:
``collections.OrderedDict``; ``torch._utils._rebuild_tensor_v2``, ``_rebuild_tensor``
(PyTorch 0.3 / 0.4, the same without the ``requires_grad`` / hooks arguments) and
``_rebuild_parameter``, which build numpy arrays; the ``torch.*Storage`` types; and a few
plain-data types that training scripts put beside the weights (``argparse.Namespace``,
numpy scalars and arrays, ``torch.device``), which become inert placeholders whose
arguments are never used. Any other name raises ``ValueError`` before it is looked up, so
nothing the file names is imported or executed. A whole pickled ``nn.Module``
(``torch.save(model)``) names its class (``torchvision.models.resnet.ResNet``,
``__main__.Net``): the error says to save ``model.state_dict()`` instead.

Memory is bounded before anything is read: each storage record's size (stored and
uncompressed, in the zip layout) or element count (legacy layout) must equal the element
count the pickle declares for it; a compressed record is read only within
:data:`MAX_COMPRESSION_RATIO` of its compressed size; tensors may not read past their
storage, and all tensors together at most :data:`MAX_VIEW_AMPLIFICATION` times the bytes of
their storages. Loading a file then peaks at about twice its tensors (the storages and the
arrays cut from them).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import struct
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# How the legacy layout starts: the magic number pickled as a LONG1 of 10 bytes.
LEGACY_MAGIC_BYTES = b"\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
_MAX_DIMS = 8
# A compressed record (torch.save writes none; a file zipped again may have them) is read
# only if it inflates to at most this many times its compressed size, or 1 MiB.
MAX_COMPRESSION_RATIO = 16
_SMALL_RECORD = 1 << 20
# Tensors may view their storages more than once (tied weights, transposed views); all of
# them together may hold at most this many times the bytes of the storages.
MAX_VIEW_AMPLIFICATION = 4
_CHUNK = 1 << 24


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
    """A flat array of one dtype: the bytes a storage record holds (filled in when read)."""

    def __init__(self, dtype: str, numel: int):
        self.dtype = dtype
        self.numel = numel
        self.array = None

    @property
    def nbytes(self) -> int:
        return self.numel * _numpy_dtype(self.dtype).itemsize


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_ints(name, values):
    if len(values) > _MAX_DIMS or not all(_is_count(v) for v in values):
        raise ValueError(f"checkpoint tensor has an invalid {name}: {values!r:.200}")


class _TensorRef:
    """A tensor as ``torch._utils._rebuild_tensor(_v2)`` describes it; read once every
    storage is (the legacy layout stores them after the pickle)."""

    def __init__(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise ValueError("checkpoint tensor does not point at a storage")
        if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
            raise ValueError(f"checkpoint tensor has an invalid layout: size={size!r:.80}")
        size, stride = tuple(size), tuple(stride)
        _check_ints("size", size)
        _check_ints("stride", stride)
        if len(size) != len(stride) or not _is_count(storage_offset):
            raise ValueError(f"checkpoint tensor has an invalid layout: size={size}, stride={stride}")
        self.storage, self.offset, self.size, self.stride = storage, storage_offset, size, stride
        numel = 1
        for n in size:
            numel *= n
        self.numel = numel
        if numel:  # checked against the declared storage before any byte is read
            last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel or numel > storage.numel:
                raise ValueError(
                    f"checkpoint tensor of size {size} reads past its storage "
                    f"({storage.numel} items)")

    def read(self) -> np.ndarray:
        flat = self.storage.array
        if not self.numel:
            return _to_float32(np.zeros(self.size, flat.dtype), self.storage.dtype)
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * itemsize for s in self.stride), writeable=False)
        return _to_float32(np.array(view), self.storage.dtype)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor_v2`` and ``_rebuild_tensor`` (v1: PyTorch 0.3 / 0.4,
    without ``requires_grad`` and ``backward_hooks``)."""
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """``torch._utils._rebuild_parameter``: a Parameter is its data."""
    if not isinstance(data, _TensorRef):
        raise ValueError("checkpoint parameter does not hold a tensor")
    return data


class Opaque:
    """An entry of a plain-data type that a checkpoint may hold beside its weights (an
    ``argparse.Namespace`` of the run's arguments, a numpy scalar, a ``torch.device``),
    kept only by name: its arguments and state are dropped, nothing of it is called."""

    type_name = "object"

    def __new__(cls, *_args, **_kwargs):
        return super().__new__(cls)

    def __init__(self, *_args, **_kwargs):
        pass

    def __setstate__(self, _state):
        pass

    def __repr__(self):
        return f"<{self.type_name}>"


_OPAQUE_NAMES = {
    ("argparse", "Namespace"), ("torch", "device"), ("torch", "Size"), ("_codecs", "encode"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}
_CALLABLES = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
# Where the classes of a pickled model live (torch.save(model) names them).
_MODULE_PACKAGES = ("torch.nn", "torchvision", "timm", "__main__", "pytorchcv")


def _looks_like_a_model_class(module: str, name: str) -> bool:
    return (any(module == p or module.startswith(p + ".") for p in _MODULE_PACKAGES)
            or bool(re.fullmatch(r"_?[A-Z]\w*", name)))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of :data:`_CALLABLES`, the storage types and the plain-data
    placeholders; refuses every other name before importing anything."""

    def __init__(self, file, load_storage, source):
        super().__init__(file)
        self._load_storage = load_storage
        self._source = source

    def find_class(self, module, name):
        if (module, name) in _CALLABLES:
            return _CALLABLES[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _OPAQUE_NAMES:
            return type(name, (Opaque,), {"type_name": f"{module}.{name}"})
        if _looks_like_a_model_class(module, name):
            raise ValueError(
                f"{self._source} is a pickled model object ({module}.{name}), not a state dict. "
                "Loading it would run that class's code, so it is refused: save the weights "
                "with torch.save(model.state_dict(), path) and load that file")
        raise ValueError(
            f"{self._source} names {module}.{name}, which a state dict never needs; refusing "
            "to load it (only tensors, storages, dicts and plain data are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and _is_count(pid[4])):
            raise ValueError(f"{self._source} has an unknown persistent id {pid!r:.80}")
        return self._load_storage(pid)


def _unpickle(stream, load_storage, source):
    try:
        return _RestrictedUnpickler(stream, load_storage, source).load()
    except ValueError:
        raise
    except Exception as e:  # malformed pickle: one error type for the caller
        raise ValueError(
            f"{source} is not a readable PyTorch pickle ({type(e).__name__}: {e})") from e


def _no_storage(pid):
    raise ValueError(f"checkpoint header names a storage {pid!r:.80}")


def _read_exactly(f, size: int, what: str) -> bytearray:
    """``size`` bytes from ``f`` into one buffer, in chunks (never more than ``size``)."""
    buf = bytearray(size)
    view = memoryview(buf)
    pos = 0
    while pos < size:
        chunk = f.read(min(_CHUNK, size - pos))
        if not chunk:
            raise ValueError(f"{what} is truncated ({pos} of {size} bytes)")
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    return buf


def check_zip_record(info: zipfile.ZipInfo, expected: int, source: str) -> None:
    """Refuse a zip record whose size disagrees with the ``expected`` bytes, or whose
    compression would inflate it beyond :data:`MAX_COMPRESSION_RATIO` (a zip bomb)."""
    if expected is not None and info.file_size != expected:
        raise ValueError(
            f"{source}: record {info.filename!r} holds {info.file_size} bytes but the "
            f"checkpoint declares {expected}; refusing to read it")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise ValueError(
                f"{source}: stored record {info.filename!r} declares {info.file_size} bytes "
                f"but occupies {info.compress_size}; refusing to read it")
    elif info.file_size > max(_SMALL_RECORD, MAX_COMPRESSION_RATIO * info.compress_size):
        raise ValueError(
            f"{source}: record {info.filename!r} inflates {info.compress_size} bytes to "
            f"{info.file_size} (more than {MAX_COMPRESSION_RATIO}x: a zip bomb?); refusing to "
            "read it")


def read_zip_record(z: zipfile.ZipFile, name: str, expected: int | None, source: str) -> bytearray:
    """The bytes of record ``name``, checked by :func:`check_zip_record` before reading."""
    info = z.getinfo(name)
    check_zip_record(info, expected, source)
    with z.open(info) as f:
        return _read_exactly(f, info.file_size, f"{source}: record {name!r}")


def _load_zip(z: zipfile.ZipFile, source: str) -> object:
    names = set(z.namelist())
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise ValueError(f"{source} is a zip file but not a torch.save archive (no data.pkl)")
    prefix = pkl[0][: -len("data.pkl")]
    big = False
    if prefix + "byteorder" in names:
        big = bytes(read_zip_record(z, prefix + "byteorder", None, source)).strip() == b"big"
    storages = {}

    def load_storage(pid):
        _, kind, key, _location, numel = pid[:5]
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise ValueError(f"{source}: a tensor points at a missing record {record!r}")
            storage = _Storage(kind.dtype, numel)
            raw = read_zip_record(z, record, storage.nbytes, source)
            dtype = _numpy_dtype(kind.dtype)
            if big:
                storage.array = np.frombuffer(raw, dtype.newbyteorder(">")).astype(dtype.newbyteorder("<"))
            else:
                storage.array = np.frombuffer(raw, dtype.newbyteorder("<"))
            storages[key] = storage
        elif storages[key].numel != numel or storages[key].dtype != kind.dtype:
            raise ValueError(f"{source}: storage {key!r} is declared twice with different sizes")
        return storages[key]

    data_pkl = read_zip_record(z, pkl[0], None, source)
    return _unpickle(io.BytesIO(data_pkl), load_storage, source)


def _load_legacy(data: memoryview, source: str) -> object:
    """The pre-1.6 layout: magic, protocol and system-info pickles, the object pickle, the
    list of storage keys, then each storage as an int64 element count and its raw bytes.
    Each count must equal the one the pickle declared for that storage."""
    stream = io.BytesIO(data)
    try:
        if _RestrictedUnpickler(stream, _no_storage, source).load() != LEGACY_MAGIC:
            raise ValueError(f"{source} is neither a zip nor a legacy torch.save file")
        _RestrictedUnpickler(stream, _no_storage, source).load()  # protocol version
        _RestrictedUnpickler(stream, _no_storage, source).load()  # system info
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{source} is not a PyTorch checkpoint ({type(e).__name__})") from e
    pending = {}
    views = []

    def load_storage(pid):
        _, kind, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if key not in pending:
            pending[key] = _Storage(kind.dtype, numel)
        elif pending[key].numel != numel or pending[key].dtype != kind.dtype:
            raise ValueError(f"{source}: storage {key!r} is declared twice with different sizes")
        if view is None:
            return pending[key]
        # PyTorch < 0.4: a storage that is a slice of another (view_key, offset, size)
        if not (isinstance(view, tuple) and len(view) == 3 and _is_count(view[1])
                and _is_count(view[2]) and view[1] + view[2] <= numel):
            raise ValueError(f"{source}: storage view {view!r:.80} lies outside its storage")
        sliced = _Storage(kind.dtype, view[2])
        views.append((sliced, pending[key], view[1]))
        return sliced

    obj = _unpickle(stream, load_storage, source)
    keys = _unpickle(stream, _no_storage, source)
    if not isinstance(keys, list):
        raise ValueError(f"{source}: the legacy storage list is not a list")
    pos = stream.tell()
    for key in keys:
        if key not in pending:
            raise ValueError(f"{source} lists an unknown storage {key!r:.80}")
        storage = pending[key]
        if pos + 8 > len(data):
            raise ValueError(f"{source}: storage {key!r} is truncated")
        (count,) = struct.unpack("<q", data[pos:pos + 8])
        if count != storage.numel:
            raise ValueError(
                f"{source}: storage {key!r} holds {count} items but the checkpoint declares "
                f"{storage.numel}; refusing to read it")
        pos += 8
        end = pos + storage.nbytes
        if end > len(data):
            raise ValueError(f"{source}: storage {key!r} is truncated")
        storage.array = np.frombuffer(data[pos:end], _numpy_dtype(storage.dtype).newbyteorder("<"))
        pos = end
    for sliced, root, offset in views:
        if root.array is None:
            raise ValueError(f"{source}: a storage view points at a storage that is not stored")
        sliced.array = root.array[offset:offset + sliced.numel]
    return obj


def _tensor_refs(obj, out):
    if isinstance(obj, _TensorRef):
        out.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _tensor_refs(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensor_refs(v, out)
    return out


def _materialize(obj, source):
    """Replace every :class:`_TensorRef` in dicts, lists and tuples by its numpy array,
    after checking that their storages were read and that together they stay within
    :data:`MAX_VIEW_AMPLIFICATION` times the storages' bytes."""
    refs = _tensor_refs(obj, [])
    storages = {id(r.storage): r.storage for r in refs}
    if any(s.array is None for s in storages.values()):
        raise ValueError(f"{source}: a tensor points at a storage the file does not hold")
    stored = sum(s.nbytes for s in storages.values())
    wanted = sum(r.numel * _numpy_dtype(r.storage.dtype).itemsize for r in refs)
    if wanted > MAX_VIEW_AMPLIFICATION * stored + _SMALL_RECORD:
        raise ValueError(
            f"{source}: its tensors view {wanted} bytes of {stored} stored (more than "
            f"{MAX_VIEW_AMPLIFICATION}x); refusing to read them")
    return _replace(obj)


def _replace(obj):
    if isinstance(obj, _TensorRef):
        return obj.read()
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _replace(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_replace(v) for v in obj)
    return obj


def _to_float32(array, dtype):
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def is_torch_zip(z: zipfile.ZipFile) -> bool:
    """Whether an open zip archive is a ``torch.save`` file (one ``*/data.pkl`` record)."""
    return sum(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist()) == 1


def is_legacy(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 32 bytes) is a legacy
    ``torch.save`` file: a pickle whose first object is the magic number."""
    return head[:1] == b"\x80" and LEGACY_MAGIC_BYTES in head[:32]


def load_torch_file(file, *, source: str | None = None) -> object:
    """The object ``torch.save`` wrote to ``file`` (a path or a seekable binary file; zip or
    legacy layout), tensors as numpy arrays, read without torch. ``ValueError`` naming
    ``source`` (default: the path) for anything but tensors, storages, dicts and plain data,
    and for sizes that disagree with what the file declares."""
    if source is None:
        source = os.fspath(file) if isinstance(file, (str, os.PathLike)) else "checkpoint"
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as z:
                return _materialize(_load_zip(z, source), source)
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as f:
                data = f.read()
        else:
            file.seek(0)
            data = file.read()
        if not is_legacy(bytes(data[:32])):
            raise ValueError(f"{source} is neither a zip nor a legacy torch.save file")
        return _materialize(_load_legacy(memoryview(data), source), source)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(
            f"{source} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
