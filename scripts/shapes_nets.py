"""The two shapes networks in PyTorch: a single-scale CenterNet-style detector and a small U-Net segmenter.

Why this module exists
----------------------
``build_shapes.py`` trains these and exports them to four formats; ``shapes_keras.py`` and ``shapes_mxnet.py``
rebuild the *same* graphs layer by layer from the weights. So the architecture is written down once here as a table
of named 3x3/1x1 convolutions (:data:`DETECTOR_CONVS`, :data:`SEGMENTER_CONVS`) and a forward pass that only uses
operations every framework has with identical semantics: convolution (pad 1 for 3x3, pad 0 for 1x1; stride 2 with
torch's symmetric padding), ReLU, sigmoid, exp, nearest 2x upsampling, channel concatenation, add/multiply by
constants, transpose and reshape. Batch normalisation is used while training and folded into the convolutions
before export (:func:`fold_batch_norm`), so the exported graphs have none.

Detector (input float32 (N, 3, 128, 128), RGB / 255, letterboxed): an encoder to stride 16 and a decoder back to
stride 4 (a 32 x 32 grid, 1024 cells). Each cell predicts 3 class heat values (sigmoid), a centre offset and a
log size; the graph decodes them (no NMS)::

    boxes  (N, 1024, 4)  cxcywh in pixels of the 128 x 128 input: cx = (gx + 0.5 + dx) * 4, w = exp(lw) * 4
    scores (N, 1024, 3)  per-class probabilities (sigmoid of the heat logits)

Cells are ordered row-major (gy, gx). Segmenter (input float32 (N, 3, 128, 128), RGB / 255, resized): a U-Net to
stride 16 and back to full resolution; output ``mask`` (N, 4, 128, 128) logits, class 0 = background, k + 1 =
class k.
"""

from __future__ import annotations

import torch
from shapes_arch import (
    DETECTOR_CONVS,
    GRID,
    HEAT_PRIOR_BIAS,
    NUM_CLASSES,
    SEGMENTER_CONVS,
    STRIDE,
    ConvSpec,
    grid_cells,
)
from torch import nn
from torch.nn import functional as F


class ConvLayer(nn.Module):
    """Conv2d (+ BatchNorm while training) (+ ReLU); :func:`fold_batch_norm` turns the norm into the conv's bias."""

    def __init__(self, spec: ConvSpec) -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.cin, spec.cout, spec.kernel, stride=spec.stride, padding=spec.kernel // 2)
        self.norm: nn.Module = nn.BatchNorm2d(spec.cout) if spec.relu else nn.Identity()
        self.relu = spec.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


def _layers(specs: tuple[ConvSpec, ...]) -> nn.ModuleDict:
    return nn.ModuleDict({spec.name: ConvLayer(spec) for spec in specs})


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Detector(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)  # initialisation is part of the definition
        self.layers = _layers(DETECTOR_CONVS)
        nn.init.constant_(self.layers["heat"].conv.bias, HEAT_PRIOR_BIAS)
        self.register_buffer("grid", torch.from_numpy(grid_cells()), persistent=False)  # (1, 2, G, G)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heat logits (N, 3, G, G), offsets (N, 2, G, G) in cells, log sizes (N, 2, G, G) in cells."""
        layer = self.layers
        c1 = layer["stem"](x)
        c2 = layer["block2"](layer["down2"](c1))
        c3 = layer["block3"](layer["down3"](c2))
        c4 = layer["block4"](layer["down4"](c3))
        u3 = layer["up3"](torch.cat([_up(c4), c3], dim=1))
        u2 = layer["up2"](torch.cat([_up(u3), c2], dim=1))
        head = layer["head"](u2)
        return layer["heat"](head), layer["offset"](head), layer["size"](head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heat, offset, size = self.raw(x)
        centre = (self.grid + offset) * float(STRIDE)
        extent = torch.exp(size) * float(STRIDE)
        boxes = torch.cat([centre, extent], dim=1).permute(0, 2, 3, 1).reshape(-1, GRID * GRID, 4)
        scores = torch.sigmoid(heat).permute(0, 2, 3, 1).reshape(-1, GRID * GRID, NUM_CLASSES)
        return boxes, scores


class Segmenter(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layers = _layers(SEGMENTER_CONVS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layers
        e1 = layer["enc1"](x)
        e2 = layer["enc2b"](layer["enc2"](e1))
        e3 = layer["enc3b"](layer["enc3"](e2))
        e4 = layer["enc4b"](layer["enc4"](e3))
        d3 = layer["dec3"](torch.cat([_up(e4), e3], dim=1))
        d2 = layer["dec2"](torch.cat([_up(d3), e2], dim=1))
        d1 = layer["dec1"](torch.cat([_up(d2), e1], dim=1))
        d0 = layer["dec0"](torch.cat([_up(d1), x], dim=1))
        return layer["logits"](d0)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every ConvLayer's BatchNorm (eval statistics) into its conv, in place; returns ``model`` in eval mode."""
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvLayer) and isinstance(module.norm, nn.BatchNorm2d):
            module.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(module.conv, module.norm)
            module.norm = nn.Identity()
    return model


def conv_weights(model: nn.Module, specs: tuple[ConvSpec, ...]) -> dict[str, torch.Tensor]:
    """``<name>.weight`` (OIHW) and ``<name>.bias`` of every conv of a folded model, in table order."""
    layers = model.layers  # type: ignore[union-attr]
    out: dict[str, torch.Tensor] = {}
    for spec in specs:
        conv = layers[spec.name].conv
        out[f"{spec.name}.weight"] = conv.weight.detach().clone()
        out[f"{spec.name}.bias"] = conv.bias.detach().clone()
    return out
