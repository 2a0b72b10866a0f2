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
    """One published checkpoint for one of our named models: a row of :data:`SETS`.

    A model loaded from a set carries it as ``model.weight_set`` (:func:`weight_set_of`),
    as timm's ``model.pretrained_cfg`` and torchvision's ``Weights.meta``.

    Attributes:
        name: ``"source:tag"``, e.g. "torchvision:IMAGENET1K_V2", "akamaster:cifar10".
        model: our named model, e.g. "ResNet50V1_5", "ResNet20".
        url: where the publisher serves the file.
        hash_prefix: the leading hex digits of the file's ``hash_algorithm`` digest, from
            the file name (see the module docstring).
        license: the publisher's license (SPDX).
        top1: the published top-1 accuracy (%), on ``dataset``'s validation / test set.
        top1_at: the image size it was measured at.
        transform: the publisher's eval transform (resize, crop, mean / std).
        classes: the classifier's outputs.
        options: builder options the publisher's architecture needs beyond the named
            model's, as ``(name, value)`` pairs (e.g. akamaster's option A shortcut with
            its zeros on both sides); :meth:`builder_options` as a dict.
        layout: how the file names its tensors (a key of
            :data:`keras_resnet.weights.convert.LAYOUTS`).
        hash_algorithm: "sha256" (torch.hub's file names) or "sha1" (osmr/imgclsmob's).
        dataset: what it was trained and evaluated on.
    """

    name: str
    model: str
    url: str
    hash_prefix: str
    license: str
    top1: float
    top1_at: int
    transform: PublishedTransform
    classes: int = 1000
    options: tuple = ()
    layout: str = "torchvision"
    hash_algorithm: str = "sha256"
    dataset: str = "ImageNet-1k"

    @property
    def source(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def file_name(self) -> str:
        """The file's published name; for a ``.zip`` download (osmr's), the file inside it,
        which the hash is of and the cache keeps."""
        return self.url.rsplit("/", 1)[-1].removesuffix(".zip")

    @property
    def zipped(self) -> bool:
        """Whether the download is a zip of :attr:`file_name` (osmr/imgclsmob's)."""
        return self.url.endswith(".zip")

    def builder_options(self) -> dict:
        """The builder options this set needs, as keyword arguments."""
        return dict(self.options)


def _hash_of(url):
    """The hex digits a publisher appends to a file name: ``resnet50-11ad3fa6.pth``,
    ``resnet20-12fca82f.th``, osmr's ``resnet20_cifar10-0597-9b0024ac.pth.zip``."""
    return re.search(r"-([0-9a-f]{8,})\.(pth|th|pt)$", url).group(1)


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


# CIFAR sets: 32x32 images as they are (no resize or crop), scaled to [0, 1] and normalised.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)
CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)


