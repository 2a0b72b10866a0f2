"""Fine-tuning vs training from scratch at equal epochs, and the cost of each phase.

``grid``: ResNet-20 on the three real folders of ``benchmarks/recipe_grid.py`` (digits,
mnist5k, animals; made offline by its ``prepare``), every cell at the same number of
epochs, from the same pretrained weights (akamaster's CIFAR-10 ResNet-20:
``--weights akamaster``, or any value ``train --weights`` accepts):

- ``scratch``: no weights (the auto recipe);
- ``head``: the head alone on the frozen backbone (``--finetune head``);
- ``full``: all layers from the start at ``finetune_lr`` (``--finetune full``);
- ``two-bnfrozen`` / ``two-bnadapt``: two phases, BatchNorm frozen / adapting in phase 2;
- ``full-bnadapt``: ``full`` with BatchNorm adapting; ``full-lr0.2``: that at the recipe's own
  lr (0.2 per 256) instead of a tenth of it.

Every run is ``keras-resnet train`` through :func:`recipe_grid.run_cell` (one JSON line a
run, an interrupted grid resumes); ``table`` prints mean ± sd of the test top-1 per cell.

``phase-time``: the train-step time of each fine-tuning phase against a full training
step (the same model, batch and data, alternating rounds), and what each phase computes:
the variables that get a gradient, the optimizer's slot variables and the kernels that
carry weight decay.

Usage (from the repository root, ``nice -n 5``)::

    python benchmarks/recipe_grid.py prepare --root /tmp/recipe_data
    python benchmarks/finetune_grid.py grid --root /tmp/recipe_data --weights akamaster \
        --log finetune.jsonl --seeds 1,2,3 --epochs 6 --image-size 32
    python benchmarks/finetune_grid.py table --log finetune.jsonl
    python benchmarks/finetune_grid.py phase-time --model ResNet20 --image-size 32 --batch 128
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe_grid  # noqa: E402  (its prepared folders and its run_cell)

CELLS = {
    "scratch": [],
    # what `train --weights W` does by itself (BatchNorm frozen below a per-replica batch of 32)
    "auto": [],
    "auto-bnadapt": ["--no-freeze-bn"],
    "head": ["--finetune", "head"],
    "full": ["--finetune", "full", "--freeze-bn"],
    "full-bnadapt": ["--finetune", "full", "--no-freeze-bn"],
    # all layers at the recipe's own lr (0.2 per 256 for images <= 64 px), not a tenth of it
    "full-lr0.2": ["--finetune", "full", "--no-freeze-bn", "--finetune-lr", "0.2"],
    "full-lr0.2-bnfrozen": ["--finetune", "full", "--freeze-bn", "--finetune-lr", "0.2"],
    "two-bnfrozen": ["--finetune", "two-phase", "--freeze-bn"],
    "two-bnadapt": ["--finetune", "two-phase", "--no-freeze-bn"],
}


def cell_flags(name, weights, image_size):
    flags = ["--image-size", str(image_size)]
    return flags + ([] if name == "scratch" else ["--weights", weights, *CELLS[name]])


def grid(args):
    done = recipe_grid._done(args.log)
    original = recipe_grid.cell_flags
    for dataset in args.datasets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for cell in args.cells.split(","):
                name = f"{cell}@{args.image_size}"
                if (dataset, name, seed, args.epochs, args.precision) in done:
                    continue
                recipe_grid.cell_flags = lambda _name, c=cell: cell_flags(c, args.weights, args.image_size)
                try:
                    recipe_grid.run_cell(root=args.root, dataset=dataset, cell=name, seed=seed, epochs=args.epochs,
                                         precision=args.precision, code=args.code, runs=args.runs, log=args.log)
                finally:
                    recipe_grid.cell_flags = original


def table(log):
    rows = [json.loads(line) for line in open(log)]
    groups = {}
    for r in rows:
        if "test" in r:
            groups.setdefault((r["dataset"], r["cell"].split("@")[1], r["epochs"]), {}).setdefault(
                r["cell"].split("@")[0], []).append(100 * r["test"])
    cells = list(CELLS)
    print("| dataset | px | epochs | " + " | ".join(cells) + " |")
    print("|---" * (3 + len(cells)) + "|")
    for (dataset, px, epochs), by_cell in sorted(groups.items()):
        values = []
        for c in cells:
            t = by_cell.get(c)
            values.append("-" if not t else f"{statistics.mean(t):.1f} ± {statistics.stdev(t) if len(t) > 1 else 0:.1f}"
                          f" (n={len(t)})")
        print(f"| {dataset} | {px} | {epochs} | " + " | ".join(values) + " |")


def phase_time(args):
    """Step time per phase / a full step, alternating rounds; what each phase computes."""
    import keras
    import numpy as np

    from keras_resnet import get_model
    from keras_resnet.training.finetune import Phase, enter_phase
    from keras_resnet.training.recipe import compile_model

    size, batch = args.image_size, args.batch
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch,))
    phases = {"full training": Phase(0, 0, 1, "all", False, 0.1, 0.0),
              "phase 1 (head, frozen backbone)": Phase(0, 0, 1, "head", True, 0.1, 0.0),
              "phase 2 (all, BN frozen)": Phase(1, 0, 1, "all", True, 0.01, 0.0)}
    nets = {}
    for name, phase in phases.items():
        net = get_model(args.model, weights=None, classes=10, input_shape=(size, size, 3))
        enter_phase(net, phase)
        compile_model(net, steps_per_epoch=100, epochs=1, global_batch_size=batch, lr=phase.lr,
                      schedule="cosine", weight_decay=1e-4, jit_compile=False)
        net.optimizer.build(net.trainable_variables)
        decayed = sum(1 for w in net.trainable_weights if getattr(w, "regularizer", None) is not None)
        slots = [v for v in net.optimizer.variables if v.path.split("/")[-1] not in ("iteration", "learning_rate")]
        nets[name] = net
        print(f"{name}: {len(net.trainable_variables)} variables get gradients of {len(net.variables)}; "
              f"{len(slots)} optimizer slots ({sum(int(np.prod(v.shape)) for v in slots):,} numbers); "
              f"{decayed} kernels decayed", flush=True)
        net.train_on_batch(x, y)  # trace
    times = {name: [] for name in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            began = time.perf_counter()
            for _ in range(args.steps):
                net.train_on_batch(x, y)
            times[name].append((time.perf_counter() - began) / args.steps)
    base = statistics.median(times["full training"])
    for name, t in times.items():
        print(f"| {args.model} | {size} | {batch} | {name} | {1000 * statistics.median(t):.1f} ms | "
              f"{statistics.median(t) / base:.2f} |", flush=True)
    keras.backend.clear_session()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("grid", "table", "phase-time"))
    p.add_argument("--root", default="recipe_data")
    p.add_argument("--log", default="finetune_grid.jsonl")
    p.add_argument("--runs", default="finetune_runs")
    p.add_argument("--code", default=os.getcwd(), help="folder holding the keras_resnet package to run")
    p.add_argument("--datasets", default=",".join(recipe_grid.DATASETS))
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--weights", default="akamaster")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--model", default="ResNet20")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    args.root, args.runs, args.code = (os.path.abspath(x) for x in (args.root, args.runs, args.code))
    if args.weights not in ("akamaster", "imagenet") and os.path.exists(args.weights):
        args.weights = os.path.abspath(args.weights)
    {"grid": grid, "table": lambda a: table(a.log), "phase-time": phase_time}[args.action](args)


if __name__ == "__main__":
    main()
