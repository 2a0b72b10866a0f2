"""The `keras-resnet` command: a thin dispatcher.

Each subcommand lives in the module that does the work and exposes
`cli_main(command, argv) -> int` there, so this file only maps names to modules.
"""

import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "list": ("keras_resnet.cli", "list every named model: family, depth, parameters"),
    "summary": ("keras_resnet.cli", "print a model's layers and parameter counts"),
    "train": ("keras_resnet.training", "train a model with model.fit and write a run folder"),
    "evaluate": ("keras_resnet.training", "top-1/top-5 of a run or model on a dataset split"),
    "export": ("keras_resnet.export", "export a SavedModel (TF Serving), ONNX or TFLite"),
    "predict": ("keras_resnet.export", "top-k labels for image files"),
    "tune": ("keras_resnet.tuning", "hyperparameter search with keras-tuner"),
    "benchmark": ("keras_resnet.benchmark", "images/second side by side with a reference"),
}


def _usage():
    lines = ["usage: keras-resnet COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'keras-resnet COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"keras-resnet: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.cli_main(command, rest)


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
        args = parser.parse_args(argv)
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
    try:
        model = get_model(args.model, **kwargs)
    except ValueError as e:
        print(f"keras-resnet summary: {e}", file=sys.stderr)
        return 2
    model.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
