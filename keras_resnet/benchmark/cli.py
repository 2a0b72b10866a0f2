"""The ``keras-resnet benchmark`` command: arguments, their checks, the table.

Imports no TensorFlow at module level: ``--help`` and bad flags answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys

from keras_resnet.utils import PRECISIONS, check_choice, fail, is_int, normalize_precision

MODES = ("train", "infer", "data")
COMPARES = ("keras.applications", "torchvision", "none")
REFERENCE_PRECISIONS = ("fp32", "same")
TORCH_PRECISIONS = ("amp", "fp32")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # argparse's message names the flag; keras_resnet.cli.main prints it on one line, exit 2
        raise ValueError(message)


def build_parser(prog: str = "keras-resnet benchmark") -> argparse.ArgumentParser:
    p = _ArgumentParser(prog=prog, description="Images/second side by side with a reference.")
    p.add_argument("--model", required=True, help="a name from `keras-resnet list`")
    p.add_argument("--mode", required=True, help="train | infer | data (input pipeline alone)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--steps", type=int, default=5, help="timed steps per implementation and round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (A B A B ...)")
    p.add_argument("--precision", default="auto", help=" | ".join(PRECISIONS) + " (or bf16, fp16)")
    p.add_argument("--compare", default="keras.applications",
                   help="keras.applications | torchvision | none, or several joined by commas")
    p.add_argument("--reference-precision", default="fp32",
                   help="keras.applications' policy: fp32 (Keras' default) | same (ours)")
    p.add_argument("--torch-precision", default="amp",
                   help="torchvision: amp (float16 autocast on CUDA, bfloat16 on CPUs) | fp32")
    p.add_argument("--torch-compile", action="store_true",
                   help="torchvision through torch.compile (each round's subprocess compiles)")
    p.add_argument("--torch-python", default=None,
                   help="the Python interpreter that runs the torch worker (default: this one)")
    p.add_argument("--dataset", default="digits", help="data mode: dataset for keras_resnet.data.load_data")
    p.add_argument("--json-only", action="store_true", help="print the JSON lines only")
    return p


def compares_of(compare) -> tuple:
    """``"a,b"`` or ``("a", "b")`` -> ``("a", "b")``; ``"none"`` -> ``()``."""
    names = compare.split(",") if isinstance(compare, str) else list(compare)
    return tuple(n.strip() for n in names if n.strip() and n.strip() != "none")


def check_args(*, model: str, mode: str, batch_size: int, image_size: int, steps: int, rounds: int,
               precision: str, compare, reference_precision: str = "fp32",
               torch_precision: str = "amp") -> tuple[dict, str]:
    """Validate everything before any model is built; returns ``(model_info(model),
    precision in the vocabulary of keras_resnet.utils)``."""
    from keras_resnet.models import model_info

    info = model_info(model)  # ValueError naming `model` when unknown
    check_choice("mode", mode, MODES)
    for name, value, low in (("batch_size", batch_size, 1), ("image_size", image_size, 32),
                             ("steps", steps, 1), ("rounds", rounds, 1)):
        if not is_int(value) or value < low:
            fail(name, value, f"an integer >= {low}")
    precision = normalize_precision(precision)
    if not isinstance(compare, (str, list, tuple)) or any(c not in COMPARES for c in compares_of(compare)):
        fail("compare", compare, f"one or more (comma-separated) of {COMPARES}")
    check_choice("torch_precision", torch_precision, TORCH_PRECISIONS)
    check_choice("reference_precision", reference_precision, REFERENCE_PRECISIONS)
    return info, precision


def format_table(results: list[dict]) -> str:
    header = ("impl", "mode", "precision", "img/s", "GFLOP/s", "peak", "speedup")
    rows = [header]
    for r in results:
        label = r["impl"] + (f" ({r['augmentation']})" if "augmentation" in r else "")
        peak = "" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}%"
        gflops = "" if r["gflops_per_sec"] is None else f"{r['gflops_per_sec']:.1f}"
        speedup = f"ours {r['keras_resnet_speedup']:.2f}x" if "keras_resnet_speedup" in r else ""
        rows.append((label, r["mode"], r["precision"], f"{r['images_per_sec']:.2f}", gflops, peak, speedup))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def cli_main(command: str, argv: list[str]) -> int:
    args = build_parser(f"keras-resnet {command}").parse_args(argv)
    from keras_resnet.benchmark.runner import run_benchmark

    results = run_benchmark(
        args.model, mode=args.mode, batch_size=args.batch_size, image_size=args.image_size,
        steps=args.steps, rounds=args.rounds, precision=args.precision, compare=args.compare,
        reference_precision=args.reference_precision, torch_compile=args.torch_compile,
        torch_precision=args.torch_precision, torch_python=args.torch_python, dataset=args.dataset,
        log=lambda message: print(message, file=sys.stderr),
    )
    for result in results:
        print(json.dumps(result), flush=True)
    if not args.json_only:
        print()
        print(format_table(results))
    return 0
