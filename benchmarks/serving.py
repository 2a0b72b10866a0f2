"""Serving speed of exported SavedModels: unfolded fp32 vs BN-folded fp32 vs folded bf16 (issue 6).

    python benchmarks/serving.py [--model ResNet50] [--batch-size 16] [--image-size 224]
        [--rounds 3] [--steps 2] [--variants unfolded_fp32 folded_fp32 folded_bf16]

Exports the same model (random weights, the classifier scaled so that the probabilities
are not saturated) once per variant with
``keras_resnet.export_saved_model``, reloads each with ``tf.saved_model.load`` and times its
``predict_pixels`` signature (preprocessing included) on one batch of random pixels,
interleaved round by round (A B C A B C ...) so that all see the same machine load. Prints
one JSON line per variant (images/second, per-round figures, ratio to unfolded fp32 as the
median of per-round ratios and the best round, largest probability difference to unfolded
fp32 on the timed batch) and a table.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import export_saved_model, get_model
from keras_resnet.models import model_info
from keras_resnet.preprocessing import preprocess_input

VARIANTS = {  # name: export_saved_model options
    "unfolded_fp32": {"fold_bn": False, "precision": "fp32"},
    "folded_fp32": {"fold_bn": True, "precision": "fp32"},
    "folded_bf16": {"fold_bn": True, "precision": "bf16"},
}
BASELINE = "unfolded_fp32"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ResNet50")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed calls per variant and round")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    for name in ("batch_size", "image_size", "classes", "rounds", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer. Received: {getattr(args, name)}")
    variants = list(dict.fromkeys([BASELINE] + args.variants))  # ratios need the baseline
    size, batch = args.image_size, args.batch_size

    model = get_model(args.model, weights=None, input_shape=(size, size, 3), classes=args.classes)
    preprocessing = model_info(args.model)["preprocessing"]
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    # Random weights saturate the softmax; scale the classifier so that the logits on this
    # batch have standard deviation 2 and the probability differences below mean something.
    head = model.get_layer("predictions")
    features = keras.Model(model.input, head.input)(preprocess_input(pixels, mode=preprocessing))
    head.kernel.assign(head.kernel * (2.0 / float(tf.math.reduce_std(features @ head.kernel))))
    signatures, outputs = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in variants:
            start = time.perf_counter()
            path = export_saved_model(
                model, os.path.join(scratch, name), class_names=[f"c{i}" for i in range(args.classes)],
                preprocessing=preprocessing, **VARIANTS[name],
            )
            signatures[name] = tf.saved_model.load(path).signatures["predict_pixels"]
            print(f"exported and loaded {name} in {time.perf_counter() - start:.1f} s", flush=True)

    def call(name):
        return signatures[name](pixels=pixels)["probabilities"].numpy()

    for name in variants:  # trace, warm up, and keep one output for the comparison
        call(name)
        outputs[name] = call(name)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            start = time.perf_counter()
            for _ in range(args.steps):
                call(name)
            times[name].append((time.perf_counter() - start) / args.steps)

    rows = []
    for name in variants:
        per_round = [batch / t for t in times[name]]
        ratios = [base / t for base, t in zip(times[BASELINE], times[name])]
        rows.append({
            "variant": name, "model": args.model, "batch_size": batch, "image_size": size,
            "images_per_sec": round(statistics.median(per_round), 2),
            "best_images_per_sec": round(max(per_round), 2),
            "rounds_images_per_sec": [round(r, 2) for r in per_round],
            "ratio_vs_unfolded_fp32": round(statistics.median(ratios), 3),
            "best_round_ratio": round(max(ratios), 3),
            "max_abs_prob_diff_vs_unfolded_fp32": float(np.abs(outputs[name] - outputs[BASELINE]).max()),
            "top1_agreement_vs_unfolded_fp32": float(np.mean(
                outputs[name].argmax(-1) == outputs[BASELINE].argmax(-1))),
        })
    for row in rows:
        print(json.dumps(row))
    print(f"\n{'variant':<15} {'img/s median':>12} {'best round':>10} "
          f"{'ratio median':>12} {'best ratio':>10} {'max|dp|':>9}")
    for r in rows:
        print(f"{r['variant']:<15} {r['images_per_sec']:>12.2f} {r['best_images_per_sec']:>10.2f} "
              f"{r['ratio_vs_unfolded_fp32']:>12.2f} {r['best_round_ratio']:>10.2f} "
              f"{r['max_abs_prob_diff_vs_unfolded_fp32']:>9.2e}")


if __name__ == "__main__":
    main()
