"""Does the fast precision reach fp32's accuracy? ResNet-20 per precision policy, on the bundled
digits job and on an MNIST-style folder job.

    python benchmarks/precision_parity.py --precisions fp32,mixed_float16,mixed_bfloat16 --seeds 0,1,2
    python benchmarks/precision_parity.py --make-mnist-folder digits28/    # 28x28 grayscale PNGs
    python benchmarks/precision_parity.py --data-dir digits28/ --seeds 0,1,2

Trains ResNet-20 with the auto recipe of ``keras-resnet train``
(:func:`keras_resnet.training.recipe.default_recipe` through
:func:`keras_resnet.training.recipe.compile_model`; on the digits: SGD 0.9, lr 0.4 x 64/256,
1 warm-up epoch, cosine, weight decay 5e-4, 8 epochs of batch 64; BatchNorm momentum
:func:`~keras_resnet.training.recipe.bn_momentum_for` the steps per epoch) on the fixed
split, once per precision policy and seed, and prints test top-1 per run and the mean
difference to fp32. The issue's bar: within 0.5 points.

The folder job is what ``keras-resnet train --data-dir DIR`` does with a folder of small
images: :mod:`keras_resnet.data` reads and splits the folder (stratified 20% test), the
images train at their own size with the ``cifar`` preset (pad, crop, and the flip unless
:meth:`~keras_resnet.data.ImageData.flip_check` finds that mirroring changes the classes,
as it does for digits) and the ``cifar`` recipe (He et al. 2015: lr 0.1 x batch/128, /10 at
50% and 75%, 164 epochs of batch 128). ``--make-mnist-folder`` writes such a folder from
scikit-learn's digits: 28x28 grayscale PNGs in one folder per class, like MNIST's.

The input pipeline is numpy here (pad 4 + random crop, and the flip where the preset has
one; "tf" preprocessing to [-1, 1]), so that the script also runs on a machine that has
JAX but no TensorFlow (``KERAS_BACKEND=jax``, e.g. a GPU machine): ``--save-data`` writes
the split read by :mod:`keras_resnet.data` (TensorFlow) to an ``.npz`` that ``--data``
reads there.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def split_from_package(data_dir=None):
    """The digits split, or a folder's, exactly as ``keras_resnet.data`` reads it (needs
    TensorFlow), with the recipe family and augmentation ``keras-resnet train`` would use."""
    from keras_resnet.data import load_data
    from keras_resnet.training.recipe import recipe_family

    data = load_data(data_dir=data_dir) if data_dir else load_data("digits")
    x_train, y_train = data.raw_images("train", data.num_train, augmentation="none")
    x_test, y_test = data.raw_images("test", data.num_test, augmentation="none")
    family = recipe_family(data.name, data.image_size)
    augmentation, why = data.auto_augmentation(0)  # as keras-resnet train's auto recipe decides
    why = why or "the data's default"
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, family=family,
                augmentation=augmentation, augmentation_reason=why, name=data.name)


def make_mnist_folder(folder, size=28):
    """scikit-learn's 1,797 digits as ``size`` x ``size`` grayscale PNGs, ``folder/<digit>/<i>.png``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        pixels = Image.fromarray(np.uint8(np.round(image * 255.0 / 16.0)), mode="L")
        pixels.resize((size, size), Image.BILINEAR).save(os.path.join(folder, str(label), f"{i:04d}.png"))


def augment(images, rng, pad=4, flip=False):
    """Pad by ``pad`` (zeros), crop back at a random offset per image, and mirror half of
    them when ``flip``."""
    n, h, w, c = images.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c), images.dtype)
    padded[:, pad:pad + h, pad:pad + w] = images
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        mirror = rng.random(n) < 0.5
        out[mirror] = out[mirror, :, ::-1]
    return out


def preprocess(images):
    return images.astype("float32") / 127.5 - 1.0  # "tf" mode, ResNet-20's


def run(precision, seed, data, *, epochs=None):
    import keras

    from keras_resnet import get_model
    from keras_resnet.hardware import resolve_jit_compile
    from keras_resnet.specs import model_info
    from keras_resnet.training.recipe import bn_momentum_for, compile_model, default_recipe
    from keras_resnet.utils import keras_policy_name

    family = str(data.get("family", "digits"))
    recipe = default_recipe(family, model_info=model_info("ResNet20"), epochs=epochs)
    epochs = epochs or recipe["epochs"]
    size = data["x_train"].shape[1]
    flip = str(data.get("augmentation", "crop")) == "cifar"
    batch = recipe["batch_size"]
    steps = len(data["y_train"]) // batch
    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_policy_name(precision))
    try:
        model = get_model("ResNet20", weights=None, input_shape=(size, size, 3), classes=10,
                          bn_momentum=bn_momentum_for(steps))
    finally:
        keras.config.set_dtype_policy(previous)
    compile_model(model, steps_per_epoch=steps, epochs=epochs, global_batch_size=batch,
                  num_classes=10, lr=recipe["lr"], schedule=recipe["schedule"],
                  warmup_epochs=recipe["warmup_epochs"], weight_decay=recipe["weight_decay"],
                  label_smoothing=recipe["label_smoothing"], jit_compile=resolve_jit_compile("auto"))
    def batches():  # one fit call; each epoch a fresh order and fresh crops from (seed, epoch)
        for epoch in range(epochs):
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(len(data["y_train"]))[: steps * batch]
            x = preprocess(augment(data["x_train"][order], rng, flip=flip))
            y = data["y_train"][order]
            for i in range(steps):
                yield x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]

    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=steps, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    probabilities = model.predict(preprocess(data["x_test"]), batch_size=256, verbose=0)
    top1 = float(np.mean(np.argmax(probabilities, -1) == data["y_test"]))
    return {"job": str(data.get("name", "digits")), "recipe": family, "image_size": size,
            "precision": precision, "seed": seed, "test_top1": round(100 * top1, 2),
            "train_seconds": round(seconds, 1), "epochs": epochs, "flip": flip,
            "compute_dtype": model.layers[2].compute_dtype, "backend": keras.backend.backend()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--precisions", default="fp32,mixed_float16,mixed_bfloat16")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=None, help="default: the digits recipe's")
    p.add_argument("--data", help="an .npz written by --save-data (else keras_resnet.data, TensorFlow)")
    p.add_argument("--save-data", help="write the split (digits, or --data-dir's) to this .npz and exit")
    p.add_argument("--data-dir", help="a folder of class folders, read by keras_resnet.data")
    p.add_argument("--make-mnist-folder", help="write scikit-learn's digits here as 28x28 PNGs and exit")
    args = p.parse_args(argv)
    if args.make_mnist_folder:
        make_mnist_folder(args.make_mnist_folder)
        return 0
    if args.save_data:
        np.savez_compressed(args.save_data, **split_from_package(args.data_dir))
        return 0
    data = dict(np.load(args.data)) if args.data else split_from_package(args.data_dir)
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
