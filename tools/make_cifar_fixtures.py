"""Write the reference logits that tests/test_cifar_weights.py compares against: the CIFAR
publishers' own model code, run on a fixed batch of 32x32 images.

Run with an interpreter that has torch, numpy, Pillow and scikit-image (never a dependency
of the package or its tests), with the publishers' checkouts given on the command line
(their code is imported from there, never copied into this repository):

    python tools/make_cifar_fixtures.py --akamaster CHECKOUT --chenyaofo CHECKOUT \
        --pytorchcv CHECKOUT

- akamaster/pytorch_resnet_cifar10 (``resnet.py``): its real published ResNet-20 file,
  ``tests/fixtures/akamaster/resnet20-12fca82f.th``, loaded as its ``trainer.py`` does.
- chenyaofo/pytorch-cifar-models (``pytorch_cifar_models/resnet.py``) and osmr's pytorchcv
  (``pytorchcv/models/resnet_cifar.py``, ``preresnet_cifar.py``): their models with every
  tensor set to ``tests/torch_files.tensor_for(name, shape)`` (deterministic random values
  the tests regenerate, then write in the publishers' real file layouts).

The batch: scikit-image's colour sample photos resized to 32x32 (Pillow, bilinear with
antialiasing) and a few uniform-noise images, as uint8; each publisher's eval transform
(scale to [0, 1], its mean / std) is applied before its model. Writes
``tests/fixtures/cifar_reference.npz`` (images, logits) and ``cifar_reference.json``
(tensor manifests, versions, what was checked).
"""

import argparse
import hashlib
import importlib
import json
import os
import platform
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.torch_files import tensor_for  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures")
AKAMASTER_FILE = os.path.join(OUT, "akamaster", "resnet20-12fca82f.th")
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "immunohistochemistry", "retina")
NOISE = 2
# the publishers' eval mean / std (see keras_resnet/weights/published.py for the sources)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201))
CIFAR100 = ((0.507, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761))


def images():
    from PIL import Image
    from skimage import data

    batch = [np.asarray(Image.fromarray(getattr(data, name)()).resize((32, 32), Image.BILINEAR))
             for name in PHOTOS]
    rng = np.random.default_rng(2026)
    batch += [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(NOISE)]
    return np.stack(batch).astype(np.uint8)


def run(model, batch, mean_std):
    mean, std = (np.asarray(v, np.float32) for v in mean_std)
    x = (batch.astype(np.float32) / 255.0 - mean) / std
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def fill(model):
    """Every tensor of ``model`` set to ``tensor_for(name, shape)``; the manifest."""
    state = model.state_dict()
    manifest = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()]
    model.load_state_dict({k: torch.from_numpy(tensor_for(k, shape, dtype))
                           for k, shape, dtype in manifest})
    return manifest


def import_from(checkout, module):
    sys.path.insert(0, os.path.abspath(checkout))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


def akamaster(checkout, batch):
    resnet = import_from(checkout, "resnet")
    with open(AKAMASTER_FILE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest.startswith("12fca82f"), digest
    checkpoint = torch.load(AKAMASTER_FILE, map_location="cpu", weights_only=False)
    model = resnet.resnet20()
    # trainer.py wraps the model in DataParallel before saving: "module." on every key
    model.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()})
    return {"akamaster_resnet20": run(model, batch, IMAGENET)}, {
        "akamaster_resnet20": {"file": os.path.basename(AKAMASTER_FILE), "sha256": digest,
                               "best_prec1": float(checkpoint["best_prec1"])}}


def chenyaofo(checkout, batch):
    models = import_from(checkout, "pytorch_cifar_models")
    logits, meta = {}, {}
    for data, mean_std in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        key = f"chenyaofo_{data}_resnet20"
        model = getattr(models, f"{data}_resnet20")()
        meta[key] = {"manifest": fill(model)}
        logits[key] = run(model, batch, mean_std)
    return logits, meta


def pytorchcv(checkout, batch):
    """osmr's pytorchcv: its published ResNet-20 (option B) on CIFAR-10, and its PreResNet
    bottleneck builder at depth 20 (the layout of preresnet164bn / preresnet1001, two units
    per stage) on CIFAR-100; both with CIFAR-10's mean / std, as imgclsmob evaluates."""
    resnet_cifar = import_from(checkout, "pytorchcv.models.resnet_cifar")
    preresnet_cifar = import_from(checkout, "pytorchcv.models.preresnet_cifar")
    models = {
        "pytorchcv_resnet20_cifar10": resnet_cifar.resnet20_cifar10(),
        "pytorchcv_preresnet20bn_cifar100": preresnet_cifar.get_preresnet_cifar(
            num_classes=100, blocks=20, bottleneck=True),
    }
    logits, meta = {}, {}
    for key, model in models.items():
        meta[key] = {"manifest": fill(model)}
        logits[key] = run(model, batch, CIFAR10)
    return logits, meta


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--akamaster", required=True, help="a checkout of akamaster/pytorch_resnet_cifar10")
    p.add_argument("--chenyaofo", required=True, help="a checkout of chenyaofo/pytorch-cifar-models")
    p.add_argument("--pytorchcv", required=True, help="a checkout of osmr/pytorchcv")
    args = p.parse_args()
    torch.manual_seed(0)
    batch = images()
    logits, meta = {}, {}
    for fn, checkout in ((akamaster, args.akamaster), (chenyaofo, args.chenyaofo),
                         (pytorchcv, args.pytorchcv)):
        more_logits, more_meta = fn(checkout, batch)
        logits.update(more_logits)
        meta.update(more_meta)
    np.savez_compressed(os.path.join(OUT, "cifar_reference.npz"), images=batch,
                        **{f"{k}_logits": v.astype(np.float32) for k, v in logits.items()})
    info = {
        "generated_by": "tools/make_cifar_fixtures.py",
        "torch": torch.__version__, "python": platform.python_version(),
        "images": {"photos": [f"skimage.data.{n}" for n in PHOTOS], "noise": NOISE,
                   "resize": "Pillow bilinear to 32x32"},
        "models": meta,
        "checked": "each publisher's own model class built from its checkout, eval mode, fp32 CPU",
    }
    with open(os.path.join(OUT, "cifar_reference.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    for k, v in logits.items():
        print(k, v.shape, "argmax", v.argmax(1).tolist())


if __name__ == "__main__":
    main()
