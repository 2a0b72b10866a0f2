"""Deterministic stand-in weights for torchvision's video ResNets, shared by
``tools/make_video_fixtures.py`` (run with torch) and ``tests/test_video.py`` (no torch).

Each tensor of a state dict is drawn from numpy's generator seeded by the CRC-32 of its
name, so both sides make the same values from the names and shapes alone. Pure numpy.
"""

import zlib

import numpy as np

CLIP_SHAPE = (1, 3, 4, 32, 32)  # torchvision layout: batch, channels, frames, height, width
CLIP_SEED = 0


def tensor(name, shape):
    """The stand-in value of one state-dict tensor (float64)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(shape, "int64")
    if len(shape) > 1:  # conv and fc weights: He-normal on the fan-in keeps activations in range
        fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape)
    if leaf == "weight":  # BN gamma
        return rng.uniform(0.5, 1.0, shape)
    return rng.normal(0.0, 0.1, shape)  # BN beta, running_mean, fc bias


def state_dict(shapes):
    """{name: array} for ``{name: shape}``."""
    return {name: tensor(name, tuple(shape)) for name, shape in shapes.items()}


def clip():
    """The input clip, float64, in torchvision's layout ``CLIP_SHAPE``."""
    return np.random.default_rng(CLIP_SEED).uniform(-1.0, 1.0, CLIP_SHAPE)
