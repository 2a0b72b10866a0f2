"""Write the reference that tests/test_preprocessing_mean_std.py compares against:
torchvision's own ``transforms.ToTensor()`` + ``transforms.Normalize(mean, std)`` applied to
a few 32x32 images, with the per-channel mean / std the CIFAR publishers evaluate with.

Run with an interpreter that has torch, torchvision, numpy and Pillow (never a dependency
of the package or its tests):

    python tools/make_normalize_fixtures.py

The images are four of ``tests/fixtures/cifar_reference.npz`` (three photos, one noise
image; see tools/make_cifar_fixtures.py). The mean / std are those of
``keras_resnet/weights/published.py``: chenyaofo/pytorch-cifar-models' CIFAR-10 and
CIFAR-100 (osmr/imgclsmob uses CIFAR-10's for both). Writes
``tests/fixtures/normalize_reference.npz`` (images uint8 NHWC, one float32 NHWC output per
mean / std) and ``normalize_reference.json`` (the mean / std, versions).
"""

import json
import os
import platform

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
PICK = (0, 1, 2, 6)  # chelsea, coffee, rocket, a noise image
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)),
    "cifar100": ((0.507, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)),
}


def main():
    images = np.load(os.path.join(OUT, "cifar_reference.npz"))["images"][list(PICK)]
    outputs = {}
    for name, (mean, std) in MEAN_STD.items():
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        batch = torch.stack([transform(Image.fromarray(image)) for image in images])  # N, C, H, W
        outputs[f"{name}_normalized"] = batch.numpy().transpose(0, 2, 3, 1).astype(np.float32)
    np.savez_compressed(os.path.join(OUT, "normalize_reference.npz"), images=images, **outputs)
    info = {
        "generated_by": "tools/make_normalize_fixtures.py",
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "images": f"tests/fixtures/cifar_reference.npz images {list(PICK)}, uint8 NHWC",
        "transform": "torchvision.transforms.Compose([ToTensor(), Normalize(mean, std)]) on each "
                     "PIL image, output transposed to NHWC",
        "mean_std": {name: {"mean": list(m), "std": list(s)} for name, (m, s) in MEAN_STD.items()},
    }
    with open(os.path.join(OUT, "normalize_reference.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    for key, value in outputs.items():
        print(key, value.shape, float(value.min()), float(value.max()))


if __name__ == "__main__":
    main()
