"""Does the fast precision reach fp32's accuracy? ResNet-20 on the bundled digits, per policy.

    python benchmarks/precision_parity.py --precisions fp32,mixed_float16,mixed_bfloat16 --seeds 0,1,2

Trains ResNet-20 with the digits recipe of ``keras-resnet train``
(:data:`keras_resnet.recipe.RECIPES`\\ ``["digits"]`` through
:func:`keras_resnet.recipe.compile_model`: SGD 0.9, lr 0.4 x 64/256, 1 warm-up epoch,
cosine, weight decay 5e-4, BN momentum 0.9, 8 epochs of batch 64) on the fixed digits
split, once per precision policy and seed, and prints test top-1 per run and the mean
difference to fp32. The issue's bar: within 0.5 points.

The input pipeline is numpy here (pad 4 + random 32x32 crop, no flip: the "crop" preset;
"tf" preprocessing to [-1, 1]), so that the script also runs on a machine that has JAX
but no TensorFlow (``KERAS_BACKEND=jax``, e.g. a GPU machine): ``--save-data`` writes the
split from :mod:`keras_resnet.data` (TensorFlow) to an ``.npz`` that ``--data`` reads there.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def split_from_package():
    """The digits split exactly as ``keras_resnet.data`` makes it (needs TensorFlow)."""
    from keras_resnet.data import _DIGITS_SPLIT_SEED, _DIGITS_TEST_FRACTION, digits_images, stratified_split

    images, labels = digits_images()
    train, test = stratified_split(labels, _DIGITS_TEST_FRACTION, _DIGITS_SPLIT_SEED)
    return dict(x_train=images[train], y_train=labels[train], x_test=images[test], y_test=labels[test])


def augment(images, rng, pad=4):
    """Pad by ``pad`` (zeros) and crop back at a random offset per image."""
    n, h, w, c = images.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c), images.dtype)
    padded[:, pad:pad + h, pad:pad + w] = images
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def preprocess(images):
    return images.astype("float32") / 127.5 - 1.0  # "tf" mode, ResNet-20's


def run(precision, seed, data, *, epochs=None):
    import keras

    from keras_resnet import get_model
    from keras_resnet.hardware import keras_policy_name, resolve_jit_compile
    from keras_resnet.recipe import RECIPES, compile_model

    recipe = RECIPES["digits"]
    epochs = epochs or recipe["epochs"]
    batch = recipe["batch_size"]
    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_policy_name(precision))
    try:
        model = get_model("ResNet20", weights=None, input_shape=(32, 32, 3), classes=10,
                          **recipe["model_options"])
    finally:
        keras.config.set_dtype_policy(previous)
    steps = len(data["y_train"]) // batch
    compile_model(model, steps_per_epoch=steps, epochs=epochs, global_batch_size=batch,
                  num_classes=10, lr=recipe["lr"], schedule=recipe["schedule"],
                  warmup_epochs=recipe["warmup_epochs"], weight_decay=recipe["weight_decay"],
                  label_smoothing=recipe["label_smoothing"], jit_compile=resolve_jit_compile("auto"))
    start = time.perf_counter()
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(data["y_train"]))[: steps * batch]
        x = preprocess(augment(data["x_train"][order], rng))
        model.fit(x, data["y_train"][order], batch_size=batch, epochs=epoch + 1, initial_epoch=epoch,
                  shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    probabilities = model.predict(preprocess(data["x_test"]), batch_size=256, verbose=0)
    top1 = float(np.mean(np.argmax(probabilities, -1) == data["y_test"]))
    return {"precision": precision, "seed": seed, "test_top1": round(100 * top1, 2),
            "train_seconds": round(seconds, 1), "epochs": epochs,
            "compute_dtype": model.layers[2].compute_dtype, "backend": keras.backend.backend()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--precisions", default="fp32,mixed_float16,mixed_bfloat16")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=None, help="default: the digits recipe's")
    p.add_argument("--data", help="an .npz written by --save-data (else keras_resnet.data, TensorFlow)")
    p.add_argument("--save-data", help="write the digits split to this .npz and exit")
    args = p.parse_args(argv)
    if args.save_data:
        np.savez_compressed(args.save_data, **split_from_package())
        return 0
    data = dict(np.load(args.data)) if args.data else split_from_package()
    results = []
    for precision in args.precisions.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            results.append(run(precision, seed, data, epochs=args.epochs))
            print(json.dumps(results[-1]), flush=True)
    means = {}
    for r in results:
        means.setdefault(r["precision"], []).append(r["test_top1"])
    print("\nprecision        runs  mean top-1  vs first")
    first = statistics.mean(next(iter(means.values())))
    for precision, values in means.items():
        mean = statistics.mean(values)
        print(f"{precision:<16} {len(values):>4}  {mean:9.2f}%  {mean - first:+.2f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
