"""Write tests/fixtures/video_resnets.json: torchvision's video ResNets on stand-in weights.

Run with an interpreter that has torch and torchvision (neither is a dependency of
keras_resnet or its tests):

    python tools/make_video_fixtures.py

For r3d_18, mc3_18 and r2plus1d_18 it records the state dict's manifest (name, shape,
dtype), torchvision's trainable-parameter count, and the float64 logits of the clip of
tests/video_reference.py under the weights ``tests/torch_files.tensor_for`` makes from
each name. tests/test_video.py rebuilds the same weights without torch, writes them as a
``.pth`` file, loads it into keras_resnet's models and compares the logits.
"""

import json
import os
import sys

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests import video_reference  # noqa: E402
from tests.torch_files import state_from_manifest  # noqa: E402

MODELS = ("r3d_18", "mc3_18", "r2plus1d_18")
OUT = os.path.join(ROOT, "tests", "fixtures", "video_resnets.json")


def record(name):
    model = getattr(torchvision.models.video, name)(weights=None).eval()
    manifest = [[k, list(v.shape), str(v.dtype).replace("torch.", "")]
                for k, v in model.state_dict().items()]
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_from_manifest(manifest).items()})
    model.double()
    with torch.no_grad():
        logits = model(torch.from_numpy(video_reference.clip())).numpy()
    return {
        "manifest": manifest,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "logits": np.round(logits, 10).tolist(),
    }


def main():
    fixtures = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "clip_shape": list(video_reference.CLIP_SHAPE),
                "models": {name: record(name) for name in MODELS}}
    with open(OUT, "w") as f:
        json.dump(fixtures, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
