"""ResNet50 with Keras' BatchNormalization vs keras_resnet's fused one, interleaved A B A B.

Builds keras.applications.ResNet50 (random weights, "keras_bn"), a clone whose
BatchNormalization layers are keras_resnet.normalization.BatchNormalization
("keras_resnet_bn"), and optionally keras_resnet.get_model("ResNet50") ("keras_resnet",
same architecture and BN as the clone; --impls), then times training steps
(SGD momentum, sparse categorical crossentropy, ``train_on_batch``) and inference
(``predict_on_batch``) on one synthetic batch, alternating the two models round by round
so that load from other processes hits both alike. Prints one JSON line per measurement
and the median ratio per setting.

    python benchmarks/bn_resnet50.py --batch-size 16 --steps 3 --rounds 3 --precision fp32 mixed_bfloat16
"""

import argparse
import json
import statistics
import time

import keras
import numpy as np

from keras_resnet.normalization import BatchNormalization


def swap_batch_norm(model):
    """A clone of model whose BatchNormalization layers are keras_resnet's (weights copied)."""

    def clone_layer(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def build(impl, image_size):
    if impl == "keras_resnet":
        from keras_resnet import get_model

        model = get_model("ResNet50", weights=None, input_shape=(image_size, image_size, 3))
    else:
        model = keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3))
    if impl == "keras_resnet_bn":
        model = swap_batch_norm(model)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    return model


def time_steps(fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds")
    parser.add_argument("--precision", nargs="+", default=["fp32", "mixed_bfloat16"])
    parser.add_argument("--mode", nargs="+", default=["train", "infer"])
    parser.add_argument("--impls", nargs="+", default=["keras_bn", "keras_resnet_bn"],
                        help="keras_bn (first: the reference), keras_resnet_bn, keras_resnet")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, args.image_size, args.image_size, 3)).astype("float32")
    y = rng.integers(0, 1000, args.batch_size)
    summary = []
    for precision in args.precision:
        keras.mixed_precision.set_global_policy("float32" if precision == "fp32" else precision)
        models = {impl: build(impl, args.image_size) for impl in args.impls}
        for mode in args.mode:
            step = {
                impl: (lambda m=m: m.train_on_batch(x, y)) if mode == "train" else (lambda m=m: m.predict_on_batch(x))
                for impl, m in models.items()
            }
            for fn in step.values():  # trace and warm up
                fn()
                fn()
            times = {impl: [] for impl in step}
            for _ in range(args.rounds):
                for impl, fn in step.items():
                    seconds = time_steps(fn, args.steps)
                    times[impl].append(seconds)
                    print(json.dumps({"impl": impl, "precision": precision, "mode": mode,
                                      "batch_size": args.batch_size,
                                      "images_per_sec": round(args.batch_size / seconds, 2)}), flush=True)
            reference = args.impls[0]
            for impl in args.impls[1:]:
                ratios = [a / b for a, b in zip(times[reference], times[impl])]
                summary.append((precision, mode, impl, args.batch_size / statistics.median(times[impl]),
                                args.batch_size / min(times[impl]), statistics.median(ratios),
                                min(times[reference]) / min(times[impl])))
            summary.append((precision, mode, reference, args.batch_size / statistics.median(times[reference]),
                            args.batch_size / min(times[reference]), 1.0, 1.0))
        del models
        keras.backend.clear_session()
    print(f"\nratio = {args.impls[0]} time / impl time: median of per-round ratios, and best / best")
    print(f"{'precision':<16}{'mode':<7}{'impl':<17}{'median img/s':>14}{'best img/s':>12}{'ratio':>8}{'best ratio':>12}")
    for precision, mode, impl, median, best, ratio, best_ratio in summary:
        print(f"{precision:<16}{mode:<7}{impl:<17}{median:>14.2f}{best:>12.2f}{ratio:>8.2f}{best_ratio:>12.2f}")


if __name__ == "__main__":
    main()
