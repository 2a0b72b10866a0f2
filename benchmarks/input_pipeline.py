"""Input pipelines side by side on one folder of real JPEG photos (issue 25, item 3).

    python benchmarks/input_pipeline.py [--folder DIR] [--cores 1,2] [--rounds 3]
        [--batches 12] [--warmup 3] [--batch-size 64] [--image-size 224]
        [--impls ours_full,ours_scaled,torchvision,dali]
        [--torch-python PY] [--dali-python PY]
    python benchmarks/input_pipeline.py --agreement    # evaluation: reduced-scale decode

**The folder.** Without ``--folder``, one is written to a temporary folder from real photos
that registry packages ship: scikit-image's colour samples (astronaut, chelsea, coffee,
rocket, hubble_deep_field, retina, immunohistochemistry), scikit-learn's two sample
images (china, flower) and Matplotlib's grace_hopper. Each becomes one class of
``--per-photo`` crops (a random window of half to all of the photo, aspect 4:3, every
third one portrait 3:4), resized to 500 x 375 (375 x 500) and re-encoded as JPEG quality
90 with 4:2:0 chroma: 480 files by default, the size of an average ImageNet photo.

**The pipelines**, each the ImageNet training input at ``--image-size`` (random resized
crop, scale 0.08-1, aspect 3/4-4/3, horizontal flip, float32 normalized batches):

- ``ours_full``: ``ImageData.train_dataset(jpeg_decode="full")``, decoding every whole
  file (the path before issue 25);
- ``ours_scaled``: the default, ``jpeg_decode="scaled"``: crop drawn from the JPEG header,
  only the window decoded, DCT-domain downscaling where the window is at least twice the
  output (``keras_resnet.data.jpeg``);
- ``torchvision``: ``ImageFolder`` + ``RandomResizedCrop`` + ``RandomHorizontalFlip`` +
  ``ToTensor`` + ``Normalize`` through ``DataLoader(num_workers=N)``, run by
  ``keras_resnet.benchmark.torch_worker`` in ``--torch-python``;
- ``dali``: NVIDIA DALI's CPU pipeline (``fn.readers.file``,
  ``fn.decoders.image_random_crop``, ``fn.resize`` with antialiasing,
  ``fn.crop_mirror_normalize``; ``device_id=None``), in ``--dali-python`` where
  ``nvidia.dali`` imports; skipped with the reason where it does not.

**Cores.** Each run is its own process pinned with ``taskset`` to the first N cores, and
each pipeline is given N threads: our tf.data private thread pool and autotune CPU budget
(``threads=N``), torchvision's ``num_workers=N``, DALI's ``num_threads=N``. The
implementations and core counts alternate round by round (A B C ... A B C ...), so load
from other processes hits them alike; ratios are the median of per-round ratios.

**Reported** per implementation and core count: img/s (median round), img/s per core,
CPU seconds per 1,000 images (CPU time of the process and its worker processes during the
timed batches: the figure least disturbed by a shared machine) and the ratio to
torchvision in the same round. The load monitor of ``keras-resnet benchmark``
(``keras_resnet.benchmark.quiet``) says how quiet the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPLS = ("ours_full", "ours_scaled", "torchvision", "dali")
PHOTO_SIZE = (500, 375)  # width, height of the landscape files
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry")
HERE = os.path.abspath(__file__)


# ----------------------------------------------------------------------- the folder


def source_photos() -> dict:
    """{name: uint8 RGB array} of the real photos that installed registry packages ship."""
    import matplotlib
    import numpy as np
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)()[..., :3] for name in SKIMAGE_PHOTOS}
    china, flower = load_sample_images().images
    photos.update(china=china, flower=flower)
    hopper = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    photos["grace_hopper"] = np.asarray(Image.open(hopper).convert("RGB"))
    return photos


def make_photo_folder(root: str, *, per_photo: int = 48, size: tuple = PHOTO_SIZE,
                      seed: int = 0) -> int:
    """Write ``root/<photo>/<i>.jpg``: ``per_photo`` crops of each source photo (half to
    all of it, 4:3, every third one 3:4), resized to ``size`` (transposed for portrait),
    JPEG quality 90, 4:2:0. Returns the number of files."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    count = 0
    for name, photo in source_photos().items():
        os.makedirs(os.path.join(root, name), exist_ok=True)
        height, width = photo.shape[:2]
        for i in range(per_photo):
            portrait = i % 3 == 2
            aspect = 3 / 4 if portrait else 4 / 3
            area = rng.uniform(0.5, 1.0) * height * width
            w = min(width, int(round((area * aspect) ** 0.5)))
            h = min(height, int(round(w / aspect)))
            w = min(w, int(round(h * aspect)))
            y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            out = size[::-1] if portrait else size
            crop = Image.fromarray(photo[y:y + h, x:x + w]).resize(out, Image.BICUBIC)
            crop.save(os.path.join(root, name, f"{i:03d}.jpg"), quality=90, subsampling=2)
            count += 1
    return count


