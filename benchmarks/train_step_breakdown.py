"""Where a training step's time goes: forward, backward, optimizer/metrics (issue 6).

    python benchmarks/train_step_breakdown.py [--model ResNet50] [--batch-size 16] [--image-size 224]

Times, in one process and interleaved round by round, (1) the forward pass in training mode,
(2) forward + backward (gradients of the loss), (3) the whole ``train_on_batch`` step as
``keras-resnet train`` compiles it; each as a compiled ``tf.function`` after warm-up.
Backward = (2) - (1); optimizer, metrics and the rest = (3) - (2).
"""

import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import keras_resnet
from keras_resnet import training


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="ResNet50")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    size, b = args.image_size, args.batch_size
    model = keras_resnet.get_model(args.model, input_shape=(size, size, 3), classes=1000)
    training.compile_model(model, steps_per_epoch=100, epochs=1, global_batch_size=b, num_classes=1000,
                           lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (b, size, size, 3)).astype("float32"))
    y = tf.constant(np.random.default_rng(1).integers(0, 1000, b))
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def forward():
        return model(x, training=True)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    def step():
        model.train_on_batch(x, y)

    parts = {"forward": forward, "forward_backward": forward_backward, "train_step": step}
    for fn in parts.values():  # trace and warm up
        fn()
        fn()
    times = {k: [] for k in parts}
    for _ in range(args.rounds):
        for name, fn in parts.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                out = fn()
            if out is not None:
                tf.nest.map_structure(lambda t: t.numpy(), out)
            times[name].append((time.perf_counter() - start) / args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {
        "model": args.model, "batch_size": b, "image_size": size,
        "forward_s": round(med["forward"], 3),
        "backward_s": round(med["forward_backward"] - med["forward"], 3),
        "optimizer_and_rest_s": round(med["train_step"] - med["forward_backward"], 3),
        "train_step_s": round(med["train_step"], 3),
        "images_per_sec": round(b / med["train_step"], 2),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
