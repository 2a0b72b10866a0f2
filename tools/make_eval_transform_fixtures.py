"""Write the reference images that tests/test_eval_transform.py compares the pipeline's
evaluation transform against: torchvision's and timm's own eval transforms, run on real
photos.

Run with an interpreter that has torch, torchvision, timm and scikit-image (never a
dependency of the package or its tests):

    python tools/make_eval_transform_fixtures.py

The photos are scikit-image's colour samples (``skimage.data``: astronaut 512x512,
chelsea 300x451, coffee 400x600, rocket 427x640), uint8 RGB, as the tests load them. Each
goes through, at an output of :data:`SIZE` pixels (224 scaled down to keep the fixture
small; every resize scaled the way each library scales it):

- ``torchvision_v2``: ``ResNet50_Weights.IMAGENET1K_V2``'s preset,
  ``ImageClassification(crop_size, resize_size)`` at ``crop_size=SIZE``,
  ``resize_size=round(SIZE * 232 / 224)``: ``F.resize(..., BILINEAR, antialias=True)`` of
  the uint8 tensor (the preset's own code path), then ``F.center_crop``.
- ``torchvision_v1``: the same with ``resize_size=round(SIZE * 256 / 224)`` (V1's 0.875,
  our pipeline's default for the "imagenet" augmentation).
- ``timm_bicubic_095``: ``timm.data.resolve_data_config({"input_size": (3, SIZE, SIZE)},
  model=timm.create_model("resnet50.a1_in1k"))`` (crop_pct 0.95, bicubic) and
  ``create_transform(**config)`` on the PIL image: ``Resize(floor(SIZE / 0.95))`` in
  Pillow's bicubic + ``CenterCrop(SIZE)``, the steps before ``ToTensor`` / ``Normalize``.

Writes ``tests/fixtures/eval_transform_reference.npz``: one uint8 ``[SIZE, SIZE, 3]``
array per ``<transform>/<photo>``, and ``meta`` (JSON: sizes, the transforms as printed,
the sha256 of each source photo, versions).
"""

import hashlib
import json
import math
import os
import platform

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval_transform_reference.npz")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
SIZE = 64


def photo(name):
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def torchvision_preset(pixels, resize_size):
    """ImageClassification's resize and crop on the uint8 CHW tensor, as its forward runs them."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F
    from torchvision.transforms._presets import ImageClassification

    preset = ImageClassification(crop_size=SIZE, resize_size=resize_size)
    assert preset.interpolation == InterpolationMode.BILINEAR and preset.antialias
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    out = F.resize(tensor, preset.resize_size, interpolation=preset.interpolation, antialias=preset.antialias)
    out = F.center_crop(out, preset.crop_size)
    return out.permute(1, 2, 0).numpy(), repr(preset)


def timm_eval(pixels):
    """timm's eval transform of a crop_pct 0.95 bicubic model, up to ToTensor, on a PIL image."""
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("resnet50.a1_in1k", pretrained=False)
    config = resolve_data_config({"input_size": (3, SIZE, SIZE)}, model=model)
    assert (config["crop_pct"], config["interpolation"], config["crop_mode"]) == (0.95, "bicubic", "center")
    transform = create_transform(**config)
    steps = transform.transforms[:-2]  # Resize, CenterCrop (then MaybeToTensor, Normalize)
    assert steps[0].size == math.floor(SIZE / 0.95), steps
    image = Image.fromarray(pixels)
    for step in steps:
        image = step(image)
    return np.asarray(image, dtype=np.uint8), repr(transform), config


def main():
    import PIL
    import timm
    import torch
    import torchvision

    arrays, described, sources = {}, {}, {}
    for name in PHOTOS:
        pixels = photo(name)
        sources[name] = dict(shape=list(pixels.shape), sha256=hashlib.sha256(pixels.tobytes()).hexdigest())
        for key, ratio in (("torchvision_v2", 232 / 224), ("torchvision_v1", 256 / 224)):
            arrays[f"{key}/{name}"], described[key] = torchvision_preset(pixels, round(SIZE * ratio))
        arrays[f"timm_bicubic_095/{name}"], described["timm_bicubic_095"], timm_config = timm_eval(pixels)
    for key, value in arrays.items():
        assert value.shape == (SIZE, SIZE, 3) and value.dtype == np.uint8, key
    meta = dict(
        size=SIZE, photos=sources, transforms=described,
        resize={"torchvision_v2": round(SIZE * 232 / 224), "torchvision_v1": round(SIZE * 256 / 224),
                "timm_bicubic_095": math.floor(SIZE / 0.95)},
        timm_config={k: list(v) if isinstance(v, tuple) else v for k, v in timm_config.items()},
        versions=dict(torch=torch.__version__, torchvision=torchvision.__version__, timm=timm.__version__,
                      pillow=PIL.__version__, numpy=np.__version__, python=platform.python_version()),
        written_by="tools/make_eval_transform_fixtures.py")
    np.savez_compressed(OUT, meta=np.array(json.dumps(meta, indent=1)), **arrays)
    print(f"wrote {OUT} ({os.path.getsize(OUT):,} bytes): {len(arrays)} images of {SIZE}x{SIZE}")


if __name__ == "__main__":
    main()
