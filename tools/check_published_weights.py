"""Check keras_resnet/weights/published.py against the installed torchvision and timm.

Run with an interpreter that has torchvision and timm (never a dependency of the package):

    python tools/check_published_weights.py

Every torchvision row must equal its ``*_Weights`` enum member (URL, acc@1, resize, crop,
interpolation, mean, std) and every timm row its pretrained config (URL, input size,
crop_pct, interpolation, mean, std, license). timm's top-1 figures come from its model
cards, which neither library ships, so they are not checked here.
"""

import math
import os
import sys

import timm
import torchvision.models as tvm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from keras_resnet.weights import published  # noqa: E402

TORCHVISION_ENUMS = {
    "ResNet18V1_5": "ResNet18", "ResNet34V1_5": "ResNet34", "ResNet50V1_5": "ResNet50",
    "ResNet101V1_5": "ResNet101", "ResNet152V1_5": "ResNet152",
    "ResNeXt50_32x4d": "ResNeXt50_32X4D", "ResNeXt101_32x8d": "ResNeXt101_32X8D",
    "WideResNet50_2": "Wide_ResNet50_2",
}


def matches_timm(s):
    cfg = timm.models.get_pretrained_cfg(s.name[len("timm:"):]).to_dict()
    size = cfg["input_size"][1]
    t = s.transform
    return (cfg["url"] == s.url and cfg["interpolation"] == t.interpolation and size == t.crop
            and math.floor(size / cfg["crop_pct"]) == t.resize and tuple(cfg["mean"]) == t.mean
            and tuple(cfg["std"]) == t.std and cfg["license"].lower() == s.license.lower())


def matches_torchvision(s):
    enum = getattr(tvm, TORCHVISION_ENUMS[s.model] + "_Weights")
    w = getattr(enum, s.name.split(":")[1])
    p, t = w.transforms(), s.transform
    return (w.url == s.url and w.meta["_metrics"]["ImageNet-1K"]["acc@1"] == s.top1
            and p.resize_size == [t.resize] and p.crop_size == [t.crop]
            and p.interpolation.value == t.interpolation and tuple(p.mean) == t.mean
            and tuple(p.std) == t.std)


def main():
    bad = [s.name + " " + s.model for s in published.SETS
           if not (matches_timm(s) if s.source == "timm" else matches_torchvision(s))]
    import torchvision

    print(f"{len(published.SETS)} sets checked against torchvision {torchvision.__version__}"
          f" and timm {timm.__version__}; mismatches: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
