"""``keras-resnet export`` and ``keras-resnet predict``: parse arguments, call the library.

The parsers import nothing heavy, so ``--help`` never loads TensorFlow. Errors follow
:func:`keras_resnet.cli.main`: a ``ValueError`` is the user's (exit 2), an ``OSError`` or a
``CommandError(exit_code=1)`` the environment's (exit 1), each printed as one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from keras_resnet.cli import ArgumentParser
from keras_resnet.errors import MissingDependency
from keras_resnet.export.headers import DEFAULT_MAX_IMAGE_PIXELS
from keras_resnet.export.lite import QUANTIZATIONS, refuse_existing
from keras_resnet.export.options import FORMATS, PIXELS_SIGNATURE, SERVING_SIGNATURE
from keras_resnet.export.saved_model import DEFAULT_EXPORT_ROOT, SERVING_PRECISIONS, free_version
from keras_resnet.export.transform import INTERPOLATIONS, RESIZE_MODES

_PRECISION_SPELLINGS = (*SERVING_PRECISIONS, "float32", "mixed_bfloat16")


def _load_for_cli(args):
    """(model, export options dict, run config or None) for --model / --run."""
    if args.run:
        from keras_resnet.training.run_folder import load_run

        model, config = load_run(args.run, argument="--run")
        if args.model and args.model != config.get("model"):
            raise ValueError(
                f"--model {args.model} disagrees with the run's model {config.get('model')!r}. "
                f"Received: --model {args.model}"
            )
        options = {
            "class_names": config.get("class_names"),
            "preprocessing": args.preprocessing or config.get("preprocessing"),
            "image_size": config.get("image_size") if model.input_shape[1] is None else None,
        }
        return model, options, config
    from keras_resnet.models import get_model, model_info
    from keras_resnet.weights import weight_set_of

    info = model_info(args.model)
    weights = args.weights
    if weights is None:  # keras.applications' ImageNet weights where the model has them
        weights = "imagenet" if info["keras_applications"] else "none"
        if weights == "none":
            warnings.warn(f"{args.model} has no keras.applications weights, so it is used untrained; "
                          "--weights PATH | torchvision | timm:TAG chooses others", stacklevel=2)
    weights = None if weights == "none" else weights
    model = get_model(args.model, weights=weights)
    # A published set states its own normalisation (akamaster: ImageNet mean / std, "torch";
    # chenyaofo: CIFAR's), which the export reads from model.weight_set; the family's mode is
    # for the rest; --preprocessing overrides both.
    preprocessing = None if weight_set_of(model) is not None else info["preprocessing"]
    return model, {"preprocessing": args.preprocessing or preprocessing}, None


def _sample_images(args, config, image_size, count):
    """``(calibration, check, description)`` image lists for ONNX / TFLite exports.

    ``--calibration-images`` serve for both; else a run's data: calibration from its
    training split, the check on its held-out test split; else (None, None, None).
    """
    if args.calibration_images:
        images = list(args.calibration_images)
        return images, images, f"{len(images)} given images"
    if config is None:
        return None, None, None
    from keras_resnet.data import load_data

    data = load_data(
        config.get("dataset", "digits"),
        data_dir=config.get("data_dir"),
        tfds_data_dir=config.get("tfds_data_dir"),
        download=False,
    )
    calibration, _ = data.raw_images("train", count, image_size=image_size)
    check, _ = data.raw_images("test", count, image_size=image_size)
    return list(calibration), list(check), f"{len(check)} test images of {data.name}"


def _report_agreement(label, reference, candidate):
    import numpy as np

    diff = float(np.max(np.abs(reference - candidate)))
    agree = float(np.mean(np.argmax(reference, -1) == np.argmax(candidate, -1)))
    print(f"{label}: max |difference| to Keras {diff:.2e}, top-1 agreement {agree:.1%} "
          f"on {len(reference)} images")


def _add_input_flags(parser, *, in_process_only=""):
    """--preprocessing, --max-image-pixels, --crop-fraction, --interpolation, --resize."""
    from keras_resnet.preprocessing import MEAN_STD_SYNTAX, MODES

    parser.add_argument(
        "--preprocessing", metavar="MODE|MEAN_STD",
        help=f"normalisation baked in: a mode ({' | '.join(MODES)}) or a per-channel RGB mean / std "
             f"on [0, 1], as torchvision's Normalize: {MEAN_STD_SYNTAX}, e.g. "
             "mean=0.4914,0.4822,0.4465,std=0.2023,0.1994,0.201 (default: the run's, the weight "
             f"set's, else the model's mode){in_process_only}")
    parser.add_argument(
        "--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS, metavar="N",
        help="refuse an image whose header gives more pixels, before decoding it "
             f"(default {DEFAULT_MAX_IMAGE_PIXELS:,}; 0: no limit)")
    parser.add_argument("--crop-fraction", type=float, default=None,
                        help="share of each side kept by the center crop before resizing "
                             f"(default 1.0: the whole image){in_process_only}")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default=None,
                        help=f"resize method (default bilinear){in_process_only}")
    parser.add_argument("--resize", choices=RESIZE_MODES, default=None,
                        help="squash: crop and resize to the input size; shorter_side: keep "
                             f"the aspect ratio, as timm / torchvision (default squash){in_process_only}")


def _check_preprocessing_flag(args):
    """--preprocessing in its canonical form (a mode or {"mean", "std"}), or ValueError."""
    from keras_resnet.preprocessing import check_preprocessing

    if args.preprocessing is not None:
        args.preprocessing = check_preprocessing(args.preprocessing, "--preprocessing")


def _input_options(args):
    """export / resolve_options keywords from the flags of _add_input_flags (but
    --preprocessing, which _load_for_cli resolves with the model)."""
    from keras_resnet.export.transform import EvalTransform

    if args.max_image_pixels < 0:
        raise ValueError("--max-image-pixels must be a positive integer, or 0 for no limit. "
                         f"Received: --max-image-pixels {args.max_image_pixels}")
    if (args.crop_fraction, args.interpolation, args.resize) == (None, None, None):
        transform = None  # a published set's own (--weights torchvision ...), else the default
    else:
        transform = EvalTransform(
            crop_fraction=1.0 if args.crop_fraction is None else args.crop_fraction,
            interpolation=args.interpolation or "bilinear", resize=args.resize or "squash")
    return {"max_image_pixels": args.max_image_pixels or None, "eval_transform": transform}


def export_parser(prog="keras-resnet export") -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Export a model as a TF Serving SavedModel version, ONNX or TFLite file.",
    )
    parser.add_argument("--model", help="model name (see 'keras-resnet list')")
    parser.add_argument("--weights", help="PATH | imagenet | torchvision[:SET] | timm:TAG | none (with --model; "
                             "default: imagenet for keras.applications' six, else none); "
                             "a published set brings its eval transform")
    parser.add_argument("--run", help="training run folder (config.json, model.keras)")
    parser.add_argument("--export-dir", help=f"base folder of the versions (default {DEFAULT_EXPORT_ROOT}/<model or run name>/, "
                             "where train exported the run)")
    parser.add_argument("--version", type=int, help="SavedModel version (default: next free)")
    parser.add_argument("--format", default="saved_model", choices=FORMATS, help="what to write")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS, help="TFLite only")
    parser.add_argument("--top-k", type=int, default=5, help="classes serving_default returns")
    parser.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                        help="fold BatchNormalization into the convolutions (default: fold)")
    parser.add_argument("--precision", choices=_PRECISION_SPELLINGS,
                        help="SavedModel compute precision (default auto: bf16 on CPUs with "
                             "AMX / AVX-512 bf16, else fp32)")
    parser.add_argument("--calibration-images", nargs="+", metavar="IMAGE",
                        help="images for int8 calibration (default: the run's training data)")
    parser.add_argument("--num-calibration", type=int, default=100,
                        help="calibration images taken from the run's data")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="write assets.extra/tf_serving_warmup_requests (needs "
                             "tensorflow-serving-api; default: write)")
    _add_input_flags(parser)
    return parser


def _check_export_args(args):
    if args.version is not None and args.format != "saved_model":
        raise ValueError(f"--version applies to --format saved_model only. Received: --format {args.format}")
    if args.quantize != "none" and args.format != "tflite":
        raise ValueError(f"--quantize applies to --format tflite only. Received: --format {args.format}")
    if args.precision is not None and args.format != "saved_model":
        raise ValueError(
            "--precision applies to --format saved_model only (ONNX and TFLite files are "
            f"float32 or --quantize'd). Received: --format {args.format}"
        )
    if not (args.model or args.run):
        raise ValueError("one of --model NAME or --run RUN_DIR is needed. Received: neither")
    _check_preprocessing_flag(args)
    if args.format != "saved_model" and (
        (args.crop_fraction, args.interpolation, args.resize) != (None, None, None)
        or args.max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS
    ):
        raise ValueError(
            "--crop-fraction, --interpolation, --resize and --max-image-pixels shape "
            "serving_default, which only --format saved_model has (ONNX and TFLite take "
            f"pixels). Received: --format {args.format}")
    if args.quantize == "int8" and not (args.calibration_images or args.run):
        raise ValueError(
            "--quantize int8 needs calibration images: --calibration-images IMAGE... or "
            "--run RUN_DIR (its training data). Received: neither"
        )


def _write_saved_model(args, model, options, export_dir):
    from keras_resnet.export.saved_model import export_saved_model, saved_model_metadata

    path = export_saved_model(
        model, export_dir, version=args.version, top_k=args.top_k, fold_bn=args.fold_bn,
        precision=args.precision or "auto", warmup=args.warmup, **options, **_input_options(args)
    )
    meta = saved_model_metadata(path)
    print(
        f"SavedModel written to {path} (signatures: {SERVING_SIGNATURE}, {PIXELS_SIGNATURE}; "
        f"precision {meta['precision']}; BatchNormalization layers folded: "
        f"{meta['batch_norm_folded']}, kept: {meta['batch_norm_kept']})"
    )


def _export_lite(args, model, options, config, target):
    """Write an ONNX or TFLite file, then check it with its own runtime against Keras."""
    import numpy as np

    from keras_resnet.export import lite
    from keras_resnet.export.options import resolve_options
    from keras_resnet.export.signatures import as_pixel_batch, build_serving_functions
    from keras_resnet.inference import prepare_for_serving

    served, _ = prepare_for_serving(model, fold_bn=args.fold_bn, precision="fp32")
    resolved = resolve_options(served, **options)
    images, check, source = _sample_images(args, config, resolved.height, args.num_calibration)
    if args.format == "onnx":
        path = lite.export_onnx(served, target, **options)
        print(f"ONNX written to {path}")
        runner = lite.onnx_probabilities
    else:
        path = lite.export_tflite(served, target, quantize=args.quantize,
                                  representative_images=images, **options)
        print(f"TFLite ({args.quantize}) written to {path}")
        runner = lite.tflite_probabilities
    if check is None:
        rng = np.random.default_rng(0)
        pixels = rng.uniform(0, 255, (8, resolved.height, resolved.width, 3)).astype("float32")
        source = "8 random images"
    else:
        pixels = as_pixel_batch(check, resolved.height, resolved.width)
    _, predict_pixels, _ = build_serving_functions(model, resolved)  # the unfolded model
    reference = predict_pixels(pixels)["probabilities"].numpy()
    try:
        candidate = runner(path, pixels)
    except MissingDependency as e:  # the check only adds to the export: skip it, say why
        print(f"warning: {path} not checked against Keras: {e}", file=sys.stderr)
        return
    _report_agreement(f"{os.path.basename(path)} ({source})", reference, candidate)


def _export_dir(args, name):
    """--export-dir; else, for --run, the base its training wrote its SavedModel into
    (saved_models/RUN by default: the next version goes beside it, 2 after train's 1);
    else saved_models/NAME."""
    if args.export_dir:
        return args.export_dir
    if args.run:
        from keras_resnet.training.run_folder import read_config

        try:
            trained = read_config(args.run).get("export_path")
        except (OSError, ValueError):
            trained = None  # load_run names what is missing
        if trained and os.path.isdir(os.path.dirname(trained)):
            return os.path.dirname(trained)
    return os.path.join(DEFAULT_EXPORT_ROOT, name)


def _export_command(argv):
    args = export_parser().parse_args(argv)
    _check_export_args(args)
    name = os.path.basename(os.path.normpath(args.run)) if args.run else args.model
    export_dir = _export_dir(args, name)
    suffix = "" if args.quantize == "none" else f".{args.quantize}"
    target = os.path.join(export_dir, f"{name}{suffix}.{args.format}")
    # refuse before loading anything: an existing version or file is never overwritten
    if args.format == "saved_model":
        free_version(export_dir, args.version)
    else:
        refuse_existing(target)
    model, options, config = _load_for_cli(args)
    if args.format == "saved_model":
        _write_saved_model(args, model, options, export_dir)
    else:
        _export_lite(args, model, options, config, target)
    return 0


def predict_parser(prog="keras-resnet predict") -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description="Top-k labels for image files.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--saved-model", help="SavedModel version folder (or base path: newest version)")
    parser.add_argument("--model", help="model name, predicted in-process")
    parser.add_argument("--weights", help="PATH | imagenet | torchvision[:SET] | timm:TAG | none (with --model; "
                             "default: imagenet for keras.applications' six, else none); "
                             "a published set brings its eval transform")
    parser.add_argument("--run", help="training run folder, predicted in-process")
    parser.add_argument("--top-k", type=int, default=None, help="default: 5 (or what was exported)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    _add_input_flags(parser, in_process_only=" (with --model / --run; a SavedModel has its own)")
    return parser


def _print_results(results, as_json):
    if as_json:
        print(json.dumps(results, indent=2))
    for result in results:
        if "error" in result:
            print(f"{result['file']}: error: {result['error']}", file=sys.stderr)
        elif not as_json:
            top = ", ".join(f"{p['label']} ({p['score']:.4f})" for p in result["predictions"])
            print(f"{result['file']}: {top}")


def _predict_command(argv):
    from keras_resnet.export.predict import Predictor

    args = predict_parser().parse_args(argv)
    if not (args.saved_model or args.model or args.run):
        raise ValueError("one of --saved-model, --model or --run is needed. Received: none of them")
    if args.saved_model and (args.model or args.run):
        raise ValueError("--saved-model cannot be combined with --model or --run. Received: both")
    inputs = _input_options(args)
    _check_preprocessing_flag(args)
    if args.saved_model:
        if (args.preprocessing, args.crop_fraction, args.interpolation, args.resize) != (None,) * 4:
            raise ValueError("--preprocessing, --crop-fraction, --interpolation and --resize apply to "
                             "--model and --run; a SavedModel keeps what it was exported with. "
                             f"Received: --saved-model {args.saved_model}")
        predictor = Predictor.from_saved_model(args.saved_model, top_k=args.top_k,
                                               max_image_pixels=inputs["max_image_pixels"])
    else:
        model, options, _ = _load_for_cli(args)
        predictor = Predictor.from_model(model, top_k=args.top_k or 5, **options, **inputs)
    results = predictor.predict_files(args.images)
    _print_results(results, args.json)
    return 1 if any("error" in r for r in results) else 0


def cli_main(command, argv) -> int:
    """``keras-resnet export ...`` and ``keras-resnet predict ...``; returns the exit status."""
    commands = {"export": _export_command, "predict": _predict_command}
    if command not in commands:
        raise ValueError(f"command must be one of {tuple(commands)}. Received: command={command!r}")
    return commands[command](list(argv))
