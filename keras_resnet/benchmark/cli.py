"""The ``keras-resnet benchmark`` command: its arguments; the checks and the table are the
library's (:mod:`.runner`).

Imports no TensorFlow at module level: ``--help`` and bad flags answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys

from keras_resnet.benchmark.runner import format_table
from keras_resnet.cli import ArgumentParser
from keras_resnet.utils import PRECISIONS


def build_parser(prog: str = "keras-resnet benchmark") -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description="Images/second side by side with a reference.")
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
