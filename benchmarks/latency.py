"""Batch-1 latency of an exported SavedModel, as an online TF Serving user sees it (issue 16, item 4).

    python benchmarks/latency.py SAVED_MODEL_VERSION_DIR [--calls 200] [--signature serving_default]
    python benchmarks/latency.py --export ResNet50 [--precision fp32|bf16] [--calls 200]

Each measurement runs in a fresh process (TensorFlow's per-graph caches start empty, as
in a server that has just loaded a model version): load the SavedModel, optionally
replay its warm-up requests (``assets.extra/tf_serving_warmup_requests``, the
``PredictionLog`` TFRecord TF Serving runs through a version before it serves it), then
send one real photo (scikit-image's astronaut, JPEG-encoded as a client would send it)
``--calls`` times at batch 1 and report the first request's latency, p50 and p99. Both
runs, without and with the warm-up replay, are printed side by side; the warm-up file's
effect is on the first requests, not on p50. ``--export`` first writes ``--model`` with
random weights through ``keras_resnet.export_saved_model`` into a temporary folder.
The load monitor (``keras_resnet.benchmark.quiet``) labels the figures.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from keras_resnet.export.warmup import WARMUP_FILE, WARMUP_FOLDER


CHILD = r"""
import io, json, os, sys, time
import numpy as np
import keras_resnet  # noqa: F401
import tensorflow as tf
from keras_resnet.benchmark.quiet import LoadMonitor
path, signature_name, calls, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
monitor = LoadMonitor().start()
start = time.perf_counter()
signatures = tf.saved_model.load(path).signatures
signature = signatures[signature_name]
load_s = time.perf_counter() - start
replayed = 0
if warmup:  # what TF Serving does before it serves a version: every request, its signature
    from keras_resnet.export.warmup import read_warmup_requests
    start = time.perf_counter()
    for name, inputs in read_warmup_requests(path):
        signatures[name or "serving_default"](**inputs)
        replayed += 1
    warmup_s = time.perf_counter() - start
(name, spec), = signature.structured_input_signature[1].items()
if spec.dtype == tf.string:
    import skimage.data
    from PIL import Image
    buffer = io.BytesIO(); Image.fromarray(skimage.data.astronaut()).save(buffer, format="JPEG", quality=90)
    request = {name: tf.constant([buffer.getvalue()])}
else:
    request = {name: tf.constant(np.random.default_rng(0).uniform(0, 255, (1,) + tuple(spec.shape[1:])).astype("float32"))}
latencies = []
for _ in range(calls):
    start = time.perf_counter()
    out = signature(**request)
    [v.numpy() for v in out.values()]
    latencies.append(1e3 * (time.perf_counter() - start))
rest = sorted(latencies[1:])
print(json.dumps({"warmup_replayed": replayed if warmup else None, "load_s": round(load_s, 2),
                  "warmup_s": round(warmup_s, 2) if warmup else None,
                  "first_ms": round(latencies[0], 1), "second_ms": round(latencies[1], 1),
                  "p50_ms": round(float(np.percentile(rest, 50)), 2),
                  "p99_ms": round(float(np.percentile(rest, 99)), 2), "calls": calls,
                  "machine": monitor.stop().report()}))
"""


def measure(path, signature, calls, warmup):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", CHILD, path, signature, str(calls), "1" if warmup else "0"],
                          capture_output=True, text=True, env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(lines[-1])


def export(model_name, precision, folder):
    import keras_resnet  # noqa: F401
    from keras_resnet import export_saved_model, get_model

    model = get_model(model_name, weights=None)
    names = [f"class {i}" for i in range(int(model.output_shape[-1]))]
    return export_saved_model(model, os.path.join(folder, model_name), precision=precision, class_names=names)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("saved_model", nargs="?", help="a SavedModel version folder")
    p.add_argument("--export", metavar="MODEL", help="export MODEL (random weights) first")
    p.add_argument("--precision", default="fp32", help="with --export: fp32 | bf16")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    if bool(args.saved_model) == bool(args.export):
        p.error("give a SAVED_MODEL folder or --export MODEL (one of them)")
    if args.calls < 3:
        p.error(f"--calls must be at least 3. Received: {args.calls}")
    with tempfile.TemporaryDirectory() as folder:
        path = export(args.export, args.precision, folder) if args.export else args.saved_model
        has_warmup = os.path.isfile(os.path.join(path, WARMUP_FOLDER, WARMUP_FILE))
        runs = [("without warm-up", False)] + ([("with warm-up", True)] if has_warmup else [])
        rows = []
        for label, warmup in runs:
            row = {"saved_model": args.export or path, "signature": args.signature, "run": label,
                   **measure(path, args.signature, args.calls, warmup)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not has_warmup:
        print(f"# no {WARMUP_FOLDER}/{WARMUP_FILE} in this SavedModel: measured without warm-up only", file=sys.stderr)
    print(f"\n{'run':<16} {'load s':>7} {'1st ms':>8} {'2nd ms':>8} {'p50 ms':>8} {'p99 ms':>8}  machine")
    for r in rows:
        m = r["machine"]
        print(f"{r['run']:<16} {r['load_s']:>7.1f} {r['first_ms']:>8.1f} {r['second_ms']:>8.1f} "
              f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}  load {m['load1_before']}, others "
              f"{m['others_cpu_fraction']:.0%} of the CPUs ({'quiet' if m['quiet'] else 'NOT quiet'})")


if __name__ == "__main__":
    main()
