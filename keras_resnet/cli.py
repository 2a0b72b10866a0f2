"""The `keras-resnet` command: a thin dispatcher, the one error policy, `list` and `summary`.

``COMMANDS`` maps each subcommand to a light module, one that imports only argparse and
the standard library at import time, whose ``cli_main(command, argv) -> int`` builds the
parser, checks the arguments and only then imports the library that does the work
(Keras, TensorFlow). So ``keras-resnet COMMAND --help`` answers without TensorFlow;
``tests/test_cli.py`` checks it for every name in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
import warnings

from keras_resnet import import_hooks
from keras_resnet.errors import EXIT_ENVIRONMENT, EXIT_USAGE, CommandError, Stopped  # noqa: F401

# subcommand -> (light module with cli_main, one-line help), from rows of three
COMMANDS = {name: (module, help_) for name, module, help_ in (
    ("list", "keras_resnet.cli", "list every named model: family, depth, parameters"),
    ("summary", "keras_resnet.cli", "print a model's layers and parameter counts"),
    ("train", "keras_resnet.training.cli", "train a model with model.fit and write a run folder"),
    ("evaluate", "keras_resnet.training.cli", "top-1/top-5 of a run or model on a dataset split"),
    ("export", "keras_resnet.export.cli", "export a SavedModel (TF Serving), ONNX or TFLite"),
    ("predict", "keras_resnet.export.cli", "top-k labels for image files"),
    ("tune", "keras_resnet.tuning.cli", "hyperparameter search with keras-tuner"),
    ("benchmark", "keras_resnet.benchmark.cli", "images/second side by side with a reference"),
    ("convert", "keras_resnet.weights.command", "torchvision / timm checkpoint -> Keras .weights.h5"),
)}

class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one error policy: a bad flag raises ``ValueError`` with argparse's
    message (it names the flag), which :func:`main` prints as one line, exit status 2."""

    def error(self, message):
        raise ValueError(message)


def _usage():
    lines = ["usage: keras-resnet COMMAND [options] [--debug]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'keras-resnet COMMAND --help' for a command's options.",
              "--debug shows TensorFlow's log and the full traceback of an error."]
    return "\n".join(lines)


# absl's native log line: severity letter (Info, Warning, Error, Fatal), MMDD, time ...
_NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"


def _below(line: str, min_level: int) -> bool:
    """A native log line of a severity under ``min_level`` (TF_CPP_MIN_LOG_LEVEL's scale)."""
    if line.startswith(_ABSL_NOTICE):
        return min_level > 0
    match = _NATIVE_LOG_LINE.match(line)
    return bool(match) and _SEVERITY[match.group(1)] < min_level


@contextlib.contextmanager
def _filter_native_stderr(min_level: int):
    """Route file descriptor 2 through a file while the block runs, then write back every
    line except native log lines under ``min_level``.

    TensorFlow 2.21 logs through absl while its shared libraries load, before
    ``absl::InitializeLog()``; those lines ignore TF_CPP_MIN_LOG_LEVEL (e.g. "cudart_stub.cc
    ... Could not find cuda drivers"), so the command applies the level to them itself.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _below(line, min_level)))
            sys.stderr.flush()


def _quiet_native_logs(debug: bool) -> None:
    """TensorFlow/XLA C++ log lines (e.g. 'failed call to cuInit' on CPU-only machines) stay
    off stderr in normal use; a user's own TF_CPP_MIN_LOG_LEVEL or --debug brings them back."""
    if debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    min_level = int(level) if level.isdigit() else 0
    if min_level > 0:
        import_hooks.around_first_import("tensorflow", lambda: _filter_native_stderr(min_level))


def _one_line(message):
    return " ".join(str(message).split()) or "failed"


# Libraries whose Python warnings speak to their own developers, not to a command's user
# (Keras' "build() was called ...", TensorFlow's deprecations, tf2onnx, ONNX Runtime).
_LIBRARY_WARNINGS = r"(keras|tensorflow|tf_keras|tf2onnx|onnx|onnxruntime|absl|tensorflow_datasets)(\.|$)"


