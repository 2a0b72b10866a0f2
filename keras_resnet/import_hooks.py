"""Run code around the first import of a module, whoever imports it.

Two uses, each justified: :mod:`keras_resnet.saving` registers our Keras classes right
after ``keras`` is imported, so ``keras.saving.load_model`` reads our files after a plain
``import keras_resnet``, which must not import Keras itself (``--help`` and ``list`` stay
instant); and the command line filters the native log lines TensorFlow writes while
``tensorflow`` loads (:func:`keras_resnet.cli.main`), and only then. A hook fires once and
then removes itself from ``sys.meta_path``; nothing else is installed.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
from typing import Callable, ContextManager


class _Loader(importlib.abc.Loader):
    """Wraps the module's own loader: execute it inside ``around()``, then step aside."""

    def __init__(self, loader: importlib.abc.Loader, around: Callable[[], ContextManager]):
        self._loader, self._around = loader, around

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__spec__.loader = module.__loader__ = self._loader
        with self._around():
            self._loader.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the other finders, wraps its loader and removes itself."""

    def __init__(self, name: str, around: Callable[[], ContextManager]):
        self.name, self._around = name, around

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self._around)
        return spec


def around_first_import(name: str, around: Callable[[], ContextManager]) -> bool:
    """Run the first import of the top-level module ``name`` inside ``around()``.

    Returns False (and installs nothing) when ``name`` is already imported or already has
    a hook; the caller decides what to do then.
    """
    if name in sys.modules or any(
        isinstance(f, _Finder) and f.name == name for f in sys.meta_path
    ):
        return False
    sys.meta_path.insert(0, _Finder(name, around))
    return True
