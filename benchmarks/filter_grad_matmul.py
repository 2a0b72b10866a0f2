"""The filter gradient of a 1x1 convolution, two ways: TensorFlow's kernel and one matmul (issue 16).

    python benchmarks/filter_grad_matmul.py [--model ResNet50] [--image-size 224] [--batch-size 32]
        [--precision mixed_bfloat16|fp32] [--rounds 3] [--calls 5]

A 1x1, stride-1 convolution's filter gradient is a plain matrix product: with the input
``x`` (N, H, W, Cin) and the output gradient ``dy`` (N, H, W, Cout) in NHWC, it is
``reshape(x, (-1, Cin))^T @ reshape(dy, (-1, Cout))``, with no im2col and no copy.
In the profile of a ResNet-50 training step (BENCHMARKS.md) the filter gradients run at
63% of the bf16 matmul peak while a matmul of the same size would run near it, so this
script asks, shape by shape, whether computing them as a matmul would pay.

For every distinct (height, width, Cin, Cout) among the model's 1x1 stride-1 Conv2D layers it
times ``Conv2DBackpropFilter`` (oneDNN's weight-gradient kernel when oneDNN is on) and
``tf.matmul`` on the same random tensors, alternating the two ``--rounds`` times
(median of rounds, each the mean of ``--calls`` calls), checks that they agree, and prints
ms, GFLOP/s and the speed-up per shape, the largest difference between the two results
relative to the largest value (in bf16 that is the outputs' rounding, about 2^-8), then the
total over the model's layers per step. It measures kernels alone, not a training step:
what a step would gain is at most the totals' difference.
"""

import argparse
import statistics
import time


def one_by_one_shapes(model):
    """{(height, width, cin, cout): count} over the 1x1, stride-1 Conv2D layers of ``model`` (NHWC)."""
    import keras

    shapes = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D) or layer.groups != 1:
            continue
        if tuple(layer.kernel_size) != (1, 1) or tuple(layer.strides) != (1, 1):
            continue
        _, height, width, cin = layer.input.shape
        key = (height, width, cin, layer.filters)
        shapes[key] = shapes.get(key, 0) + 1
    return shapes


def filter_gradients(x, dy):
    """The two functions compared: (TensorFlow's conv filter gradient, the matmul), both (Cin, Cout)."""
    import tensorflow as tf

    cin, cout = x.shape[-1], dy.shape[-1]

    @tf.function
    def conv():
        grad = tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=[1, 1, cin, cout], out_backprop=dy, strides=[1, 1, 1, 1], padding="VALID")
        return tf.reshape(grad, (cin, cout))

    @tf.function
    def matmul():
        return tf.matmul(tf.reshape(x, (-1, cin)), tf.reshape(dy, (-1, cout)), transpose_a=True)

    return conv, matmul


def _time(fn, calls):
    fn().numpy()
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    out.numpy()
    return (time.perf_counter() - start) / calls * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ResNet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="mixed_bfloat16", choices=("mixed_bfloat16", "fp32"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    for name in ("image_size", "batch_size", "rounds", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1. Received: {getattr(args, name)}")

    import tensorflow as tf

    from keras_resnet import get_model  # (importing keras_resnet turns oneDNN on, as for training)

    model = get_model(args.model, weights=None, input_shape=(args.image_size, args.image_size, 3))
    shapes = one_by_one_shapes(model)
    if not shapes:
        raise SystemExit(f"{args.model} has no 1x1 stride-1 Conv2D layer")
    dtype = tf.bfloat16 if args.precision == "mixed_bfloat16" else tf.float32
    n = args.batch_size
    print(f"{args.model}, {args.image_size}x{args.image_size}, batch {n}, {dtype.name}: "
          f"median of {args.rounds} rounds of {args.calls} calls")
    print("| 1x1 conv, output size (layers) | GFLOP | conv filter gradient ms (GFLOP/s) "
          "| one matmul ms (GFLOP/s) | speed-up | max difference / max value |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    total_conv = total_matmul = total_best = 0.0
    tf.random.set_seed(0)
    for (height, width, cin, cout), count in sorted(shapes.items()):  # smallest feature maps first
        x = tf.cast(tf.random.normal((n, height, width, cin)), dtype)
        dy = tf.cast(tf.random.normal((n, height, width, cout)), dtype)
        conv, matmul = filter_gradients(x, dy)
        reference, product = tf.cast(conv(), tf.float32), tf.cast(matmul(), tf.float32)
        difference = float(tf.reduce_max(tf.abs(reference - product)) / tf.reduce_max(tf.abs(reference)))
        rounds = [(_time(conv, args.calls), _time(matmul, args.calls)) for _ in range(args.rounds)]
        ms_conv = statistics.median(r[0] for r in rounds)
        ms_matmul = statistics.median(r[1] for r in rounds)
        gflop = 2 * n * height * width * cin * cout / 1e9
        total_conv += count * ms_conv
        total_matmul += count * ms_matmul
        total_best += count * min(ms_conv, ms_matmul)
        print(f"| {cin} -> {cout}, {height}x{width} ({count}) | {gflop:.1f} | {ms_conv:.2f} ({gflop / ms_conv * 1e3:.0f}) "
              f"| {ms_matmul:.2f} ({gflop / ms_matmul * 1e3:.0f}) | {ms_conv / ms_matmul:.2f}x | {difference:.3g} |")
    print(f"all {sum(shapes.values())} layers, ms per step: conv kernel {total_conv:.1f}, matmul everywhere "
          f"{total_matmul:.1f}, the faster of the two per shape {total_best:.1f} "
          f"(at most {total_conv - total_best:.1f} ms a step to gain)")
    return {"conv_ms": total_conv, "matmul_ms": total_matmul, "best_ms": total_best}


if __name__ == "__main__":
    main()