def cifar_transform(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> PublishedTransform:
    """A CIFAR publisher's eval transform: the 32x32 image, mean / std on [0, 1]."""
    return PublishedTransform(resize=32, crop=32, interpolation="bilinear", mean=mean, std=std)


# akamaster/pytorch_resnet_cifar10 (resnet.py, trainer.py, README.md): option A with the new
# zero channels on both sides (F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))),
# torch's BN epsilon 1e-5, the classifier named ``linear``, trained and tested with
# ImageNet's mean / std on [0, 1]; top-1 = 100 - the README's "Test err (this impl.)".
# The files are {"state_dict": DataParallel's "module."-prefixed tensors, "best_prec1"}.
_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
_AKAMASTER_ROWS = ((20, "12fca82f", 91.73), (32, "d509ac18", 92.63), (44, "014dd654", 93.10),
                   (56, "4bfd9763", 93.39), (110, "1d1ed7c2", 93.68), (1202, "f3b1deed", 93.82))
# chenyaofo/pytorch-cifar-models (pytorch_cifar_models/resnet.py, README.md; mean / std from
# the training logs of its "logs" branch): torchvision's layout (conv1, bn1, layerN.i,
# downsample.0 / .1 = option B's 1x1 conv and BN where the shape changes, fc), a plain
# state dict; (depth, CIFAR-10 file hash, top-1, CIFAR-100 file hash, top-1)
_CHENYAOFO = "https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/"
_CHENYAOFO_ROWS = ((20, "4118986f", 92.60, "23dac2f1", 68.83),
                   (32, "ef93fc4d", 93.53, "84213ce6", 70.16),
                   (44, "2a3cabcb", 94.01, "ffe32858", 71.63),
                   (56, "187c023a", 94.37, "f2eff4c8", 72.63))

# osmr/imgclsmob: pytorchcv (pytorchcv/models/common/model_metainfos.csv) and tf2cv
# (tensorflow2/tf2cv/models/model_store.py) publish each file as
# releases/download/{tag}/{name}-{error}-{sha1[:8]}.pth.zip (.tf2.h5.zip): a zip of one file,
# whose full SHA-1 the tables give; top-1 = 100 - error / 100. ResNet-20/56/110/1202 are
# resnet_cifar.py's basic units with option B (a 1x1 conv + BN "identity_conv" where the
# shape changes); PreResNet-164bn / 1001 are preresnet_cifar.py's pre-activation
# bottlenecks, stride on the 3x3, bare 1x1 projections from the activated input, as our v2
# (checked on equal weights, tests/test_cifar_weights.py). Not mapped: resnet164bn /
# resnet272bn / resnet542bn / resnet1001 (post-activation bottlenecks: our CIFAR v1 has
# basic units only) and preresnet20 / 56 / 110 / 1202 (pre-activation basic units: our v2
# has bottlenecks only). imgclsmob's CIFAR-10 and CIFAR-100 loaders both normalise with
# (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010) (pytorch/datasets/cifar10_cls_dataset.py).
_OSMR = "https://github.com/osmr/imgclsmob/releases/download/"
# (our model, osmr name, dataset, error, pytorchcv sha1, tag, tf2cv sha1, tag)
_OSMR_ROWS = (
    ("ResNet20", "resnet20", "cifar10", "0597", "9b0024ac4c2f374cde2c5052e0d0344a75871cdb",
     "v0.0.163", "451230e98c5da3cd24e364b76995cdf5bdd36b73", "v0.0.438"),
    ("ResNet20", "resnet20", "cifar100", "2964", "a5322afed92fa96cb7b3453106f73cf38e316151",
     "v0.0.180", "5fa28f78b6b33f507f6b79a41f7fca07f681e4a5", "v0.0.438"),
    ("ResNet56", "resnet56", "cifar10", "0452", "628c42a26fe347b84060136212e018df2bb35e0f",
     "v0.0.163", "a39ad94af7aad7adf21f41436cb8d86a948c7e90", "v0.0.438"),
    ("ResNet56", "resnet56", "cifar100", "2488", "d65f53b10ad5d124698e728432844c65261c3107",
     "v0.0.181", "8e413ab97ce41f96e02888776bc9ec71df49d909", "v0.0.438"),
    ("ResNet110", "resnet110", "cifar10", "0369", "4d6ca1fc02eaeed724f4f596011e391528536049",
     "v0.0.163", "c625643a3c10909cdfc6c955418f0fca174b8d01", "v0.0.438"),
    ("ResNet110", "resnet110", "cifar100", "2280", "d8d397a767db6d22af040223ec8ae342a088c3e5",
     "v0.0.190", "c248211b354f7058b3066c5fb4ad87b2d0bdb6a0", "v0.0.438"),
    ("ResNet1202", "resnet1202", "cifar10", "0353", "1d5a21290117903fb5fd6ba59f3f7e7da7c08836",
     "v0.0.214", "3559a9431d3ddd3ef1ee24bf2baa1b7184a21108", "v0.0.438"),
    ("ResNet1202", "resnet1202", "cifar100", "2156", "86ecd091e5ac9677bf4518c644d08eb3e1d1708a",
     "v0.0.410", "28fcf78635c21d23b018d70a812eeae2ae24ad39", "v0.0.438"),
    ("ResNet164V2", "preresnet164bn", "cifar10", "0364", "429012d412e82df7961fa071f97c938530e1b005",
     "v0.0.196", "29a459fad0f60028b48f1908970d3947728d76b0", "v0.0.439"),
    ("ResNet164V2", "preresnet164bn", "cifar100", "2018", "a8e67ca6e14f88b009d618b0e9b554312d862174",
     "v0.0.192", "c764970119e627e5c88fe3c7cb6a7d36cd7f29d0", "v0.0.439"),
    ("ResNet1001V2", "preresnet1001", "cifar10", "0265", "9fedfe5fd643e7355f1062a6db68da310c8962be",
     "v0.0.209", "978844c1315a0a3f6261393bcc954cecb85c199a", "v0.0.439"),
    ("ResNet1001V2", "preresnet1001", "cifar100", "1841", "88f14ed9df1573e98b0ec2a07009a15066855fda",
     "v0.0.283", "7481e79c54d9a32d163c740eb53310c6a5f40b01", "v0.0.439"),
)
# the source of each osmr file kind: its set name prefix, suffix and tensor layout
# (keras_resnet.weights.tf2cv reads tf2cv's files into pytorchcv's names)
OSMR_KINDS = {"pytorchcv": ("osmr", ".pth", "pytorchcv"), "tf2cv": ("osmr-tf2cv", ".tf2.h5", "pytorchcv")}


def _cifar_sets():
    for depth, digest, top1 in _AKAMASTER_ROWS:
        yield WeightSet(
            "akamaster:cifar10", f"ResNet{depth}", f"{_AKAMASTER}resnet{depth}-{digest}.th", digest,
            "BSD-2-Clause", top1, 32, cifar_transform(), classes=10,
            options=(("shortcut", "A"), ("zero_pad_side", "both"), ("bn_epsilon", 1e-5)),
            layout="akamaster",
            dataset="CIFAR-10")
    for depth, digest10, top10, digest100, top100 in _CHENYAOFO_ROWS:
        for data, digest, top1, classes, mean, std in (
                ("cifar10", digest10, top10, 10, CIFAR10_MEAN, CIFAR10_STD),
                ("cifar100", digest100, top100, 100, CIFAR100_MEAN, CIFAR100_STD)):
            yield WeightSet(
                f"chenyaofo:{data}", f"ResNet{depth}",
                f"{_CHENYAOFO}{data}_resnet{depth}-{digest}.pt", digest, "BSD-3-Clause", top1, 32,
                cifar_transform(mean, std), classes=classes,
                options=(("shortcut", "B"), ("bn_epsilon", 1e-5)),
                dataset=f"CIFAR-{classes}")
    for model, osmr, data, error, sha1_pt, tag_pt, sha1_tf, tag_tf in _OSMR_ROWS:
        classes = 100 if data == "cifar100" else 10
        for (source, suffix, layout), sha1, tag in ((OSMR_KINDS["pytorchcv"], sha1_pt, tag_pt),
                                                    (OSMR_KINDS["tf2cv"], sha1_tf, tag_tf)):
            yield WeightSet(
                f"{source}:{data}", model,
                f"{_OSMR}{tag}/{osmr}_{data}-{error}-{sha1[:8]}{suffix}.zip", sha1, "MIT",
                round(100 - int(error) / 100, 2), 32, cifar_transform(CIFAR10_MEAN, CIFAR10_STD),
                classes=classes, options=(("bn_epsilon", 1e-5),) + (
                    () if model.endswith("V2") else (("shortcut", "B"),)),
                layout=layout, hash_algorithm="sha1", dataset=f"CIFAR-{classes}")


SETS = tuple(_tv(*row) for row in _TORCHVISION_ROWS) + tuple(_timm(*row) for row in _TIMM_ROWS) \
    + tuple(_cifar_sets())
SOURCES = tuple(dict.fromkeys(s.source for s in SETS))  # "torchvision", "timm", "akamaster" ...


def sets_for(model: str) -> list[WeightSet]:
    """The published sets for one of our named models, best published top-1 first."""
    return sorted((s for s in SETS if s.model == model), key=lambda s: -s.top1)


def is_set_name(weights) -> bool:
    """Whether ``weights`` reads as a named set: a source ("torchvision", "akamaster" ...)
    or ``"source:tag"`` of one of :data:`SOURCES`."""
    return isinstance(weights, str) and weights.split(":", 1)[0] in SOURCES and (
        ":" in weights or weights in SOURCES)


def find_set(model: str, weights: str) -> WeightSet:
    """The set ``weights`` names for ``model``; a bare source name (``"torchvision"``,
    ``"akamaster"``, ``"chenyaofo"``) is that source's set of best published top-1.
    ``ValueError`` listing the sets that exist when there is no such set."""
    rows = sets_for(model)
    if weights in SOURCES:
        match = [s for s in rows if s.source == weights][:1]
    else:
        match = [s for s in rows if s.name == weights]
    if not match:
        available = [s.name for s in rows] + [src for src in SOURCES if any(
            s.source == src for s in rows)]
        raise ValueError(
            f"weights={weights!r} is not a published set for {model}; sets for {model}: "
            f"{available or 'none'} (see 'keras-resnet list --weights'). Received: weights={weights!r}")
    return match[0]


def set_of_file(path: str) -> WeightSet | None:
    """The published set whose file ``path`` is, recognised by its content (the sha256 or,
    for osmr's, SHA-1 prefix in the published file name), whatever the file is called now."""
    import zipfile

    from keras_resnet.weights.download import file_hashes, stream_hashes, zip_member

    algorithms = {s.hash_algorithm for s in SETS}
    hexes = file_hashes(path, algorithms)
    found = next((s for s in SETS if hexes[s.hash_algorithm].startswith(s.hash_prefix)), None)
    member = None if found else zip_member(path)
    if member is not None:  # osmr's download as it comes: a zip of the hashed file
        with zipfile.ZipFile(path) as z, z.open(member) as f:
            hexes = stream_hashes(f, algorithms)
        found = next((s for s in SETS if s.zipped and hexes[s.hash_algorithm].startswith(
            s.hash_prefix)), None)
    return found


def set_of_file_name(name: str) -> WeightSet | None:
    """The set published under the file name ``name`` (``"resnet20-12fca82f.th"``;
    osmr's with or without its ``.zip``), if any."""
    return next((s for s in SETS if name in (s.file_name, s.file_name + ".zip" * s.zipped)), None)


def eval_transform(weights: str, model: str) -> PublishedTransform:
    """The eval transform the publisher of set ``weights`` for ``model`` states."""
    return find_set(model, weights).transform


def print_table() -> None:
    """``keras-resnet list --weights``: per model, its sets, source, license and top-1."""
    from keras_resnet.preprocessing import describe_preprocessing
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
        if t.resize == t.crop:  # CIFAR: the image as it is
            how = f"{t.crop}x{t.crop} {s.dataset}, {describe_preprocessing({'mean': t.mean, 'std': t.std})}"
        else:
            how = f"resize {t.resize}, crop {t.crop}, {t.interpolation}"
        print(f"{s.model:<18} {s.name:<32} {s.source:<18} {s.license:<13} {top1:>7}  {how}")

