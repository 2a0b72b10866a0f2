"""Times torchvision's ResNet in its own process, for ``keras-resnet benchmark --compare
torchvision``; imports only torch (and torchvision), never TensorFlow.

    python -m keras_resnet.benchmark.torch_worker '{"arch": "resnet50", "mode": "train",
        "batch_size": 32, "image_size": 224, "classes": 1000, "steps": 5,
        "compile": false, "amp": true}'

prints one JSON line: ``seconds_per_step``, ``forward_flops`` (2 per multiply-add of the
convolutions and linear layers, counted with forward hooks), ``source`` ("torchvision",
or "torch" where torchvision cannot be imported and :mod:`.torch_resnet` builds the same
architecture), ``parameters``, ``precision`` and ``peak_precision``.

A config with ``"job": "dataloader"`` times torchvision's input pipeline instead
(:func:`time_dataloader`, for ``benchmarks/input_pipeline.py``).

Its fastest setting per device: CUDA: float16 autocast with a GradScaler (torchvision's
reference ``--amp``), cuDNN autotuning; CPU: bfloat16 autocast. Channels-last on both.
``"amp": false`` runs float32.
"""

from __future__ import annotations

import json
import sys
import time

CONFIG_KEYS = ("arch", "mode", "batch_size", "image_size", "classes", "steps", "compile", "amp")


def build_model(arch: str, classes: int):
    """torchvision's model, or the plain-torch copy where torchvision cannot be imported."""
    try:
        import torchvision
    except Exception:  # no torchvision build for this torch (e.g. a CPU-only torch wheel)
        try:
            from keras_resnet.benchmark.torch_resnet import torch_resnet
        except ImportError:  # started by file path in an interpreter without keras_resnet
            from torch_resnet import torch_resnet
        return torch_resnet(arch, classes), "torch"
    return getattr(torchvision.models, arch)(num_classes=classes), "torchvision"


def count_forward_flops(model, x) -> int:
    """2 per multiply-add of Conv2d / Linear for one image ``x[:1]``."""
    import torch

    flops = [0]

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            flops[0] += 2 * module.weight[0].numel() * output[0].numel()
        else:
            flops[0] += 2 * module.in_features * output[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()
        model(x[:1])
    for hook in hooks:
        hook.remove()
    return flops[0]


def make_step(model, x, y, *, mode: str, device: str, amp: bool, lr: float):
    """One training step (SGD momentum 0.9, weight decay 1e-4, cross-entropy) or one forward."""
    import torch

    cuda = device == "cuda"
    amp_dtype = torch.float16 if cuda else torch.bfloat16
    if mode != "train":
        model.eval()

        def infer():
            with torch.inference_mode(), torch.autocast(device, dtype=amp_dtype, enabled=amp):
                model(x)

        return infer
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device, enabled=cuda and amp)

    def train():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return train


def run(cfg: dict) -> dict:
    """Warm up, time ``cfg["steps"]`` steps, return the result record."""
    import torch

    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"config must name {CONFIG_KEYS}. Received: config={cfg!r}")
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.backends.cudnn.benchmark = True
    model, source = build_model(cfg["arch"], cfg["classes"])
    model = model.to(device, memory_format=torch.channels_last)
    b, s = cfg["batch_size"], cfg["image_size"]
    x = torch.rand(b, 3, s, s, device=device).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg["classes"], (b,), device=device)
    flops = count_forward_flops(model, x)
    parameters = sum(p.numel() for p in model.parameters())
    if cfg["compile"]:
        model = torch.compile(model)
    step = make_step(model, x, y, mode=cfg["mode"], device=device, amp=cfg["amp"], lr=0.1 * b / 256)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(5 if cfg["compile"] else 3 if cuda else 2):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(cfg["steps"]):
        step()
    sync()
    half = "fp16" if cuda else "bf16"
    precision = (f"{half}_autocast" if cfg["amp"] else "fp32") + f"_channels_last_{device}"
    return {"seconds_per_step": (time.perf_counter() - start) / cfg["steps"],
            "forward_flops": flops, "source": source, "parameters": parameters,
            "precision": precision + ("_compiled" if cfg["compile"] else ""),
            "peak_precision": ("mixed_float16" if cuda else "mixed_bfloat16") if cfg["amp"] else "fp32"}


DATALOADER_KEYS = ("root", "batch_size", "image_size", "workers", "warmup", "batches")


def process_tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) a process and all its living descendants have used,
    from ``/proc`` (Linux): the DataLoader's worker processes count with the loader."""
    import os

    pid = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the name: state ppid ... utime (11) stime (12)
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0))[1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total / tick


def time_dataloader(cfg: dict) -> dict:
    """torchvision's ImageNet training input: ``ImageFolder`` + ``RandomResizedCrop`` +
    ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` (its reference script's
    transform) through ``DataLoader(num_workers=workers, shuffle=True)``; after
    ``warmup`` batches, ``batches`` batches are timed. Returns ``images_per_sec`` and
    ``cpu_seconds`` (of the loader and its workers, during the timed batches)."""
    import torch
    import torchvision
    from torchvision import transforms

    missing = [k for k in DATALOADER_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"config must name {DATALOADER_KEYS}. Received: config={cfg!r}")
    torch.manual_seed(0)
    transform = transforms.Compose([
        transforms.RandomResizedCrop(cfg["image_size"]), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    dataset = torchvision.datasets.ImageFolder(cfg["root"], transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg["batch_size"], shuffle=True, num_workers=cfg["workers"],
        drop_last=True, persistent_workers=cfg["workers"] > 0)

    def batches():
        while True:
            yield from loader

    stream = batches()
    for _ in range(cfg["warmup"]):
        next(stream)
    cpu, start = process_tree_cpu_seconds(), time.perf_counter()
    for _ in range(cfg["batches"]):
        next(stream)
    seconds = time.perf_counter() - start
    cpu = process_tree_cpu_seconds() - cpu
    images = cfg["batches"] * cfg["batch_size"]
    return {"images_per_sec": images / seconds, "cpu_seconds": cpu, "images": images,
            "torchvision": torchvision.__version__}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    cfg = json.loads(argv[0])
    result = time_dataloader(cfg) if cfg.get("job") == "dataloader" else run(cfg)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
