"""``keras-resnet train`` and ``keras-resnet evaluate``: parse flags, call the library.

Importing this module imports neither TensorFlow nor Keras, so ``--help`` is fast; errors
are shown by :func:`keras_resnet.cli.main` (ValueError: exit 2, environment: exit 1,
SIGINT / SIGTERM: 130 / 143 after the backup is written).
"""

import argparse
import json
import shlex

from keras_resnet.cli import ArgumentParser
from keras_resnet.training.config import (
    AUGMENTATIONS, FINETUNE_MODES, PAPER_WARMUP, RECIPE_NAMES, SCHEDULES, STRATEGIES)
from keras_resnet.utils import PRECISIONS


def _number_or_paper(text):
    if text == PAPER_WARMUP:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {PAPER_WARMUP!r}, got {text!r}")


def _model_option(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass  # a plain string
    return key, value


def _verbosity(text):
    return text if text == "auto" else int(text)


def train_parser(prog="keras-resnet train"):
    p = ArgumentParser(prog=prog, description=(
        "Train a ResNet with model.fit and write a run folder. Rerunning the same command "
        "continues the newest unfinished run with the same options (--new-run starts afresh)."))
    a = p.add_argument
    a("--model", default="ResNet20", help="a name of `keras-resnet list` (default ResNet20)")
    a("--weights", help="start from pretrained weights and fine-tune: imagenet, a named set of "
      "`keras-resnet list --weights`, a weights file or a keras-hub preset; none (default): from scratch")
    a("--dataset", default="digits", help="digits (bundled) or a tfds image-classification name")
    a("--data-dir", help="folder of class subfolders (or train/ test/ [val/] split folders)")
    a("--tfds-data-dir", help="tfds data folder")
    a("--manual-dir", help="tfds manual download folder (imagenet2012)")
    a("--epochs", type=int, help="epochs to train (default: the dataset family's recipe)")
    a("--batch-size", type=int, help="per replica; the global batch is this x replicas "
      "(clamped, with a note, to the training set)")
    a("--image-size", type=int, help="training and evaluation size in pixels (default: the eval size of "
      "--weights, else the dataset's)")
    a("--output", help="run folder (default runs/<model>-<dataset>-<time>, or the newest unfinished "
      "run there with the same options)")
    a("--new-run", action="store_true", help="start a new run folder even if runs/ holds an unfinished "
      "run with the same options")
    a("--strategy", default="auto", choices=STRATEGIES, help="distribution strategy (auto: TPU, "
      "TF_CONFIG workers, all GPUs, or one device)")
    a("--precision", default="auto", choices=PRECISIONS, help="auto: mixed_float16 on GPUs, mixed_bfloat16 "
      "on CPUs with fast bf16, else fp32; KERAS_RESNET_PRECISION overrides auto")
    a("--jit-compile", default="auto", choices=("auto", "on", "off"), help="XLA (auto: on GPUs and on JAX)")
    a("--deterministic", action="store_true", help="deterministic ops: resumed runs end bit-equal")
    a("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation (default 0)")
    a("--recipe", dest="recipe_name", default="auto", choices=RECIPE_NAMES, help="auto: the dataset family's "
      "recipe fitted to the run (cosine with warm-up for runs under 50 epochs, BatchNorm momentum from the "
      "steps per epoch, no flips where they change the classes); paper: He et al. 2015 as written")
    a("--val-fraction", type=float, default=0.1, help="fraction of each class of train held out for "
      "validation when the dataset has no val split (default 0.1; 0: none). Test is evaluated once, at the end")
    a("--lr", type=float, help="learning rate for a global batch of 256 (scaled linearly)")
    a("--schedule", choices=SCHEDULES, help="step (/10 at 50%% and 75%%) or cosine")
    a("--warmup-epochs", type=_number_or_paper, help="linear warm-up epochs, or 'paper' "
      "(lr / 10 until the training error < 80%%)")
    a("--label-smoothing", type=float, help="in [0, 1)")
    a("--weight-decay", type=float, help="on conv/dense kernels only")
    a("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    a("--nesterov", action="store_true", help="Nesterov momentum")
    a("--augmentation", choices=AUGMENTATIONS, help="cifar (pad-crop, flip) | imagenet (random resized "
      "crop, flip) | crop (pad-crop, no flip) | none (default: the dataset's)")
    a("--finetune", choices=FINETUNE_MODES, help="with --weights: full (auto, measured best: all layers "
      "at --finetune-lr from the start), two-phase (the head alone on a frozen backbone, then all layers; "
      "auto with --head-epochs) or head (the head alone)")
    a("--head-epochs", type=int, help="two-phase: epochs of the head alone (default a quarter of the run)")
    a("--finetune-lr", type=float, help="with --weights: learning rate of the backbone per 256 images "
      "(default --lr's)")
    a("--freeze-bn", action=argparse.BooleanOptionalAction, default=None, help="with --weights: "
      "BatchNorm in inference mode while the backbone trains (default: no, BatchNorm adapts)")
    a("--zero-init-residual", action="store_true", help="zero gamma in each block's last BN")
    a("--sync-bn", action="store_true", help="BatchNorm statistics over all replicas")
    a("--model-option", type=_model_option, action="append", default=[], metavar="KEY=VALUE",
      help="extra get_model option, e.g. width_multiplier=0.5 (repeatable)")
    a("--backup-steps", type=int, help="steps between mid-epoch backups (0: epoch ends only)")
    a("--overwrite", action="store_true", help="train anew even if output holds a run")
    a("--no-export", dest="export", action="store_false", help="skip the SavedModel export")
    a("--export-dir", help="export the SavedModel to EXPORT_DIR/<run name>/<version> "
      "(default: saved_models/<run name>/<version>)")
    a("--verbose", default="auto", type=_verbosity, choices=("auto", 0, 1, 2), help="0 silent, 1 progress "
      "bar, 2 one line per epoch; auto: a progress bar on a terminal, else one line per epoch")
    return p


def evaluate_parser(prog="keras-resnet evaluate"):
    from keras_resnet.training.evaluation import SPLITS

    p = ArgumentParser(prog=prog, description="Top-1/top-5 accuracy of a run, a .keras file or a model.")
    p.add_argument("run_or_model", help="run folder, .keras file, or model name (ImageNet weights)")
    p.add_argument("--dataset", help="dataset (default: the run's)")
    p.add_argument("--data-dir", help="folder of class subfolders (default: the run's)")
    p.add_argument("--tfds-data-dir", help="tfds data folder")
    p.add_argument("--split", default="test", choices=SPLITS, help="test, or val (when the dataset has one)")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch (default 64)")
    p.add_argument("--image-size", type=int, help="evaluation size (default: the run's)")
    from keras_resnet.preprocessing import MEAN_STD_SYNTAX, MODES

    p.add_argument("--preprocessing", metavar="MODE|MEAN_STD",
                   help=f"a mode ({' | '.join(MODES)}) or a per-channel RGB mean / std on [0, 1], as "
                        f"torchvision's Normalize: {MEAN_STD_SYNTAX} (default: the run's; needed for "
                        "a .keras file outside a run)")
    return p


def resume_command(command, argv):
    """``output -> the command line that continues that run``: ``argv`` without the flags
    that start afresh, with ``--output OUTPUT``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--output":
            skip = True
        elif not (arg.startswith("--output=") or arg in ("--overwrite", "--new-run")):
            kept.append(arg)
    return lambda output: shlex.join(["keras-resnet", command, *kept, "--output", output])


def cli_main(command, argv):
    """``keras-resnet train ...`` / ``keras-resnet evaluate ...``; returns the exit status."""
    prog = f"keras-resnet {command}"
    parser = {"train": train_parser, "evaluate": evaluate_parser}[command](prog)
    args = vars(parser.parse_args(argv))
    if command == "train":
        from keras_resnet.training.config import TrainConfig
        from keras_resnet.training.loop import run

        args["model_options"] = dict(args.pop("model_option"))
        overwrite, new_run = args.pop("overwrite"), args.pop("new_run")
        config = TrainConfig.from_kwargs(flags=True, **args)
        run(config, overwrite=overwrite, new_run=new_run, resume_command=resume_command(command, argv))
        return 0
    from keras_resnet.training.evaluation import evaluate

    result = evaluate(args.pop("run_or_model"), **args)
    line = f"{result['dataset']} {result['split']} ({result['num_images']} images): top-1 {result['top1']:.4f}"
    if "top5" in result:
        line += f"  top-5 {result['top5']:.4f}"
    print(line)
    return 0
