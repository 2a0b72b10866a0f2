"""The input clip of the video ResNet fixtures, shared by ``tools/make_video_fixtures.py``
(run with torch) and ``tests/test_video.py`` (no torch). The weights are
``tests/torch_files.tensor_for`` of each state-dict name, as for the 2D fixtures."""

import numpy as np

CLIP_SHAPE = (1, 3, 4, 32, 32)  # torchvision layout: batch, channels, frames, height, width
CLIP_SEED = 0


def clip():
    """The input clip, float64, in torchvision's layout ``CLIP_SHAPE``."""
    return np.random.default_rng(CLIP_SEED).uniform(-1.0, 1.0, CLIP_SHAPE)
