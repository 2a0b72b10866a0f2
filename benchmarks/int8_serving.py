"""int8 CPU serving against the fp32 and bf16 SavedModels (issue 16, item 2).

    python benchmarks/int8_serving.py [--model ResNet50] [--image-size 224] [--rounds 3]
        [--calls 20] [--batch-size 16] [--variants ...] [--skip-speed] [--skip-agreement]

**Speed.** The same model (random weights: speed does not depend on them) is written as:
``savedmodel_fp32`` and ``savedmodel_bf16`` (``keras_resnet.export_saved_model``, BN folded;
run by TensorFlow, ``predict_pixels``), ``onnx_fp32`` (``export_onnx``, ONNX Runtime),
``onnx_int8`` (``keras_resnet.export.quantize.quantize_onnx``: QDQ, ONNX Runtime) and
``tflite_int8`` (``export_tflite(quantize="int8")``: full-integer, TFLite interpreter with
XNNPACK). int8 files are calibrated on real photos (scikit-image's sample images, cropped
and resized). Each variant gets, round by round in turn (A B C ... A B C ...), ``--calls``
batch-1 calls (latency p50 / p99 over all rounds) and ``--calls`` / 4 calls at
``--batch-size`` (throughput, the median round). All use every CPU. The load monitor of
``keras-resnet benchmark`` (``keras_resnet.benchmark.quiet``) says how quiet the machine
was; a figure taken while it was not is labeled so.

**Agreement.** int8 must not change answers: two small models are trained here on real
images and judged on real images they never saw, top-1 of each int8 file against the
fp32 SavedModel: ResNet20 on scikit-learn's digits (800 train, 997 held out), and ResNet20
on 32x32 crops of scikit-image's colour photos, one class per photo (crops from the left
60% of each photo train, crops from the right 35% are held out).

Prints one JSON line per measurement and a table.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import keras_resnet  # noqa: F401  (before TensorFlow: oneDNN on, as a user's import does)
import keras
import tensorflow as tf
from keras_resnet import export, get_model
from keras_resnet.benchmark.quiet import LoadMonitor, warning
from keras_resnet.export.quantize import OnnxRunner, TFLiteRunner, quantize_onnx
from keras_resnet.utils import dtype_policy

VARIANTS = ("savedmodel_fp32", "savedmodel_bf16", "onnx_fp32", "onnx_int8", "tflite_int8")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry",
          "hubble_deep_field", "colorwheel")


def photos():
    """scikit-image's colour sample photos, uint8 RGB."""
    import skimage.data

    return [getattr(skimage.data, name)()[..., :3] for name in PHOTOS]


def photo_crops(size, per_photo, *, held_out, seed=0):
    """Square crops (side a quarter of the photo's shorter side) resized to ``size``: from
    the left 60% of each photo, or with ``held_out`` from the right 35%; label = photo."""
    rng = np.random.default_rng(seed + held_out)
    images, labels = [], []
    for label, photo in enumerate(photos()):
        h, w = photo.shape[:2]
        side = min(h, w) // 4
        lo, hi = (int(0.65 * w), w - side) if held_out else (0, int(0.6 * w) - side)
        for _ in range(per_photo):
            y, x = rng.integers(0, h - side), rng.integers(lo, hi)
            crop = tf.image.resize(photo[y : y + side, x : x + side], [size, size], antialias=True)
            images.append(crop.numpy())
            labels.append(label)
    return np.stack(images).astype("float32"), np.array(labels)


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    small = (data.images * (255.0 / 16.0)).round().astype("uint8")
    images = tf.image.resize(small[..., None], [32, 32], method="nearest").numpy()
    return np.repeat(images, 3, axis=-1).astype("float32"), data.target


