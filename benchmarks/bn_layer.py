"""One BatchNormalization layer on ResNet-50 activation shapes: Keras' vs keras_resnet's fused.

Times forward+backward in training mode (tf.GradientTape inside tf.function) and the
forward pass in inference mode, alternating the two layers round by round. Prints one
JSON line per setting with milliseconds per call and the ratio (Keras / ours).

    python benchmarks/bn_layer.py --batch-size 16 --rounds 5 --repeats 5
"""

import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.normalization import BatchNormalization

# (H, W, C) of ResNet-50's BN inputs at 224x224: stem, then the widest BN of each stage
SHAPES = [(112, 112, 64), (56, 56, 256), (28, 28, 512), (14, 14, 1024), (7, 7, 2048)]


def make_step(layer, mode):
    @tf.function
    def step(x):
        if mode == "infer":
            return tf.reduce_sum(tf.cast(layer(x, training=False), "float32"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x, training=True), "float32"))
        grads = tape.gradient(loss, [x] + [w.value for w in layer.trainable_weights])
        # use every gradient, or tf.function prunes the input gradient of the unfused layer
        return tf.add_n([tf.reduce_sum(tf.cast(g, "float32")) for g in grads])

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    for dtype in args.dtype:
        policy = "float32" if dtype == "float32" else f"mixed_{dtype}"
        for shape in SHAPES:
            x = tf.cast(tf.random.normal((args.batch_size,) + shape), dtype)
            for mode in ("train", "infer"):
                steps = {}
                for name, cls in (("keras", keras.layers.BatchNormalization), ("fused", BatchNormalization)):
                    layer = cls(dtype=policy)
                    layer.build(x.shape)
                    steps[name] = make_step(layer, mode)
                    steps[name](x).numpy()  # trace, warm up
                times = {name: [] for name in steps}
                for _ in range(args.rounds):
                    for name, step in steps.items():
                        start = time.perf_counter()
                        for _ in range(args.repeats):
                            result = step(x)
                        result.numpy()
                        times[name].append((time.perf_counter() - start) / args.repeats)
                ratios = [a / b for a, b in zip(times["keras"], times["fused"])]
                print(json.dumps({
                    "dtype": dtype, "shape": [args.batch_size, *shape], "mode": mode,
                    "keras_ms": round(1e3 * statistics.median(times["keras"]), 2),
                    "fused_ms": round(1e3 * statistics.median(times["fused"]), 2),
                    "ratio": round(statistics.median(ratios), 2),
                }), flush=True)


if __name__ == "__main__":
    main()
