"""The failures a command explains in one line, and the exit statuses they map to.

The library raises these (and ``ValueError`` for bad input, ``OSError`` for the
environment); :func:`keras_resnet.cli.main` turns each into one line and an exit status.
They live here, not in the command module, so that the library never imports a command.
Standard library only.
"""

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
