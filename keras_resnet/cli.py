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


if __name__ == "__main__":
    sys.exit(main())
