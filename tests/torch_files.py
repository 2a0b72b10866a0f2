"""Deterministic reference weights and ``torch.save``'s file layout, in numpy only.

Both ``tools/make_weight_fixtures.py`` (with torch, writing the reference logits) and the
tests (without torch) regenerate the same tensors from a name and a shape, so no weights
are committed; the tests then write them in the real file formats.
"""

import io
import struct
import zipfile
import zlib
from collections import OrderedDict

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


def state_dict_pickle(state, shapes=None):
    """Protocol-2 pickle bytes of an ``OrderedDict`` of tensors as ``torch.save`` writes it
    (``_rebuild_tensor_v2`` over persistent storage ids "0", "1", ...), and the storages.
    ``shapes``: a shape to declare instead of the array's, by name (for files that lie)."""
    out = [b"\x80\x02", _ordered_dict(), b"("]
    storages = []
    for key, (name, array) in enumerate(state.items()):
        array = np.array(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        shape = (shapes or {}).get(name, array.shape)
        pid = (b"(" + _str("storage") + _global("torch", _STORAGE[str(array.dtype)])
               + _str(str(key)) + _str("cpu") + _int(int(np.prod(shape))) + b"t" + b"Q")
        out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), b"(", pid, _int(0),
                _tuple(shape), _tuple(_contiguous_strides(shape)), b"\x89",
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


# ------------------------------------------------------------------------- zip bombs

def _deflated_zeros(mib):
    """A raw deflate stream of ``mib`` MiB of zeros, ~1 KB per MiB: one independently
    decodable block (a full flush resets the window) repeated, then a final empty block."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = block.compress(bytes(1 << 20)) + block.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return [chunk] * mib + [end]


# zlib.crc32(bytes(n << 20)) for the bomb sizes the tests use (computing it takes seconds)
ZEROS_CRC32 = {3 << 10: 0x480BBE37}


def write_zip(path, members):
    """A zip file (no zip64) of ``members``: ``(name, data)`` stored, or ``(name, chunks,
    crc, size)`` of raw deflate ``chunks`` inflating to ``size`` bytes with that CRC."""
    central, offset = [], 0
    with open(path, "wb") as f:
        for member in members:
            if len(member) == 2:
                name, data = member
                chunks, crc, size, method = [data], zlib.crc32(data), len(data), 0
            else:
                name, chunks, crc, size = member
                method = 8
            stored = sum(len(c) for c in chunks)
            fields = struct.pack("<HHHHHIIIH", 20, 0, method, 0, 0x21, crc, stored, size, len(name))
            f.write(b"PK\x03\x04" + fields + b"\x00\x00" + name.encode())
            for c in chunks:
                f.write(c)
            central.append(b"PK\x01\x02" + struct.pack("<H", 20) + fields
                           + struct.pack("<HHHHII", 0, 0, 0, 0, 0, offset) + name.encode())
            offset = f.tell()
        directory = b"".join(central)
        f.write(directory)
        f.write(b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(central), len(central),
                                            len(directory), offset, 0))


def write_torch_bomb(path, state, *, bomb_mib=3 << 10, declared=False):
    """``state`` in torch.save's zip layout, except that storage record 0 is ``bomb_mib``
    MiB of deflated zeros (a ~1 KB-per-MiB zip bomb). ``declared``: the pickle declares
    that size for storage 0 too (else it declares the genuine tensor's)."""
    first = next(iter(state))
    shapes = {first: (bomb_mib << 18,)} if declared else None
    data_pkl, storages = state_dict_pickle(state, shapes=shapes)
    members = [("archive/data.pkl", data_pkl), ("archive/byteorder", b"little"),
               ("archive/data/0", _deflated_zeros(bomb_mib), ZEROS_CRC32[bomb_mib], bomb_mib << 20)]
    members += [(f"archive/data/{key}", raw) for key, raw in enumerate(storages) if key]
    members.append(("archive/version", b"3\n"))
    write_zip(path, members)


_LEGACY_HEAD = b"\x80\x02" + _long(_LEGACY_MAGIC) + b"."
# zlib.crc32(bytes(3 << 30), zlib.crc32(_LEGACY_HEAD))
_LEGACY_HEAD_ZEROS_CRC32 = 0x23164F42


def write_wrapped_bomb(path):
    """A ``.pth.zip`` whose one member starts like a legacy torch.save file (the magic
    number) and then inflates to 3 GiB of zeros, from ~3 MB (valid stream, right CRC)."""
    start = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunks = [start.compress(_LEGACY_HEAD) + start.flush(zlib.Z_FULL_FLUSH)] + _deflated_zeros(3 << 10)
    write_zip(path, [("bomb.pth", chunks, _LEGACY_HEAD_ZEROS_CRC32, len(_LEGACY_HEAD) + (3 << 30))])


# Read a checkpoint in a fresh interpreter (``python -c MEASURE_READ PATH``) and print, as
# JSON, the growth of the peak RSS in bytes (``VmHWM`` minus ``VmRSS`` before the read: an
# upper bound; getrusage's ru_maxrss would also hold the peak of the process that forked
# it, Linux keeps it across exec), the seconds, the error raised if any, and the tensor bytes.
MEASURE_READ = """
import json, sys, time
from keras_resnet.weights import checkpoint

def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

before = status_kib("VmRSS")
start = time.monotonic()
try:
    state = checkpoint.read_checkpoint(sys.argv[1])
    error, nbytes = None, sum(v.nbytes for v in state.values())
except Exception as e:
    error, nbytes = f"{type(e).__name__}: {e}", 0
print(json.dumps({"growth": (status_kib("VmHWM") - before) << 10,
                  "seconds": time.monotonic() - start, "error": error, "bytes": nbytes}))
"""

_TF_ROLES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
             "moving_variance": "running_var", "bias": "bias"}


