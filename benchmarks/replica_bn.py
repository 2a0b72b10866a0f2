"""Step time under MirroredStrategy: BatchNorm statistics averaged over replicas, or not.

    python benchmarks/replica_bn.py [--replicas 2] [--model ResNet20] [--image-size 32]
                                    [--batch 64] [--steps 10] [--rounds 5]

keras_resnet's BatchNormalization creates ``moving_mean`` / ``moving_variance`` with
aggregation "mean" (every replica holds the mean of the replicas' updates); Keras' own
default, "none", lets each replica keep its own. Both models are built in one process on
``--replicas`` logical CPU devices (or the GPUs when there are several), with the same
weights, and trained ``--steps`` steps a round, rounds alternating A B A B. Prints one JSON
line: the median seconds a step of each and the ratio (mean / none; > 1: averaging costs).
"""

import argparse
import json
import statistics
import time

import numpy as np
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--model", default="ResNet20")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    import keras

    from keras_resnet import get_model, training
    from keras_resnet.normalization import BatchNormalization

    strategy = training.build_strategy("mirrored")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, args.image_size, args.image_size, 3)).astype("float32")
    y = rng.integers(0, 10, args.batch)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).repeat()

    def build(aggregation):
        original = BatchNormalization.add_weight
        if aggregation == "none":  # Keras' own: every replica keeps its statistics
            BatchNormalization.add_weight = keras.layers.BatchNormalization.add_weight
        try:
            keras.utils.set_random_seed(0)
            with strategy.scope():
                model = get_model(args.model, weights=None, classes=10,
                                  input_shape=(args.image_size, args.image_size, 3))
                training.compile_model(model, steps_per_epoch=args.steps, epochs=1000,
                                       global_batch_size=args.batch, strategy=strategy)
        finally:
            BatchNormalization.add_weight = original
        bn = next(v for v in model.variables if v.name == "moving_mean")
        assert bn.aggregation == aggregation, bn.aggregation
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
        return model

    models = {name: build(name) for name in ("mean", "none")}
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) / args.steps)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps(dict(replicas=strategy.num_replicas_in_sync, model=args.model, image_size=args.image_size,
                          global_batch=args.batch, step_s=median, ratio=round(median["mean"] / median["none"], 3))))


if __name__ == "__main__":
    main()
