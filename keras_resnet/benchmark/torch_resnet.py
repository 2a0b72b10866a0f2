"""torchvision's ResNet architecture in plain torch, for machines where torchvision cannot be
imported (some torch wheels have no torchvision build). Used by the torch worker only then.

v1.5 (stride on the 3x3 of the bottleneck), zero-init of the last BN off, as torchvision's
``resnet{18,34,50,101,152}``; the parameter count (25,557,032 for ResNet-50) is torchvision's.
"""

from __future__ import annotations

import torch
from torch import nn

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> list:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class Unit(nn.Module):
    """One residual unit: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1), projection when the
    shape changes."""

    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool):
        super().__init__()
        cout = width * (4 if bottleneck else 1)
        if bottleneck:
            body = _conv_bn(cin, width, 1) + _conv_bn(width, width, 3, stride) + _conv_bn(width, cout, 1, relu=False)
        else:
            body = _conv_bn(cin, width, 3, stride) + _conv_bn(width, cout, 3, relu=False)
        self.body = nn.Sequential(*body)
        self.short = (nn.Sequential(*_conv_bn(cin, cout, 1, stride, relu=False))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def torch_resnet(arch: str, num_classes: int) -> nn.Module:
    """``arch`` is torchvision's name ("resnet50")."""
    depth = int(arch[len("resnet"):])
    bottleneck = depth >= 50
    layers, cin = _conv_bn(3, 64, 7, 2) + [nn.MaxPool2d(3, 2, 1)], 64
    for stage, repeats in enumerate(BLOCKS[depth]):
        width = 64 * 2**stage
        for i in range(repeats):
            layers.append(Unit(cin, width, 2 if stage > 0 and i == 0 else 1, bottleneck))
            cin = width * (4 if bottleneck else 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)