# ---------------------------------------------------------------------------- workers


def time_ours(cfg: dict) -> dict:
    """``ImageData.train_dataset`` over the folder: images/s and CPU seconds."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_resnet.benchmark.torch_worker import process_tree_cpu_seconds
    from keras_resnet.data import load_data

    data = load_data(data_dir=cfg["root"], holdout_fraction=0.05)
    batch = cfg["batch_size"]
    per_epoch = data.steps_per_epoch(batch)
    epochs = -(-(cfg["warmup"] + cfg["batches"]) // per_epoch) + 1
    ds = data.train_dataset(batch, image_size=cfg["image_size"], preprocessing="torch",
                            jpeg_decode=cfg["jpeg_decode"], threads=cfg["threads"],
                            epochs=epochs, seed=0)
    stream = iter(ds)
    for _ in range(cfg["warmup"]):
        next(stream)
    cpu, start = process_tree_cpu_seconds(), time.perf_counter()
    for _ in range(cfg["batches"]):
        images, _ = next(stream)
    images.numpy()
    seconds = time.perf_counter() - start
    n = cfg["batches"] * batch
    return {"images_per_sec": n / seconds, "cpu_seconds": process_tree_cpu_seconds() - cpu,
            "images": n}


def time_dali(cfg: dict) -> dict:
    """NVIDIA DALI's CPU pipeline with the same augmentation: images/s and CPU seconds."""
    from nvidia import dali
    from nvidia.dali import fn, types

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "keras_resnet", "benchmark"))
    from torch_worker import (
        process_tree_cpu_seconds,  # stdlib only: no keras_resnet import here
    )

    mean = [0.485 * 255, 0.456 * 255, 0.406 * 255]
    std = [0.229 * 255, 0.224 * 255, 0.225 * 255]

    @dali.pipeline_def(batch_size=cfg["batch_size"], num_threads=cfg["threads"], device_id=None,
                       seed=0, prefetch_queue_depth=2)
    def pipeline():
        files, labels = fn.readers.file(file_root=cfg["root"], random_shuffle=True)
        images = fn.decoders.image_random_crop(files, device="cpu", output_type=types.RGB,
                                               random_aspect_ratio=[3 / 4, 4 / 3],
                                               random_area=[0.08, 1.0])
        images = fn.resize(images, resize_x=cfg["image_size"], resize_y=cfg["image_size"],
                           antialias=True)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                          mean=mean, std=std, mirror=fn.random.coin_flip())
        return images, labels

    pipe = pipeline()
    pipe.build()
    for _ in range(cfg["warmup"]):
        pipe.run()
    cpu, start = process_tree_cpu_seconds(), time.perf_counter()
    for _ in range(cfg["batches"]):
        pipe.run()
    seconds = time.perf_counter() - start
    n = cfg["batches"] * cfg["batch_size"]
    return {"images_per_sec": n / seconds, "cpu_seconds": process_tree_cpu_seconds() - cpu,
            "images": n, "dali": dali.__version__}