def train_resnet20(images, labels, classes, epochs):
    """ResNet20, fp32, Adam; BN statistics then set from one pass over training images."""
    keras.utils.set_random_seed(0)
    with dtype_policy("fp32"):
        net = get_model("ResNet20", classes=classes, input_shape=images.shape[1:])
    x = images / 127.5 - 1.0
    net.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    net.fit(x, labels, batch_size=32, epochs=epochs, verbose=0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    net(x[:512], training=True)
    return net


def write_variants(model, folder, calibration, variants, preprocessing):
    """Export ``model`` once per variant; return name -> callable(pixels) -> probabilities."""
    names = [f"c{i}" for i in range(int(model.output_shape[-1]))]
    runners = {}
    saved = {}
    for precision in ("fp32", "bf16"):
        if f"savedmodel_{precision}" in variants or (precision == "fp32" and "tflite_int8" in variants):
            saved[precision] = export.export_saved_model(
                model, os.path.join(folder, f"sm_{precision}"), class_names=names,
                preprocessing=preprocessing, precision=precision)
            if f"savedmodel_{precision}" in variants:
                signature = tf.saved_model.load(saved[precision]).signatures["predict_pixels"]
                runners[f"savedmodel_{precision}"] = (
                    lambda p, s=signature: s(pixels=tf.constant(p))["probabilities"].numpy())
    if {"onnx_fp32", "onnx_int8"} & set(variants):
        float_onnx = export.export_onnx(model, os.path.join(folder, "fp32.onnx"), class_names=names,
                                        preprocessing=preprocessing)
        if "onnx_fp32" in variants:
            runners["onnx_fp32"] = OnnxRunner(float_onnx)
        if "onnx_int8" in variants:
            runners["onnx_int8"] = OnnxRunner(quantize_onnx(float_onnx, os.path.join(folder, "int8.onnx"),
                                                            calibration))
    if "tflite_int8" in variants:
        runners["tflite_int8"] = TFLiteRunner(export.export_tflite(
            saved["fp32"], os.path.join(folder, "int8.tflite"), quantize="int8",
            representative_images=list(calibration)))
    return {name: runners[name] for name in variants}


def time_variants(runners, image_size, *, batch_size, calls, rounds):
    """Batch-1 latencies (every call) and batch-N seconds per call (per round), interleaved."""
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, image_size, image_size, 3)).astype("float32")
    many = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    for run in runners.values():  # trace, plan, warm up
        run(one), run(one), run(many)
    latency = {name: [] for name in runners}
    per_call = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(calls):
                start = time.perf_counter()
                run(one)
                latency[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(max(1, calls // 4)):
                run(many)
            per_call[name].append((time.perf_counter() - start) / max(1, calls // 4))
    return latency, per_call


def speed(args, folder):
    model = get_model(args.model, weights=None, input_shape=(args.image_size, args.image_size, 3))
    calibration, _ = photo_crops(args.image_size, 4, held_out=False)
    runners = write_variants(model, folder, calibration, args.variants, "caffe")
    monitor = LoadMonitor().start()
    latency, per_call = time_variants(runners, args.image_size, batch_size=args.batch_size,
                                      calls=args.calls, rounds=args.rounds)
    machine = monitor.stop().report()
    base = per_call["savedmodel_fp32"] if "savedmodel_fp32" in per_call else None
    rows = []
    for name in runners:
        ms = sorted(1e3 * t for t in latency[name])
        row = {"measure": "speed", "variant": name, "model": args.model, "image_size": args.image_size,
               "batch1_p50_ms": round(float(np.percentile(ms, 50)), 2),
               "batch1_p99_ms": round(float(np.percentile(ms, 99)), 2),
               f"batch{args.batch_size}_images_per_sec": round(args.batch_size / statistics.median(per_call[name]), 2),
               "rounds": args.rounds, "calls": args.calls, "machine": machine}
        if base:
            row["throughput_vs_savedmodel_fp32"] = round(statistics.median(
                [b / t for b, t in zip(base, per_call[name])]), 3)
        rows.append(row)
    return rows, machine


def agreement(args, folder):
    rows = []
    images, labels = digits()
    photo_train, photo_labels = photo_crops(32, 160, held_out=False)
    photo_test, photo_test_labels = photo_crops(32, 60, held_out=True)
    cases = (("digits", images[:800], labels[:800], images[800:], labels[800:], 10, 2),
             ("photos", photo_train, photo_labels, photo_test, photo_test_labels, len(PHOTOS), 4))
    int8 = [v for v in args.variants if "int8" in v or v == "savedmodel_bf16"]
    for name, x, y, held, held_labels, classes, epochs in cases:
        model = train_resnet20(x, y, classes, epochs)
        runners = write_variants(model, os.path.join(folder, name), x[:200],
                                 ["savedmodel_fp32"] + int8, "tf")
        reference = runners["savedmodel_fp32"](held).argmax(-1)
        for variant in int8:
            answers = np.concatenate([runners[variant](held[i : i + 100]) for i in range(0, len(held), 100)])
            rows.append({"measure": "agreement", "dataset": name, "variant": variant, "held_out": len(held),
                         "top1_agreement_vs_fp32": round(float(np.mean(answers.argmax(-1) == reference)), 4),
                         "fp32_accuracy": round(float(np.mean(reference == held_labels)), 4)})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ResNet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=20, help="batch-1 calls per variant and round")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-agreement", action="store_true")
    args = p.parse_args()
    for name in ("image_size", "batch_size", "rounds", "calls"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer. Received: {getattr(args, name)}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_agreement:
            rows += agreement(args, folder)
        if not args.skip_speed:
            speed_rows, machine = speed(args, folder)
            rows += speed_rows
            if warning(machine):
                print(warning(machine), file=sys.stderr)
    for row in rows:
        print(json.dumps(row), flush=True)
    print_table(rows, args.batch_size)


def print_table(rows, batch_size):
    for row in rows:
        if row["measure"] == "agreement":
            print(f"{row['dataset']:<8} {row['variant']:<16} top-1 agreement with fp32 "
                  f"{100 * row['top1_agreement_vs_fp32']:.1f}% on {row['held_out']} held-out images "
                  f"(fp32 accuracy {100 * row['fp32_accuracy']:.1f}%)")
    speed_rows = [r for r in rows if r["measure"] == "speed"]
    if speed_rows:
        print(f"\n{'variant':<16} {'b1 p50 ms':>9} {'b1 p99 ms':>9} {f'b{batch_size} img/s':>10} {'vs fp32 SM':>10}")
        for r in speed_rows:
            print(f"{r['variant']:<16} {r['batch1_p50_ms']:>9.1f} {r['batch1_p99_ms']:>9.1f} "
                  f"{r[f'batch{batch_size}_images_per_sec']:>10.2f} {r.get('throughput_vs_savedmodel_fp32', 0):>10.2f}")
        machine = speed_rows[0]["machine"]
        print(f"machine: load {machine['load1_before']} before, others used "
              f"{machine['others_cpu_seconds']} CPU s of {machine['wall_seconds']} s x {machine['cpus']} CPUs "
              f"({'quiet' if machine['quiet'] else 'NOT quiet'})")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
