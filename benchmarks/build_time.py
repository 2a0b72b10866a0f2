"""Build time of our models against keras.applications, interleaved A B A B in one process.

    python benchmarks/build_time.py [--rounds 5] [--models ResNet50 ResNet50V2]

Prints one JSON line per model with the median seconds of each and the ratio
(ours / keras.applications; < 1 means we build faster).
"""

import argparse
import gc
import json
import statistics
import time

import keras

import keras_resnet


def timed(fn):
    keras.backend.clear_session()
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["ResNet50", "ResNet50V2", "ResNet152"])
    args = parser.parse_args()
    for name in args.models:
        ref_fn = getattr(keras.applications, name)
        ours_fn = getattr(keras_resnet, name)
        timed(lambda: ref_fn(weights=None))  # warm-up: imports, first-call caches
        timed(lambda: ours_fn(weights=None))
        ref, ours = [], []
        for _ in range(args.rounds):
            ref.append(timed(lambda: ref_fn(weights=None)))
            ours.append(timed(lambda: ours_fn(weights=None)))
        r, o = statistics.median(ref), statistics.median(ours)
        print(json.dumps({"model": name, "keras.applications_s": round(r, 3),
                          "keras_resnet_s": round(o, 3), "ratio": round(o / r, 3),
                          "rounds": args.rounds}), flush=True)


if __name__ == "__main__":
    main()
