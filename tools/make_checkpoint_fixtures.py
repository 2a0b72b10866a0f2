"""Write the small real ``torch.save`` files that tests/test_checkpoint_files.py reads.

Run with an interpreter that has torch and numpy (never a dependency of the package or its
tests):

    python tools/make_checkpoint_fixtures.py

It writes, into ``tests/fixtures/``:

- ``torch_checkpoint.pth.tar``: a training checkpoint as the PyTorch ImageNet example saves
  it, in the legacy layout (``_use_new_zipfile_serialization=False``): ``epoch``, ``arch``,
  ``state_dict`` of a ``DataParallel`` module (every name under ``module.``), a real SGD
  ``optimizer`` state with momentum buffers, ``best_acc1`` as a 0-d tensor, and the run's
  ``argparse.Namespace``;
- ``torch_compiled.pt``: the state dict of a ``torch.compile`` module (names under
  ``_orig_mod.``), zip layout;
- ``torch_module.pth`` / ``torch_module_legacy.pth``: ``torch.save(model)`` of a whole
  ``nn.Module``, which a loader must refuse without running anything.

The tensors are ``tests/torch_files.tensor_for`` of torchvision ResNet-18's stem BN and
classifier bias (names and shapes), so the test compares them bit for bit without storing
the numbers twice.
"""

import argparse
import json
import os
import sys

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests.torch_files import tensor_for  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures")


class Stem(nn.Module):
    """ResNet-18's ``bn1`` and a 10-class ``fc`` (the names torchvision gives them)."""

    def __init__(self):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.bn1(x).mean((2, 3))[:, :4])


def stem():
    module = Stem()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            dtype = str(tensor.dtype).replace("torch.", "")
            tensor.copy_(torch.from_numpy(tensor_for(name, tuple(tensor.shape), dtype)))
    return module


def main():
    torch.manual_seed(0)
    model = stem()
    parallel = nn.DataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(2, 64, 3, 3)).sum().backward()
    optimizer.step()  # momentum buffers in the optimizer state
    with torch.no_grad():  # back to the reference values after the step
        for name, tensor in model.state_dict().items():
            dtype = str(tensor.dtype).replace("torch.", "")
            tensor.copy_(torch.from_numpy(tensor_for(name, tuple(tensor.shape), dtype)))
    args = argparse.Namespace(arch="resnet18", lr=0.1, epochs=90)
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": parallel.state_dict(),
                "best_acc1": torch.tensor(69.76), "optimizer": optimizer.state_dict(), "args": args},
               os.path.join(OUT, "torch_checkpoint.pth.tar"), _use_new_zipfile_serialization=False)
    compiled = torch.compile(stem())
    torch.save(compiled.state_dict(), os.path.join(OUT, "torch_compiled.pt"))
    torch.save(stem(), os.path.join(OUT, "torch_module.pth"))
    torch.save(stem(), os.path.join(OUT, "torch_module_legacy.pth"), _use_new_zipfile_serialization=False)
    names = {"torch_checkpoint.pth.tar": sorted(parallel.state_dict()),
             "torch_compiled.pt": sorted(compiled.state_dict())}
    with open(os.path.join(OUT, "torch_checkpoint_files.json"), "w") as f:
        json.dump({"torch": torch.__version__, "names": names}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
