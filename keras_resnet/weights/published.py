"""The published weight sets each named model can start from, with their eval transforms.

Every row states only what the publisher's own source says:

- torchvision: ``torchvision/models/resnet.py`` (0.29), the ``*_Weights`` enums: URL (the
  file name ends in the first hex digits of the file's sha256, which ``torch.hub`` checks),
  ``acc@1`` and the ``ImageClassification`` preset (``crop_size=224``, ``resize_size`` 256 by
  default, 232 for V2; bilinear; ImageNet mean/std). Code license BSD-3-Clause.
- timm: ``timm/models/resnet.py`` (1.0.31) ``default_cfgs``: the release URL (its file name
  ends in 8 hex digits like torch.hub's sha256 prefix; timm does not check it itself, so we
  check it as torch.hub would, unverified here), ``crop_pct``, ``interpolation``, input size,
  mean/std and ``license``; top-1 from the model comparison table in timm's model cards on
  the Hugging Face hub, at the image size stated in ``top1_at``.

``tools/check_published_weights.py`` compares every row with the installed torchvision and
timm (all matched torchvision 0.29.1 and timm 1.0.31). None of these files can be
downloaded on the machines this package is developed on; the
converters are proven equal on random weights in the real file formats (tests/fixtures).
keras.applications' own files (``weights="imagenet"``) are in
:mod:`keras_resnet.weights.applications`.
"""

from __future__ import annotations

import dataclasses
import math
import re

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TV = "https://download.pytorch.org/models/"
# timm's GitHub release folders (ResNet Strikes Back weights, and the older ones)
_GH = "https://github.com/{}/pytorch-image-models/releases/download/v0.1-{}weights/"
_RSB, _RSB_RW, _RW = _GH.format("huggingface", "rsb-"), _GH.format("rwightman", "rsb-"), \
    _GH.format("rwightman", "")


@dataclasses.dataclass(frozen=True)
class PublishedTransform:
    """How the publisher evaluated (``resize`` and ``crop`` in pixels; the export's
    :class:`keras_resnet.export.EvalTransform` is what serving applies, derived from this by
    :func:`keras_resnet.weights.serving_transform`): resize the shorter side to ``resize``, center-crop
    ``crop`` x ``crop``, scale to [0, 1], subtract ``mean`` and divide by ``std`` (RGB)."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @property
    def crop_fraction(self) -> float:
        return self.crop / self.resize

    def as_dict(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "crop_fraction": round(self.crop_fraction, 4),
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}


def timm_transform(crop_pct: float, interpolation: str, size: int = 224) -> PublishedTransform:
    """timm's eval transform: resize to ``floor(size / crop_pct)``, center-crop ``size``."""
    return PublishedTransform(resize=math.floor(size / crop_pct), crop=size, interpolation=interpolation)


