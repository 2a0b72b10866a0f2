"""In-process load test of an exported SavedModel's ``serving_default`` (issue 14).

    python benchmarks/serving_load.py [--saved-model PATH | --model ResNet50]
        [--threads 8] [--requests 500] [--batch-sizes 1 32] [--bad-every 10]

A real TF Serving binary cannot be installed on these machines, so the version is loaded
with ``tf.saved_model.load`` and called from ``--threads`` client threads, each sending
``--requests`` requests of a batch of images, first at batch 1, then at batch 32. Images
are real photos (scikit-image's bundled samples: PNG, JPEG and GIF files as they are,
and the astronaut re-encoded as WebP and BMP); every ``--bad-every``-th request carries one
bad image among good ones (text, a truncated JPEG, a 60,000 x 60,000 PNG header, a
16,383 x 16,383 WebP), which TF Serving's semantics fail as a whole.

Checked: no good request fails; every bad one is rejected with its own message; resident
memory after all requests is within 100 MB of what it was after the first 10%. Reported
(one JSON line per batch size): p50 / p99 latency per request and images per second.
Without ``--saved-model`` it exports ``--model`` with random weights to a temporary folder.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import sys
import tempfile
import threading
import time

import numpy as np

RSS_GROWTH_LIMIT_MB = 100


def photo_bytes() -> list:
    """scikit-image's bundled sample photos as encoded bytes (their own files), plus the
    astronaut as WebP and BMP."""
    import skimage
    from PIL import Image

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    names = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "retina.jpg",
             "hubble_deep_field.jpg", "camera.png", "motorcycle_left.png",
             "no_time_for_that_tiny.gif")
    photos = []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            photos.append(f.read())
    astronaut = Image.open(os.path.join(folder, "astronaut.png")).convert("RGB")
    for fmt in ("WEBP", "BMP"):
        buffer = io.BytesIO()
        astronaut.save(buffer, format=fmt)
        photos.append(buffer.getvalue())
    return photos


def bad_inputs(photos) -> list:
    """``(bytes, a piece of the message that must reject it)`` for each kind of bad input."""
    png = next(p for p in photos if p.startswith(b"\x89PNG"))
    huge_png = png[:16] + struct.pack(">II", 60000, 60000) + png[24:]
    webp = (b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00" * 4
            + (16382).to_bytes(3, "little") * 2)
    jpeg = next(p for p in photos if p.startswith(b"\xff\xd8"))
    return [
        (b"this is not an image", "is not a decodable image"),
        (huge_png, "60000x60000 pixels"),
        (webp, "16383x16383 pixels"),
        (jpeg[: len(jpeg) // 3], "JPEG"),  # truncated: the decoder's own error
    ]


def _requests(photos, bad, batch, count, bad_every, rng):
    """``count`` requests: (list of bytes, expected message or None for a good one)."""
    out = []
    for i in range(count):
        images = [photos[j] for j in rng.integers(0, len(photos), batch)]
        expected = None
        if bad_every and i % bad_every == bad_every - 1:
            data, expected = bad[(i // bad_every) % len(bad)]
            images[int(rng.integers(0, batch))] = data
        out.append((images, expected))
    return out


def _rss_mb():
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _client(serve, requests, results, progress):
    import tensorflow as tf

    for images, expected in requests:
        start = time.perf_counter()
        try:
            out = serve(image_bytes=tf.constant(images))
            error = None if out["scores"].shape[0] == len(images) else "wrong batch size"
        except tf.errors.InvalidArgumentError as e:
            error = e.message
        results.append((time.perf_counter() - start, expected, error))
        progress()


def _verdicts(results):
    good_failed = [error for _, expected, error in results if expected is None and error]
    bad_accepted = sum(1 for _, expected, error in results if expected and error is None)
    wrong_message = [(expected, error[:200]) for _, expected, error in results
                     if expected and error is not None and expected not in error]
    return good_failed, bad_accepted, wrong_message


def run_load(saved_model, *, threads=8, requests=500, batch=1, bad_every=10, seed=0,
             photos=None) -> dict:
    """Drive ``serving_default`` of ``saved_model`` (a path or a loaded object) from
    ``threads`` threads x ``requests`` requests of ``batch`` images; returns the figures
    and the checks' verdicts (``ok``)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model) if isinstance(saved_model, str) else saved_model
    serve = loaded.signatures["serving_default"]
    photos = photos or photo_bytes()
    bad = bad_inputs(photos)
    rng = np.random.default_rng(seed)
    plans = [_requests(photos, bad, batch, requests, bad_every, rng) for _ in range(threads)]
    serve(image_bytes=tf.constant(plans[0][0][0]))  # trace and warm up outside the figures
    total, done, rss = threads * requests, [0], {}
    lock = threading.Lock()

    def progress():
        with lock:
            done[0] += 1
            if done[0] == max(1, total // 10):
                rss["after_10pct"] = _rss_mb()

    results = []
    workers = [threading.Thread(target=_client, args=(serve, plan, results, progress))
               for plan in plans]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    rss["end"] = _rss_mb()
    good_failed, bad_accepted, wrong_message = _verdicts(results)
    latencies = np.array([seconds for seconds, _, _ in results]) * 1000
    growth = rss["end"] - rss["after_10pct"]
    return {
        "threads": threads, "requests": total, "batch": batch,
        "bad_requests": sum(1 for _, expected, _ in results if expected),
        "good_failed": len(good_failed), "first_good_failure": (good_failed or [None])[0],
        "bad_accepted": bad_accepted, "bad_wrong_message": wrong_message[:3],
        "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
        "images_per_s": total * batch / wall,
        "rss_mb_after_10pct": rss["after_10pct"], "rss_mb_end": rss["end"],
        "rss_growth_mb": growth,
        "ok": not good_failed and not bad_accepted and not wrong_message
              and growth < RSS_GROWTH_LIMIT_MB,
    }


def _export(model_name, folder):
    import keras

    from keras_resnet import export_saved_model, get_model

    keras.utils.set_random_seed(0)
    model = get_model(model_name, weights=None)
    return export_saved_model(model, os.path.join(folder, model_name), precision="fp32",
                              class_names=[f"class_{i}" for i in range(model.output_shape[-1])])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--saved-model", help="a version folder (default: export --model)")
    p.add_argument("--model", default="ResNet50", help="exported with random weights")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--requests", type=int, default=500, help="per thread")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--bad-every", type=int, default=10, help="every N-th request has a bad image")
    args = p.parse_args(argv)
    for name in ("threads", "requests", "bad_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer. Received: {getattr(args, name)}")
    with tempfile.TemporaryDirectory() as scratch:
        path = args.saved_model or _export(args.model, scratch)
        rows = [run_load(path, threads=args.threads, requests=args.requests, batch=batch,
                         bad_every=args.bad_every) for batch in args.batch_sizes]
    for row in rows:
        print(json.dumps(row))
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
