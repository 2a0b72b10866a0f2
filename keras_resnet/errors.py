"""The failures a command explains in one line, and the exit statuses they map to.

The library raises these (and ``ValueError`` for bad input, ``OSError`` for the
environment); :func:`keras_resnet.cli.main` turns each into one line and an exit status.
They live here, not in the command module, so that the library never imports a command.
Standard library only.
"""

from __future__ import annotations

# Exit statuses: 0 done, 1 the environment failed (offline, disk full, a lost worker),
# 2 the user asked for something invalid, 130/143 stopped by SIGINT/SIGTERM.
EXIT_ENVIRONMENT, EXIT_USAGE = 1, 2


class CommandError(Exception):
    """A failure the command explains in one line; ``exit_code`` says which kind.

    Raise it (or a ``ValueError`` for bad input, an ``OSError`` for the environment) from a
    subcommand; :func:`keras_resnet.cli.main` prints ``keras-resnet COMMAND: error: MESSAGE``
    and exits.
    """

    def __init__(self, message, exit_code=EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


class Stopped(Exception):
    """The run was stopped (SIGINT/SIGTERM) after saving its state: print ``message`` as is
    (where it stopped, the command that resumes) and exit with ``exit_code``."""

    def __init__(self, message, exit_code=130):
        super().__init__(message)
        self.exit_code = exit_code


class Unavailable(CommandError, RuntimeError):
    """Something the work needs is not there and the user cannot fix it with a flag alone: a
    dataset neither prepared nor downloadable (offline), a lost resource. Exit status 1.
    A ``RuntimeError`` too, for code that caught what was raised before."""

    def __init__(self, message):
        super().__init__(message, exit_code=EXIT_ENVIRONMENT)


class MissingDependency(CommandError, ImportError):
    """An optional package that the asked-for work needs is not installed. Exit status 1.

    The one policy for optional packages: what the work cannot do without (ONNX export
    without tf2onnx) raises this, naming the package and how to install it; what only adds
    to the work (the warm-up file, a check of the written file, a comparison) is skipped with
    a one-line warning that names the package.
    """

    def __init__(self, package: str, needed_for: str, install: str | None = None):
        install = install or f"pip install {package}"
        super().__init__(f"{needed_for} needs {package}, which is not installed: {install}",
                         exit_code=EXIT_ENVIRONMENT)
        self.name = package


def require(module: str, needed_for: str, *, package: str | None = None,
            install: str | None = None):
    """``import module``, or :class:`MissingDependency` naming ``package`` (default: the
    module's top-level name) and what needed it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name is None or e.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: show that
        raise MissingDependency(package or top, needed_for, install) from e
