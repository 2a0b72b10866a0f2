"""The `keras-resnet` command: a thin dispatcher.

Each subcommand lives in the module that does the work and exposes
`cli_main(command, argv) -> int` there, so this file only maps names to modules.
"""

import importlib
import os
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "list": ("keras_resnet.cli", "list every named model: family, depth, parameters"),
    "summary": ("keras_resnet.cli", "print a model's layers and parameter counts"),
    "train": ("keras_resnet.training", "train a model with model.fit and write a run folder"),
    "evaluate": ("keras_resnet.training", "top-1/top-5 of a run or model on a dataset split"),
    "export": ("keras_resnet.export.cli", "export a SavedModel (TF Serving), ONNX or TFLite"),
    "predict": ("keras_resnet.export.cli", "top-k labels for image files"),
    "tune": ("keras_resnet.tuning", "hyperparameter search with keras-tuner"),
    "benchmark": ("keras_resnet.benchmark", "images/second side by side with a reference"),
    "convert": ("keras_resnet.weights.command", "torchvision / timm checkpoint -> Keras .weights.h5"),
}

# Exit statuses: 0 done, 1 the environment failed (offline, disk full, a lost worker),
# 2 the user asked for something invalid, 130/143 stopped by SIGINT/SIGTERM.
EXIT_ENVIRONMENT, EXIT_USAGE = 1, 2


class CommandError(Exception):
    """A failure the command explains in one line; ``exit_code`` says which kind.

    Raise it (or a ``ValueError`` for bad input, an ``OSError`` for the environment) from a
    subcommand; :func:`main` prints ``keras-resnet COMMAND: error: MESSAGE`` and exits.
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


def _usage():
    lines = ["usage: keras-resnet COMMAND [options] [--debug]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'keras-resnet COMMAND --help' for a command's options.",
              "--debug shows TensorFlow's log and the full traceback of an error."]
    return "\n".join(lines)


def _quiet_native_logs(debug):
    """TensorFlow/XLA C++ log lines (e.g. 'failed call to cuInit' on CPU-only machines) stay
    off stderr in normal use; a user's own TF_CPP_MIN_LOG_LEVEL or --debug brings them back."""
    if debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def _one_line(message):
    return " ".join(str(message).split()) or "failed"


def main(argv=None):
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
        module = importlib.import_module(COMMANDS[command][0])
        return module.cli_main(command, rest)
    except Stopped as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"keras-resnet {command}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError) as e:
        if debug:
            raise
        code = getattr(e, "exit_code", EXIT_USAGE if isinstance(e, ValueError) else EXIT_ENVIRONMENT)
        print(f"keras-resnet {command}: error: {_one_line(e)}", file=sys.stderr)
        return code


def _count_params(name):
    import keras

    from keras_resnet.models import get_model

    # StatelessScope defers variable initialisation: counting needs only the shapes.
    with keras.StatelessScope():
        return get_model(name, weights=None).count_params()


def cli_main(command, argv):
    """``list`` and ``summary``: the model table and one model's layers."""
    import argparse

    from keras_resnet.models import get_model, list_models

    parser = argparse.ArgumentParser(prog=f"keras-resnet {command}")
    if command == "list":
        parser.add_argument("--params", action="store_true",
                            help="also build each model to count its parameters (slow: ~2 min)")
        parser.add_argument("--family", choices=("imagenet", "cifar"), default=None)
        parser.add_argument("--weights", action="store_true",
                            help="list the published weight sets of each model instead")
        args = parser.parse_args(argv)
        if args.weights:
            from keras_resnet.weights.published import print_table

            print_table()
            return 0
        rows = [m for m in list_models() if args.family in (None, m["family"])]
        header = f"{'name':<18} {'family':<9} {'variant':<8} {'depth':>5} {'input':>6} {'preprocessing':<13}"
        print(header + (f" {'params':>12}" if args.params else ""))
        for m in rows:
            line = (f"{m['name']:<18} {m['family']:<9} {m['variant']:<8} {m['depth']:>5} "
                    f"{m['input_size']:>6} {m['preprocessing']:<13}")
            if args.params:
                line += f" {_count_params(m['name']):>12,}"
            print(line, flush=True)
        return 0
    parser.add_argument("model", help="a name from 'keras-resnet list'")
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--input-size", type=int, default=None)
    args = parser.parse_args(argv)
    kwargs = {}
    if args.classes is not None:
        kwargs["classes"] = args.classes
    if args.input_size is not None:
        kwargs["input_shape"] = (args.input_size, args.input_size, 3)
    get_model(args.model, **kwargs).summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