@contextlib.contextmanager
def _one_line_warnings(command: str, debug: bool):
    """While a command runs: each of the package's own warnings once, as one line
    ``keras-resnet COMMAND: warning: ...``; the libraries' warnings (and their Python log
    records under ERROR, e.g. tfds' "WARNING:absl:Variant folder ...") only with --debug."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        if not debug:
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            seen = set()

            def show(message, category, filename, lineno, file=None, line=None):
                text = _one_line(message)
                if text not in seen:
                    seen.add(text)
                    print(f"keras-resnet {command}: warning: {text}", file=sys.stderr)

            warnings.showwarning = show
            warnings.filterwarnings("ignore", module=_LIBRARY_WARNINGS)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("KERAS_RESNET_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    _quiet_native_logs(debug)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"keras-resnet: error: unknown command {command!r}; run 'keras-resnet --help'",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        with _one_line_warnings(command, debug):
            module = importlib.import_module(COMMANDS[command][0])
            return module.cli_main(command, rest)
    except BrokenPipeError:  # `keras-resnet list | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ENVIRONMENT
    except Stopped as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"keras-resnet {command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help (0); a bad flag raises ValueError (ArgumentParser)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except ModuleNotFoundError as e:
        if debug or _ours(e.name):
            raise  # a module of this package missing is a bug: show the traceback
        print(f"keras-resnet {command}: error: {_missing_package(command, e)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except (CommandError, ValueError, OSError) as e:
        if debug:
            raise
        code = getattr(e, "exit_code", EXIT_USAGE if isinstance(e, ValueError) else EXIT_ENVIRONMENT)
        print(f"keras-resnet {command}: error: {_one_line(e)}", file=sys.stderr)
        return code


def _ours(module_name):
    return module_name is not None and module_name.split(".")[0] == "keras_resnet"


def _missing_package(command, error):
    """One line for a package a command imports that is not installed (e.g. TensorFlow
    under a Keras-on-PyTorch install: models load, `train` cannot run)."""
    package = (error.name or "").split(".")[0] or "a package"
    return (f"{command} needs {package}, which cannot be imported here ({_one_line(error)}); "
            f"pip install {package}, or see the package's install notes")


# ------------------------------------------------------------------ list and summary
# Both read the registry (keras_resnet.specs, standard library only): `list` imports
# Keras only for --params, `summary` only after its arguments are checked.


def _count_params(name: str) -> int:
    import keras

    from keras_resnet.models import get_model

    # StatelessScope defers variable initialisation: counting needs only the shapes.
    with keras.StatelessScope():
        return get_model(name, weights=None).count_params()


def _list(args) -> int:
    from keras_resnet import specs

    if args.weights:
        from keras_resnet.weights.published import print_table

        print_table()
        return 0
    rows = [m for m in specs.MODELS.values() if args.family in (None, m.family)]
    header = f"{'name':<18} {'family':<9} {'variant':<8} {'depth':>5} {'input':>6} {'preprocessing':<13}"
    print(header + (f" {'params':>12}" if args.params else "") + " description")
    for m in rows:
        line = (f"{m.name:<18} {m.family:<9} {m.variant:<8} {m.depth:>5} "
                f"{m.input_size:>6} {m.preprocessing:<13}")
        if args.params:
            line += f" {_count_params(m.name):>12,}"
        print(f"{line} {m.description}", flush=True)
    return 0


def _summary(args) -> int:
    from keras_resnet import specs

    if args.model not in specs.MODELS:
        raise ValueError(f"unknown model {args.model!r}; `keras-resnet list` prints the names")
    spec = specs.MODELS[args.model]
    kwargs = {"weights": None}
    if args.classes is not None:
        kwargs["classes"] = args.classes
    if args.input_size is not None:
        smallest = specs.MIN_INPUT_SIZE[spec.family]
        if args.input_size < smallest:
            raise ValueError(f"--input-size must be at least {smallest} for {spec.name} (the "
                             f"{spec.family} family). Received: --input-size {args.input_size}")
        kwargs["input_shape"] = (args.input_size, args.input_size, 3)
    from keras_resnet.models import get_model

    get_model(args.model, **kwargs).summary()
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def build_parser(command: str):
    """The ``list`` or ``summary`` parser (argparse only: ``--help`` imports nothing heavy)."""
    from keras_resnet import specs

    parser = ArgumentParser(prog=f"keras-resnet {command}",
                                     description=COMMANDS[command][1])
    if command == "list":
        parser.add_argument("--params", action="store_true",
                            help="also build each model to count its parameters (slow)")
        parser.add_argument("--family", choices=specs.FAMILIES, default=None,
                            help="only the models of this family")
        parser.add_argument("--weights", action="store_true",
                            help="list the published weight sets of each model: source, "
                                 "license, published top-1")
        return parser
    parser.add_argument("model", help="a name from 'keras-resnet list'")
    parser.add_argument("--classes", type=_positive_int, default=None,
                        help="classes of the top (default: 1000 for ImageNet models, 10 for CIFAR)")
    parser.add_argument("--input-size", type=_positive_int, default=None,
                        help="square input side in pixels (default: the model's, e.g. 224)")
    return parser


def cli_main(command: str, argv: list[str]) -> int:
    """``list`` and ``summary``: the model table and one model's layers."""
    args = build_parser(command).parse_args(argv)
    return _list(args) if command == "list" else _summary(args)


if __name__ == "__main__":
    sys.exit(main())