def tf2cv_tensor_for(weight_name, shape):
    """The value of tf2cv weight ``weight_name`` (HWIO kernels, Dense in x out, BN gamma /
    beta / moving statistics), deterministic like :func:`tensor_for` and with its roles."""
    shape = tuple(int(d) for d in shape)
    leaf = weight_name.split(":", 1)[0].rsplit("/", 1)[-1]
    if leaf == "kernel" and len(shape) == 4:  # He-normal over h * w * in, as OIHW would be
        return tensor_for(f"{weight_name}.weight", (shape[3], shape[2], shape[0], shape[1])).transpose(2, 3, 1, 0)
    if leaf == "kernel":
        return tensor_for(f"{weight_name}.weight", shape[::-1]).T
    return tensor_for(f"{weight_name}.{_TF_ROLES[leaf]}", shape)


def write_tf2cv_h5(path, manifest):
    """A tf2cv ``.tf2.h5`` as tf.keras 2's ``save_weights`` lays it out: root attributes
    ``layer_names``; per top-level layer a group listing ``weight_names``, each array stored at
    its weight name's path. ``manifest``: ``[[layer, [[weight name, shape], ...]], ...]``."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.21.0"
        f.attrs["layer_names"] = np.array([layer.encode() for layer, _ in manifest])
        for layer, weights in manifest:
            group = f.create_group(layer)
            group.attrs["weight_names"] = np.array([name.encode() for name, _ in weights])
            for name, shape in weights:
                group.create_dataset(name, data=tf2cv_tensor_for(name, shape))


# ------------------------------------------------------------ reading the legacy layout

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32}


def read_torch_legacy(path):
    """The object of a legacy ``torch.save`` file (see :func:`write_torch_legacy`), its
    tensors as numpy arrays: an independent reader, numpy and ``pickle`` only, for tests that
    compare what the package loaded with the file's own tensors. Only the globals torch
    writes for tensors and ordered dicts are accepted."""
    import collections
    import pickle

    storages = {}  # key -> dtype, as the object pickle names them

    def rebuild(storage, offset, size, stride, *_):
        return ("tensor", storage, int(offset), tuple(size), tuple(stride))

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in _DTYPES:
                return name
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

        def persistent_load(self, pid):
            _, kind, key = pid[:3]
            storages[key] = _DTYPES[kind]
            return key

    with open(path, "rb") as f:
        magic, protocol, _ = (pickle.load(f) for _ in range(3))
        assert magic == _LEGACY_MAGIC and protocol == 1001, (magic, protocol)
        obj = Unpickler(f).load()
        raw = {}
        for key in pickle.load(f):
            (count,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(storages[key]).newbyteorder("<")
            raw[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)

    def build(value):
        if isinstance(value, tuple) and value[:1] == ("tensor",):
            _, key, offset, size, stride = value
            flat = raw[key][offset:]
            strides = tuple(s * flat.itemsize for s in stride)
            return np.lib.stride_tricks.as_strided(flat, size, strides).astype(flat.dtype.newbyteorder("="))
        if isinstance(value, dict):
            return type(value)((k, build(v)) for k, v in value.items())
        return value

    return build(obj)
