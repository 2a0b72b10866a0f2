"""Write the reference logits that tests/test_weight_conversion.py compares against.

Run with an interpreter that has torch, torchvision, timm and numpy (never a dependency of
the package or its tests):

    python tools/make_weight_fixtures.py

For each reference model it builds the real torchvision / timm module, gives every tensor
the deterministic value of ``tests/torch_files.tensor_for`` (random convs, non-trivial BN
running statistics), and runs a fixed 64x64 batch of 2 in eval mode. It writes
``tests/fixtures/weight_reference.npz`` (input, logits, tensor manifests) and
``weight_reference.json`` (library versions, what was checked), plus two tiny real
``torch.save`` files (zip and legacy layout) that pin our reader to torch's own writer.
It also checks that ``torch.load(weights_only=True)`` reads our numpy-written zip layout
back to the same tensors.
"""

import json
import os
import platform
import sys
import tempfile

import numpy as np
import timm
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.torch_files import state_from_manifest, write_torch_zip  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures")
SIZE, BATCH = 64, 2
# fixture key -> (library, constructor, our named model)
MODELS = {
    "tv_resnet18": ("torchvision", "resnet18", "ResNet18V1_5"),
    "tv_resnet50": ("torchvision", "resnet50", "ResNet50V1_5"),
    "tv_resnext50_32x4d": ("torchvision", "resnext50_32x4d", "ResNeXt50_32x4d"),
    "tv_wide_resnet50_2": ("torchvision", "wide_resnet50_2", "WideResNet50_2"),
    "timm_resnet26": ("timm", "resnet26", "ResNet26V1_5"),
    "timm_resnet26d": ("timm", "resnet26d", "ResNet26D"),
    "timm_resnet50d": ("timm", "resnet50d", "ResNet50D"),
    "timm_seresnet50": ("timm", "seresnet50", "SEResNet50"),
}


def build(library, name):
    if library == "torchvision":
        return getattr(torchvision.models, name)(weights=None)
    return timm.create_model(name, pretrained=False)


def manifest_of(module):
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in module.state_dict().items()]


def main():
    torch.manual_seed(0)
    x = np.random.default_rng(2026).standard_normal((BATCH, 3, SIZE, SIZE)).astype(np.float32)
    arrays = {"input_nchw": x}
    info = {"image_size": SIZE, "batch": BATCH, "models": {}, "versions": {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "timm": timm.__version__, "numpy": np.__version__}}
    for key, (library, ctor, ours) in MODELS.items():
        module = build(library, ctor).eval()
        manifest = manifest_of(module)
        state = state_from_manifest(manifest)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        with torch.no_grad():
            logits = module(torch.from_numpy(x)).numpy()
        arrays[f"{key}_logits"] = logits
        info["models"][key] = {"library": library, "constructor": ctor, "model": ours,
                               "tensors": len(manifest), "manifest": manifest,
                               "logit_abs_max": float(np.abs(logits).max())}
        if key == "tv_resnet18":
            check_writer(state)
            write_tiny_real_files(module)
        print(f"{key}: {len(manifest)} tensors, |logits| max {np.abs(logits).max():.3g}", flush=True)
    info["writer_checked_by_torch_load"] = True
    np.savez_compressed(os.path.join(OUT, "weight_reference.npz"), **arrays)
    with open(os.path.join(OUT, "weight_reference.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def check_writer(state):
    """torch.load (weights_only) reads tests/torch_files.write_torch_zip's file as written."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ours.pth")
        write_torch_zip(path, state)
        loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(state)
    for k, v in state.items():
        assert loaded[k].shape == v.shape and np.array_equal(loaded[k].numpy(), v), k


def write_tiny_real_files(module):
    """A few real tensors of resnet18 (stem conv, BN with num_batches_tracked, a
    non-contiguous view) through torch.save, in the zip and the legacy layout."""
    sd = module.state_dict()
    tiny = {k: sd[k] for k in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                               "bn1.running_var", "bn1.num_batches_tracked", "fc.bias")}
    block = sd["fc.weight"][:8, :16].clone()
    tiny["fc.weight.T"] = block.t()  # a transposed (non-contiguous) view of a small storage
    tiny["fc.weight.rows"] = block[3:5]  # a view at a storage offset
    torch.save(tiny, os.path.join(OUT, "tiny_state_zip.pth"))
    torch.save(tiny, os.path.join(OUT, "tiny_state_legacy.pth"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