@dataclasses.dataclass(frozen=True)
class WeightSet:
    """One published checkpoint for one of our named models."""

    name: str  # e.g. "torchvision:IMAGENET1K_V2", "timm:resnet50.a1_in1k"
    model: str  # our named model, e.g. "ResNet50V1_5"
    url: str
    sha256_prefix: str  # from the file name; see the module docstring
    license: str
    top1: float
    top1_at: int  # image size the published top-1 was measured at
    transform: PublishedTransform

    @property
    def source(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _hash_of(url):
    return re.search(r"-([0-9a-f]{8,})\.pth$", url).group(1)


_TV_V1 = PublishedTransform(resize=256, crop=224, interpolation="bilinear")
_TV_V2 = PublishedTransform(resize=232, crop=224, interpolation="bilinear")


def _tv(model, version, file, top1):
    url = _TV + file
    return WeightSet(f"torchvision:IMAGENET1K_{version}", model, url, _hash_of(url),
                     "BSD-3-Clause", top1, 224, _TV_V1 if version == "V1" else _TV_V2)


def _timm(model, tag, url, top1, crop_pct, size):
    """A timm set; its top-1 is quoted at the eval size (the model card's row at that size)."""
    return WeightSet(f"timm:{tag}", model, url, _hash_of(url), "Apache-2.0", top1, size,
                     timm_transform(crop_pct, "bicubic", size))


# torchvision: (model, enum member, file name, acc@1); the URL is download.pytorch.org's
_TORCHVISION_ROWS = (
    ("ResNet18V1_5", "V1", "resnet18-f37072fd.pth", 69.758),
    ("ResNet34V1_5", "V1", "resnet34-b627a593.pth", 73.314),
    ("ResNet50V1_5", "V1", "resnet50-0676ba61.pth", 76.130),
    ("ResNet50V1_5", "V2", "resnet50-11ad3fa6.pth", 80.858),
    ("ResNet101V1_5", "V1", "resnet101-63fe2227.pth", 77.374),
    ("ResNet101V1_5", "V2", "resnet101-cd907fc2.pth", 81.886),
    ("ResNet152V1_5", "V1", "resnet152-394f9c45.pth", 78.312),
    ("ResNet152V1_5", "V2", "resnet152-f82ba261.pth", 82.284),
    ("ResNeXt50_32x4d", "V1", "resnext50_32x4d-7cdf4587.pth", 77.618),
    ("ResNeXt50_32x4d", "V2", "resnext50_32x4d-1a0047aa.pth", 81.198),
    ("ResNeXt101_32x8d", "V1", "resnext101_32x8d-8ba56ff5.pth", 79.312),
    ("ResNeXt101_32x8d", "V2", "resnext101_32x8d-110c445d.pth", 82.834),
    ("WideResNet50_2", "V1", "wide_resnet50_2-95faca4d.pth", 78.468),
    ("WideResNet50_2", "V2", "wide_resnet50_2-9ba9bcbe.pth", 81.602),
)
# timm: (model, tag, release URL, top-1, crop_pct, eval size); interpolation bicubic for all
_TIMM_ROWS = (
    ("ResNet50V1_5", "resnet50.a1_in1k", _RSB_RW + "resnet50_a1_0-14fe96d1.pth", 80.38, 0.95, 224),
    ("ResNet101V1_5", "resnet101.a1_in1k", _RSB + "resnet101_a1_0-cdcb52a9.pth", 81.5, 0.95, 224),
    ("ResNet152V1_5", "resnet152.a1_in1k", _RSB + "resnet152_a1_0-2eee8a7a.pth", 81.97, 0.95, 224),
    ("ResNeXt50_32x4d", "resnext50_32x4d.a1_in1k", _RSB + "resnext50_32x4d_a1_0-b5a91a1d.pth",
     80.53, 0.95, 224),
    ("WideResNet50_2", "wide_resnet50_2.racm_in1k", _RW + "wide_resnet50_racm-8234f177.pth",
     81.45, 0.875, 224),
    ("SEResNet50", "seresnet50.a1_in1k", _RSB + "seresnet50_a1_0-ffa00869.pth", 80.02, 0.95, 224),
    ("SEResNet50", "seresnet50.ra2_in1k", _RW + "seresnet50_ra_224-8efdb4bb.pth", 80.26, 0.875, 224),
    ("ResNet50D", "resnet50d.ra2_in1k", _RW + "resnet50d_ra2-464e36ba.pth", 80.53, 0.875, 224),
    ("ResNet50D", "resnet50d.a1_in1k", _RSB + "resnet50d_a1_0-e20cff14.pth", 80.68, 0.95, 224),
    ("ResNet101D", "resnet101d.ra2_in1k", _RW + "resnet101d_ra2-2803ffab.pth", 82.26, 0.95, 256),
    ("ResNet152D", "resnet152d.ra2_in1k", _RW + "resnet152d_ra2-5cac0439.pth", 83.14, 0.95, 256),
    ("ResNet200D", "resnet200d.ra2_in1k", _RW + "resnet200d_ra2-bdba9bf9.pth", 83.23, 0.95, 256),
)
SETS = tuple(_tv(*row) for row in _TORCHVISION_ROWS) + tuple(_timm(*row) for row in _TIMM_ROWS)


def sets_for(model: str) -> list[WeightSet]:
    """The published sets for one of our named models, best published top-1 first."""
    return sorted((s for s in SETS if s.model == model), key=lambda s: -s.top1)


def is_set_name(weights) -> bool:
    """Whether ``weights`` reads as a named set ("torchvision", "torchvision:...", "timm:...")."""
    return isinstance(weights, str) and (weights == "torchvision" or weights.startswith(
        ("torchvision:", "timm:")))


def find_set(model: str, weights: str) -> WeightSet:
    """The set ``weights`` names for ``model``; ``"torchvision"`` is the best torchvision set.
    ``ValueError`` listing the sets that exist when there is no such set."""
    rows = sets_for(model)
    if weights == "torchvision":
        match = [s for s in rows if s.source == "torchvision"][:1]
    else:
        match = [s for s in rows if s.name == weights]
    if not match:
        available = [s.name for s in rows] + (["torchvision"] if any(
            s.source == "torchvision" for s in rows) else [])
        raise ValueError(
            f"weights={weights!r} is not a published set for {model}; sets for {model}: "
            f"{available or 'none'} (see 'keras-resnet list --weights'). Received: weights={weights!r}")
    return match[0]


def eval_transform(weights: str, model: str) -> PublishedTransform:
    """The eval transform the publisher of set ``weights`` for ``model`` states."""
    return find_set(model, weights).transform


def print_table() -> None:
    """``keras-resnet list --weights``: per model, its sets, source, license and top-1."""
    from keras_resnet.specs import MODELS
    from keras_resnet.weights.applications import WEIGHTS_HASHES

    order = list(MODELS)

    print(f"{'model':<18} {'weights=':<32} {'source':<18} {'license':<13} {'top-1':>7}  eval transform")
    for name in WEIGHTS_HASHES:  # keras.applications' files, weights="imagenet"
        model = {"v2": f"ResNet{name[6:-2]}V2"}.get(name[-2:], f"ResNet{name[6:]}")
        print(f"{model:<18} {'imagenet':<32} {'keras.applications':<18} {'as keras':<13} {'-':>7}  "
              "keras.applications preprocess_input")
    for s in sorted(SETS, key=lambda s: (order.index(s.model), s.source, -s.top1)):
        t = s.transform
        top1 = f"{s.top1:.2f}" + ("" if s.top1_at == 224 else f"@{s.top1_at}")
        print(f"{s.model:<18} {s.name:<32} {s.source:<18} {s.license:<13} {top1:>7}  "
              f"resize {t.resize}, crop {t.crop}, {t.interpolation}")
