"""``keras-resnet tune``: parse flags, run :func:`keras_resnet.tuning.tuner.search`, print
the ranked trials. Importing this module imports neither TensorFlow nor keras-tuner."""

import os

from keras_resnet.cli import ArgumentParser
from keras_resnet.training.cli import resume_command
from keras_resnet.training.config import STRATEGIES
from keras_resnet.tuning.space import SEARCH_SPACE, TUNERS, parse_space
from keras_resnet.utils import PRECISIONS


def _parser(prog):
    p = ArgumentParser(
        prog=prog, description="Hyperparameter search over keras_resnet models and the training recipe "
        "(keras-tuner). Rerunning the same command continues the search (--new-run starts afresh).")
    a = p.add_argument
    a("--tuner", choices=TUNERS, default="random", help="keras-tuner's RandomSearch, Hyperband or "
      "BayesianOptimization (default random)")
    a("--max-trials", type=int, default=10, help="trials of random / bayesian search (default 10)")
    a("--epochs", type=int, default=3, help="epochs per trial (hyperband: the most per trial; default 3)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", default="digits", help="'digits' (bundled) or a tfds name")
    source.add_argument("--data-dir", default=None, help="folder of class subfolders")
    a("--objective", default="val_accuracy", help="val_accuracy, val_loss, val_top5 ... (default val_accuracy)")
    a("--output", default=None, help="search folder (default runs/tune-DATASET-TUNER-<time>, or the newest "
      "there with the same options)")
    a("--new-run", action="store_true", help="start a new search folder even if runs/ holds one with "
      "the same options")
    a("--strategy", default="auto", choices=STRATEGIES, help="distribution strategy (default auto)")
    a("--precision", default="auto", choices=PRECISIONS, help="auto: mixed_float16 on GPUs, mixed_bfloat16 "
      "on CPUs with fast bf16, else fp32; KERAS_RESNET_PRECISION overrides auto")
    a("--image-size", type=int, default=None, help="training size in pixels (default: the dataset's)")
    a("--batch-size", type=int, default=None, help="per replica (default: the recipe's)")
    a("--steps-per-epoch", type=int, default=None, help="cap steps per epoch (quick searches)")
    a("--space", action="append", default=[], metavar="KEY=VALUE",
      help="narrow the search: variant=v1, depth=20,32, lr=0.05:0.4, se=false (repeatable); "
           f"keys: {', '.join(SEARCH_SPACE)}")
    a("--weights", default=None, help="fine-tune --model from these weights (anything train --weights "
      "takes): the architecture is fixed and the fine-tuning lr is searched")
    a("--model", default="ResNet20", help="with --weights: the named model (default ResNet20)")
    a("--seed", type=int, default=0, help="seed of the tuner, shuffling and augmentation (default 0)")
    a("--overwrite", action="store_true", help="start the search in --output over")
    a("--export", action="store_true",
      help="train the best hyperparameters anew, save best/model.keras, export a SavedModel "
      "to saved_models/<search folder>-best/<version>")
    a("--final-epochs", type=int, default=None, help="epochs of the --export training (default --epochs)")
    a("--verbose", type=int, default=None, choices=(0, 1, 2), help="keras-tuner's and fit's verbosity")
    return p


def cli_main(command, argv):
    """``keras-resnet tune``: exit 0 when at least one trial completed, 1 when none did,
    2 on bad arguments, 130 / 143 when stopped by SIGINT / SIGTERM."""
    args = _parser(f"keras-resnet {command}").parse_args(argv)
    space = parse_space(args.space)
    if args.final_epochs is not None and args.final_epochs < 1:
        raise ValueError(f"--final-epochs must be >= 1. Received: --final-epochs={args.final_epochs}")
    from keras_resnet.tuning.tuner import format_table, search, train_best

    verbose = "auto" if args.verbose is None else args.verbose
    result = search(args.dataset, data_dir=args.data_dir, tuner=args.tuner, max_trials=args.max_trials,
                    epochs=args.epochs, objective=args.objective, output=args.output, space=space,
                    image_size=args.image_size, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
                    strategy=args.strategy, precision=args.precision, seed=args.seed,
                    weights=None if args.weights in (None, "none") else args.weights, model=args.model,
                    overwrite=args.overwrite,
                    new_run=args.new_run, verbose=verbose, resume_command=resume_command(command, argv))
    rows, best = result["trials"], result["best"]
    print()
    print(format_table(rows, args.objective))
    failed = [r for r in rows if r["status"] in ("FAILED", "INVALID")]
    if failed:
        print(f"\n{len(failed)} trial(s) failed; first error (trial {failed[0]['trial']}): {failed[0]['error']}")
    print(f"\nBest: trial {best['trial']}, {args.objective} {best['score']:.4f}: "
          + ", ".join(f"{k}={v}" for k, v in best["hyperparameters"].items()))
    print(f"Wrote {os.path.join(result['output'], 'best.json')}")
    if args.export:
        metrics = train_best(result, epochs=args.final_epochs or args.epochs, verbose=verbose)
        print(f"Best hyperparameters trained {metrics['epochs']} epochs: test accuracy "
              f"{metrics['test_accuracy']:.4f}; model {metrics['model_path']}"
              + (f"; SavedModel {metrics['export_path']}" if metrics["export_path"] else ""))
    return 0