def worker_main(kind: str, cfg: dict) -> int:
    result = time_ours(cfg) if kind == "ours" else time_dali(cfg)
    print(json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------- evaluation: reduced-scale decode


def _load_script(name: str):
    import importlib.util

    path = os.path.join(os.path.dirname(HERE), f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _eval_pair(encoded: bytes, size: int) -> tuple:
    """(full decode, reduced-scale decode, Pillow's Resize + CenterCrop), float32 0..255,
    of one JPEG through the "center" evaluation transform at ``size``."""
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from keras_resnet.data.transforms import (
        CENTER_CROP_FRACTION,
        eval_image_encoded,
    )

    full, scaled = (eval_image_encoded(tf.constant(encoded), "center", size, mode).numpy()
                    for mode in ("full", "scaled"))
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    scale = round(size / CENTER_CROP_FRACTION) / min(image.size)
    new = (round(image.size[0] * scale), round(image.size[1] * scale))
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    pillow = np.asarray(image.resize(new, Image.BILINEAR), np.float32)[top:top + size, left:left + size]
    return full, scaled, pillow


def agreement(args) -> int:
    """Evaluation with ``jpeg_decode="scaled"`` against the full decode on real photos.

    1. Pixels at 224: every source photo, JPEG quality 90, with the DCT level the
       evaluation rule picks (``keras_resnet.data.jpeg.EVAL_HEADROOM``), the level a rule
       without headroom would pick, and for each: the mean / max absolute difference of
       the two center crops, and each one's mean distance to Pillow's ``Resize(256)`` +
       ``CenterCrop(224)`` (torchvision's evaluation transform).
    2. Predictions: no published ImageNet classifier can be downloaded here, so a
       ResNet20 is trained here (``benchmarks/int8_serving.py``'s recipe, at
       ``--agreement-size``: crops of scikit-image's photos, one class per photo, from
       the left 60% of each photo) and evaluated on held-out crops from the right 35%,
       written as JPEG files at their full size (75-352 pixels a side): top-1 agreement
       of the two decodes, and each one's accuracy. At 16 pixels every file is 4-20x
       the resized side, as a 1,000-4,000 pixel photo is at 224, so every one of them
       takes the reduced decode.
    """
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from keras_resnet.data import jpeg

    rows = []
    for name, photo in source_photos().items():
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, "JPEG", quality=90)
        shape = tf.constant(photo.shape[:2], tf.int32)
        resized = tf.constant([256, 256], tf.int32)
        levels = [int(jpeg.dct_level(shape, resized, "scaled", h)) for h in (jpeg.EVAL_HEADROOM, 1)]
        full, scaled, pillow = _eval_pair(buffer.getvalue(), 224)
        diff = np.abs(scaled - full)
        rows.append({"photo": name, "size": list(photo.shape[:2]), "level": levels[0],
                     "level_without_headroom": levels[1],
                     "mean_abs_diff": round(float(diff.mean()), 3), "max_abs_diff": round(float(diff.max()), 1),
                     "full_vs_pillow": round(float(np.abs(full - pillow).mean()), 3),
                     "scaled_vs_pillow": round(float(np.abs(scaled - pillow).mean()), 3)})
        print(json.dumps(rows[-1]), flush=True)
    int8 = _load_script("int8_serving")
    size = args.agreement_size
    images, labels = int8.photo_crops(size, args.agreement_train, held_out=False)
    model = int8.train_resnet20(images, labels, len(int8.PHOTOS), args.agreement_epochs)
    rng = np.random.default_rng(1)
    batches = {"full": [], "scaled": []}
    truth = []
    for label, photo in enumerate(int8.photos()):
        h, w = photo.shape[:2]
        side = min(h, w) // 4
        for _ in range(args.agreement_test):
            y, x = rng.integers(0, h - side), rng.integers(int(0.65 * w), w - side)
            buffer = io.BytesIO()
            Image.fromarray(photo[y:y + side, x:x + side]).save(buffer, "JPEG", quality=90)
            full, scaled, _ = _eval_pair(buffer.getvalue(), size)
            batches["full"].append(full)
            batches["scaled"].append(scaled)
            truth.append(label)
    top1 = {mode: np.argmax(model.predict(np.stack(x) / 127.5 - 1.0, verbose=0), axis=-1)
            for mode, x in batches.items()}
    truth = np.array(truth)
    result = {"held_out_images": len(truth),
              "top1_agreement": round(float(np.mean(top1["full"] == top1["scaled"])), 4),
              "accuracy_full": round(float(np.mean(top1["full"] == truth)), 4),
              "accuracy_scaled": round(float(np.mean(top1["scaled"] == truth)), 4),
              "image_size": size, "mean_abs_diff": round(float(np.mean(np.abs(np.stack(batches["full"]) - np.stack(batches["scaled"])))), 3)}
    print(json.dumps(result), flush=True)
    print("| photo | size | 1/2**level | scaled vs full: mean / max abs diff (0..255) | full vs Pillow | scaled vs Pillow |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['photo']} | {r['size'][0]}x{r['size'][1]} | {r['level']} | {r['mean_abs_diff']} / {r['max_abs_diff']} | "
              f"{r['full_vs_pillow']} | {r['scaled_vs_pillow']} |")
    return 0


# -------------------------------------------------------------------------- the runs


def pin(cores: int) -> tuple:
    return ("taskset", "-c", ",".join(str(c) for c in range(cores)))


def run_json(command: list, env: dict | None = None) -> dict:
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{command[:3]} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def run_once(impl: str, cores: int, args) -> dict:
    common = {"root": args.folder, "batch_size": args.batch_size, "image_size": args.image_size,
              "warmup": args.warmup, "batches": args.batches}
    if impl == "torchvision":
        from keras_resnet.benchmark.runner import run_torch_worker

        cfg = {**common, "job": "dataloader", "workers": cores}
        return run_torch_worker(args.torch_python, cfg, prefix=pin(cores))
    if impl == "dali":
        cfg = {**common, "threads": cores}
        return run_json([*pin(cores), args.dali_python, HERE, "--worker", "dali", json.dumps(cfg)])
    cfg = {**common, "threads": cores, "jpeg_decode": impl.split("_", 1)[1]}
    root = os.path.dirname(os.path.dirname(HERE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    return run_json([*pin(cores), sys.executable, HERE, "--worker", "ours", json.dumps(cfg)], env)


def available(impl: str, args) -> str | None:
    """None when ``impl`` can run here, else why not."""
    probes = {"torchvision": (args.torch_python, "import torch, torchvision"),
              "dali": (args.dali_python, "import nvidia.dali")}
    if impl not in probes:
        return None
    python, code = probes[impl]
    if not python:
        return f"no interpreter given (--{impl.replace('vision', '')}-python)"
    probe = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1]


def summarize(results: dict, impls: list, core_counts: list) -> list:
    rows = []
    for cores in core_counts:
        for impl in impls:
            runs = results[impl, cores]
            ips = [r["images_per_sec"] for r in runs]
            row = {"impl": impl, "cores": cores, "rounds": len(runs),
                   "images_per_sec": round(statistics.median(ips), 1),
                   "images_per_sec_per_core": round(statistics.median(ips) / cores, 1),
                   "images_per_sec_rounds": [round(v, 1) for v in ips],
                   "cpu_seconds_per_1000": round(statistics.median(
                       1000 * r["cpu_seconds"] / r["images"] for r in runs), 2)}
            if "torchvision" in impls and impl != "torchvision":
                ref = results["torchvision", cores]
                row["vs_torchvision"] = round(statistics.median(
                    a["images_per_sec"] / b["images_per_sec"] for a, b in zip(runs, ref)), 3)
                row["cpu_vs_torchvision"] = round(statistics.median(
                    (b["cpu_seconds"] / b["images"]) / (a["cpu_seconds"] / a["images"])
                    for a, b in zip(runs, ref)), 3)
            rows.append(row)
    return rows


def table(rows: list) -> str:
    lines = ["| pipeline | cores | img/s (median round) | img/s per core | CPU s / 1,000 img "
             "| vs torchvision, img/s (same rounds) | vs torchvision, per CPU second |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['cores']} | {r['images_per_sec']:,.0f} | "
                     f"{r['images_per_sec_per_core']:,.0f} | {r['cpu_seconds_per_1000']} | "
                     f"{r.get('vs_torchvision', '-')} | {r.get('cpu_vs_torchvision', '-')} |")
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help="a folder of class subfolders of JPEGs (default: "
                        "written from the packages' photos into a temporary folder)")
    parser.add_argument("--per-photo", type=int, default=48)
    parser.add_argument("--cores", default=None, help="core counts, e.g. 1,2 (default: 1 to all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--dali-python", default=sys.executable)
    parser.add_argument("--agreement", action="store_true",
                        help="instead of timing: evaluation with the reduced-scale decode vs the full decode")
    parser.add_argument("--agreement-train", type=int, default=150, help="training crops per photo")
    parser.add_argument("--agreement-test", type=int, default=40, help="held-out crops per photo")
    parser.add_argument("--agreement-epochs", type=int, default=8)
    parser.add_argument("--agreement-size", type=int, default=16, help="evaluation size of the trained model")
    args = parser.parse_args(argv)
    if args.agreement:
        return agreement(args)
    if args.worker:
        return worker_main(args.worker[0], json.loads(args.worker[1]))
    from keras_resnet.benchmark.quiet import LoadMonitor, warning

    impls = [i for i in args.impls.split(",") if i]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        parser.error(f"--impls: unknown {unknown}; choose from {IMPLS}")
    core_counts = ([int(c) for c in args.cores.split(",")] if args.cores
                   else list(range(1, (os.cpu_count() or 1) + 1)))
    for impl in list(impls):
        why = available(impl, args)
        if why:
            print(f"# {impl} skipped: {why}", flush=True)
            impls.remove(impl)
    with tempfile.TemporaryDirectory() as tmp:
        if args.folder is None:
            args.folder = os.path.join(tmp, "photos")
            count = make_photo_folder(args.folder, per_photo=args.per_photo)
            print(f"# wrote {count} JPEG photos ({PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}) to {args.folder}",
                  flush=True)
        monitor = LoadMonitor()
        monitor.start()
        results = {(impl, cores): [] for impl in impls for cores in core_counts}
        for round_index in range(args.rounds):
            for cores in core_counts:
                for impl in impls:
                    result = run_once(impl, cores, args)
                    results[impl, cores].append(result)
                    print(json.dumps({"round": round_index, "impl": impl, "cores": cores,
                                      **result}), flush=True)
        machine = monitor.stop().report()
    rows = summarize(results, impls, core_counts)
    for row in rows:
        print(json.dumps({**row, "machine": machine}), flush=True)
    message = warning(machine)
    if message:
        print(message, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
