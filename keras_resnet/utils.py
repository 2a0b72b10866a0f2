"""One home for the small helpers every module needs.

- argument checks that raise ``ValueError`` naming the argument and the value received
  (keras-hub's ``... Received: name=value`` form);
- atomic writes: a temporary file beside the target, fsync, rename, so a killed process
  leaves either the old file or the new one, never half of one;
- walking a model's layers, nested models included;
- switching the global Keras dtype policy for a block of code;
- the one vocabulary for precision.

Nothing here imports TensorFlow; Keras is imported only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
from typing import Any, Callable, Iterator

# ------------------------------------------------------------------ argument checks


def fail(argument: str, value: Any, expected: str) -> None:
    """Raise ``ValueError("argument must be EXPECTED. Received: argument=VALUE")``."""
    raise ValueError(f"{argument} must be {expected}. Received: {argument}={value!r}")


def is_int(value: Any) -> bool:
    """An integer (numpy integers included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (numpy scalars included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(argument: str, value: Any) -> int:
    """``value`` as an ``int`` if it is an integer >= 1, else ``ValueError`` naming it."""
    if not is_int(value) or value < 1:
        fail(argument, value, "a positive integer")
    return int(value)


def check_non_negative_int(argument: str, value: Any) -> int:
    """``value`` as an ``int`` if it is an integer >= 0, else ``ValueError`` naming it."""
    if not is_int(value) or value < 0:
        fail(argument, value, "a non-negative integer")
    return int(value)


def check_choice(argument: str, value: Any, choices) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if value not in tuple(choices):
        fail(argument, value, f"one of {tuple(choices)}")
    return value


# -------------------------------------------------------------------- atomic writes


def _staging_path(path: str, suffix: str = "") -> str:
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}{suffix}")


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``.

    ``suffix`` keeps the extension a writer insists on (``model.save`` wants ``.keras``).
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    tmp = _staging_path(path, suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically, with fsync."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON (one trailing newline), written atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file (UTF-8) as Python objects."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------ images

# Decoded pixels (width x height) above which an image is refused, read from its header
# before anything decodes it: a folder image is skipped, a served one answered with an
# error. 50 megapixels holds real photos (a 48 MP phone camera; an 8,660 x 5,773 photo)
# and keeps one decoded RGB image under 150 MB.
MAX_IMAGE_PIXELS = 50_000_000


# ------------------------------------------------------------------- lazy packages


def lazy_attributes(package: str, names: dict) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``package`` that imports the module of
    ``names[name]`` on first use of ``name`` and keeps the value in the package, so that
    its light parts (a command's parser, the registry) load without its heavy ones (Keras,
    TensorFlow). ``names[name]`` is a submodule ("loop": ``package.loop``) or a full module
    name ("keras_resnet.inference"). The package's one lazy-import mechanism."""
    import importlib
    import sys

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = names[name] if "." in names[name] else f"{package}.{names[name]}"
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    return __getattr__


# ------------------------------------------------------------------------- models


def all_layers(model, *, include_containers: bool = False) -> Iterator[Any]:
    """Every layer of ``model``, descending into nested models and layers that hold layers.

    With ``include_containers`` the nested model itself is yielded before its layers;
    otherwise only leaves are.
    """
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if inner:
            if include_containers:
                yield layer
            yield from all_layers(layer, include_containers=include_containers)
        else:
            yield layer


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Set Keras' global dtype policy (a name such as "mixed_bfloat16" or a precision of
    :data:`PRECISIONS`) for the block, and restore the previous one afterwards."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_policy_name(policy) if policy in _ALIASES else policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_dtype_policy(policy: str, build: Callable[[], Any]) -> Any:
    """``build()`` under ``dtype_policy(policy)``."""
    with dtype_policy(policy):
        return build()


# --------------------------------------------------------------------- precision

# The one vocabulary. Training and benchmarking name Keras policies; serving names the
# compute dtype of an exported graph. Both accept each other's spellings.
PRECISIONS = ("auto", "fp32", "mixed_float16", "mixed_bfloat16")
_ALIASES = {
    "fp32": "fp32", "float32": "fp32",
    "mixed_bfloat16": "mixed_bfloat16", "bf16": "mixed_bfloat16", "bfloat16": "mixed_bfloat16",
    "mixed_float16": "mixed_float16", "fp16": "mixed_float16", "float16": "mixed_float16",
}


def normalize_precision(precision: str, *, argument: str = "precision",
                        allowed=PRECISIONS) -> str:
    """Map any accepted spelling ("bf16", "mixed_bfloat16", "float32", ...) to its name in
    :data:`PRECISIONS`; ``ValueError`` naming ``argument`` if it is none of ``allowed``."""
    canonical = "auto" if precision == "auto" else _ALIASES.get(precision)
    if canonical is None or canonical not in allowed:
        fail(argument, precision, f"one of {tuple(allowed)}")
    return canonical


def keras_policy_name(precision: str) -> str:
    """The Keras dtype policy for a resolved precision ("fp32" -> "float32")."""
    canonical = _ALIASES.get(precision, precision)
    return {"fp32": "float32"}.get(canonical, canonical)


def compute_dtype(precision: str) -> str:
    """The dtype convolutions run in under ``precision`` ("bfloat16", "float16", "float32")."""
    return {"fp32": "float32", "mixed_bfloat16": "bfloat16",
            "mixed_float16": "float16"}[_ALIASES.get(precision, precision)]


def short_precision(precision: str) -> str:
    """The serving spelling: "fp32", "bf16" or "fp16"."""
    return {"fp32": "fp32", "mixed_bfloat16": "bf16",
            "mixed_float16": "fp16"}[_ALIASES.get(precision, precision)]
