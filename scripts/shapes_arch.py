"""The shapes networks' architecture as data: named convolutions and the detector's cell grid (no framework).

Why this module exists
----------------------
The same two networks are built in PyTorch (shapes_nets.py, in ``.venv``), Keras (shapes_keras.py) and MXNet gluon
(shapes_mxnet.py, in ``.venv-mxnet``, where torch is not installed). This module holds what they share and imports
nothing but numpy, so every builder reads one definition. ``shapes_nets.py`` documents the forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_HW = (128, 128)
NUM_CLASSES = 3
STRIDE = 4
GRID = INPUT_HW[0] // STRIDE
HEAT_PRIOR_BIAS = -2.19  # sigmoid(-2.19) = 0.1, CenterNet's initial heat


@dataclass(frozen=True)
class ConvSpec:
    """One convolution: ``name`` keys its weights (``<name>.weight`` OIHW, ``<name>.bias``)."""

    name: str
    cin: int
    cout: int
    kernel: int = 3
    stride: int = 1
    relu: bool = True


DETECTOR_CONVS = (
    ConvSpec("stem", 3, 16, stride=2),  # 64
    ConvSpec("down2", 16, 32, stride=2),  # 32
    ConvSpec("block2", 32, 32),
    ConvSpec("down3", 32, 64, stride=2),  # 16
    ConvSpec("block3", 64, 64),
    ConvSpec("down4", 64, 96, stride=2),  # 8
    ConvSpec("block4", 96, 96),
    ConvSpec("up3", 96 + 64, 48),  # 16: cat(up(block4), block3)
    ConvSpec("up2", 48 + 32, 32, kernel=1),  # 32: cat(up(up3), block2)
    ConvSpec("head", 32, 32),
    ConvSpec("heat", 32, NUM_CLASSES, kernel=1, relu=False),
    ConvSpec("offset", 32, 2, kernel=1, relu=False),
    ConvSpec("size", 32, 2, kernel=1, relu=False),
)

SEGMENTER_CONVS = (
    ConvSpec("enc1", 3, 16, stride=2),  # 64
    ConvSpec("enc2", 16, 32, stride=2),  # 32
    ConvSpec("enc2b", 32, 32),
    ConvSpec("enc3", 32, 64, stride=2),  # 16
    ConvSpec("enc3b", 64, 64),
    ConvSpec("enc4", 64, 64, stride=2),  # 8
    ConvSpec("enc4b", 64, 64),
    ConvSpec("dec3", 64 + 64, 48),  # 16: cat(up(enc4b), enc3b)
    ConvSpec("dec2", 48 + 32, 24),  # 32: cat(up(dec3), enc2b)
    ConvSpec("dec1", 24 + 16, 12),  # 64: cat(up(dec2), enc1)
    ConvSpec("dec0", 12 + 3, 8),  # 128: cat(up(dec1), input)
    ConvSpec("logits", 8, NUM_CLASSES + 1, kernel=1, relu=False),
)


def grid_cells() -> np.ndarray:
    """(1, 2, G, G) float32: channel 0 = gx + 0.5, channel 1 = gy + 0.5 (the cell centres, in cells)."""
    gy, gx = np.meshgrid(np.arange(GRID, dtype=np.float32), np.arange(GRID, dtype=np.float32), indexing="ij")
    return np.ascontiguousarray(np.stack([gx, gy])[None] + np.float32(0.5), dtype=np.float32)
