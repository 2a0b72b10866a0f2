"""Read a checkpoint into ``{tensor name: numpy array}``, whatever its file format.

- ``.safetensors`` (timm / Hugging Face ``model.safetensors``) through
  ``safetensors.numpy``;
- ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` (``torch.save``, ``pytorch_model.bin``) through
  :mod:`keras_resnet.weights.torch_pickle`, which never imports torch nor runs code from the
  file. Training scripts often save ``{"model": state_dict, ...}`` or
  ``{"state_dict": ...}``: the state dict is taken from there, and a ``module.`` prefix
  (``DataParallel``) is dropped.
"""

from __future__ import annotations

import os

import numpy as np

SAFETENSORS = (".safetensors",)
PICKLES = (".pth", ".pt", ".bin", ".ckpt")
CHECKPOINT_SUFFIXES = SAFETENSORS + PICKLES
_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


def is_checkpoint(path: str) -> bool:
    """Whether ``path`` names a file in a format :func:`read_checkpoint` reads."""
    return os.fspath(path).lower().endswith(CHECKPOINT_SUFFIXES)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def _unwrap(obj, path):
    """The state dict inside what ``torch.save`` stored (itself or under a wrapper key)."""
    for _ in range(3):
        if isinstance(obj, dict):
            tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
            if _is_state_dict(obj):
                return obj
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None and tensors and all(isinstance(k, str) for k in tensors):
                return tensors  # e.g. a state dict with extra scalars
            obj = inner
    raise ValueError(
        f"checkpoint {path} holds no state dict (a dict of tensors, or one under "
        f"{list(_WRAPPERS)})")


def _strip_module_prefix(state):
    if all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.safetensors`` or ``torch.save`` checkpoint (no torch needed).

    Raises ``ValueError`` naming the file when it is in neither format, holds no state dict,
    or names anything a state dict does not need.
    """
    path = os.fspath(path)
    if path.lower().endswith(SAFETENSORS):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable safetensors file ({e})") from e
    elif path.lower().endswith(PICKLES):
        from keras_resnet.weights.torch_pickle import load_torch_file

        state = _unwrap(load_torch_file(path), path)
    else:
        raise ValueError(
            f"checkpoint must be a {'/'.join(CHECKPOINT_SUFFIXES)} file. Received: {path!r}")
    return _strip_module_prefix(dict(state))
