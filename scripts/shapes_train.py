"""Training the shapes detector and segmenter: the models' input geometry, their targets, losses and loops.

Why this module exists
----------------------
``build_shapes.py`` must train both networks in a few minutes on two CPU cores, bit-reproducibly. The input
geometry here is the one the Model manifests declare, so that what the models learn is what MLModelScope feeds
them at evaluation time:

* detector: decode RGB, ``resize {size: [128, 128], keep_aspect_ratio: true, fit: contain}`` (160 x 120 -> 128 x 96,
  Pillow bilinear), ``pad {size: [128, 128], value: 0, position: center}`` (16 rows above and below), /255, CHW;
* segmenter: decode RGB, ``resize {size: [128, 128]}`` (Pillow bilinear, aspect not kept), /255, CHW.

Detector targets follow CenterNet / TTFNet: per class a Gaussian heat map peaking (1.0) at the cell holding the
box centre, sigma = 0.54 * side / 6 in cells; every cell with Gaussian weight > 0.05 of an object regresses that
object's box (centre offset from the cell centre and log size, in cells), weighted by the Gaussian, so neighbouring
cells predict the same box and class-aware NMS removes the duplicates. Losses: CenterNet's focal loss on the heat,
L1 and GIoU on the boxes. The segmenter learns per-pixel cross-entropy, shapes weighted twice the background.
Both: AdamW, one-cycle schedule, batch 16.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from shapes_arch import GRID, INPUT_HW, NUM_CLASSES, STRIDE
from shapes_data import IMAGE_H, IMAGE_W, Scene, decode_jpeg
from shapes_nets import Detector, Segmenter
from torch import nn
from torch.nn import functional as F

SEED = 0
THREADS = 1  # one thread per training process: OpenMP threads spin badly on a shared, busy CPU
LETTERBOX_SCALE = min(INPUT_HW[0] / IMAGE_H, INPUT_HW[1] / IMAGE_W)  # 0.8
LETTERBOX_HW = (math.floor(IMAGE_H * LETTERBOX_SCALE), math.floor(IMAGE_W * LETTERBOX_SCALE))  # (96, 128)
PAD_TOP = (INPUT_HW[0] - LETTERBOX_HW[0]) // 2
PAD_LEFT = (INPUT_HW[1] - LETTERBOX_HW[1]) // 2
GAUSSIAN_ALPHA = 0.54
REGRESSION_MIN_WEIGHT = 0.05
CLASS_WEIGHTS = torch.tensor([1.0, 2.0, 2.0, 2.0])  # segmenter: background is ~85% of the pixels


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(THREADS)


def letterbox(image: np.ndarray) -> np.ndarray:
    """(120, 160, 3) uint8 -> (128, 128, 3) uint8: the detector's resize (contain) + centred zero pad."""
    resized = Image.fromarray(image).resize((LETTERBOX_HW[1], LETTERBOX_HW[0]), Image.Resampling.BILINEAR)
    out = np.zeros((*INPUT_HW, 3), dtype=np.uint8)
    out[PAD_TOP : PAD_TOP + LETTERBOX_HW[0], PAD_LEFT : PAD_LEFT + LETTERBOX_HW[1]] = np.asarray(resized)
    return out


def stretch(image: np.ndarray, nearest: bool = False) -> np.ndarray:
    """The segmenter's resize to 128 x 128 (bilinear for images, nearest for label masks)."""
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((INPUT_HW[1], INPUT_HW[0]), method)).copy()


def to_input(images_u8: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> float32 (N, 3, H, W) in [0, 1], stored channels-last (8x faster convs on CPU)."""
    nchw = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2)
    return nchw.float().div(255.0).contiguous(memory_format=torch.channels_last)


def detector_boxes(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (K, 4) xyxy in letterboxed input pixels and class indices (K,)."""
    boxes = np.array([s.bbox for s in scene.shapes], dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1) * LETTERBOX_SCALE
    xyxy += np.array([PAD_LEFT, PAD_TOP, PAD_LEFT, PAD_TOP])
    return xyxy.astype(np.float32), np.array([s.category for s in scene.shapes], dtype=np.int64)


def detector_targets(xyxy: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat (3, G, G), regression weights (G, G) and box targets (4, G, G) xyxy pixels, for one image."""
    heat = np.zeros((NUM_CLASSES, GRID, GRID), dtype=np.float32)
    weight = np.zeros((GRID, GRID), dtype=np.float32)
    target = np.zeros((4, GRID, GRID), dtype=np.float32)
    owner_area = np.full((GRID, GRID), np.inf)
    cells = np.arange(GRID, dtype=np.float32)
    for box, cls in zip(xyxy, classes, strict=True):
        cx, cy = (box[0] + box[2]) / 2 / STRIDE, (box[1] + box[3]) / 2 / STRIDE
        w, h = (box[2] - box[0]) / STRIDE, (box[3] - box[1]) / STRIDE
        ix, iy = min(int(cx), GRID - 1), min(int(cy), GRID - 1)
        sx, sy = max(GAUSSIAN_ALPHA * w / 6, 0.3), max(GAUSSIAN_ALPHA * h / 6, 0.3)
        gauss = np.exp(-((cells[None, :] - ix) ** 2) / (2 * sx * sx) - ((cells[:, None] - iy) ** 2) / (2 * sy * sy))
        heat[cls] = np.maximum(heat[cls], gauss)
        area = w * h
        take = (gauss > REGRESSION_MIN_WEIGHT) & (area < owner_area)
        weight[take] = gauss[take]
        owner_area[take] = area
        target[:, take] = box[:, None]
    return heat, weight, target


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of peaks."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peak = heat.eq(1.0).float()
    pos = -torch.log(prob) * (1 - prob) ** 2 * peak
    neg = -torch.log(1 - prob) * prob**2 * (1 - heat) ** 4 * (1 - peak)
    return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1.0)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU of xyxy boxes (..., 4)."""
    area_p = (pred[..., 2] - pred[..., 0]) * (pred[..., 3] - pred[..., 1])
    area_t = (target[..., 2] - target[..., 0]) * (target[..., 3] - target[..., 1])
    lt, rb = torch.max(pred[..., :2], target[..., :2]), torch.min(pred[..., 2:], target[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_p + area_t - inter
    hull = (torch.max(pred[..., 2:], target[..., 2:]) - torch.min(pred[..., :2], target[..., :2])).prod(-1)
    return 1 - inter / union - (hull - union) / hull


@dataclass
class DetectorData:
    images: np.ndarray  # (N, 128, 128, 3) uint8, letterboxed
    heat: torch.Tensor  # (N, 3, G, G)
    weight: torch.Tensor  # (N, G, G)
    target: torch.Tensor  # (N, 4, G, G) xyxy pixels


def detector_data(scenes: list[Scene]) -> DetectorData:
    images, heats, weights, targets = [], [], [], []
    for scene in scenes:
        images.append(letterbox(decode_jpeg(scene.jpeg())))
        heat, weight, target = detector_targets(*detector_boxes(scene))
        heats.append(heat)
        weights.append(weight)
        targets.append(target)
    return DetectorData(
        np.stack(images),
        torch.from_numpy(np.stack(heats)),
        torch.from_numpy(np.stack(weights)),
        torch.from_numpy(np.stack(targets)),
    )


def _detector_loss(model: Detector, x: torch.Tensor, data: DetectorData, idx: torch.Tensor) -> torch.Tensor:
    heat_logits, offset, size = model.raw(x)
    centre = (model.grid + offset) * STRIDE
    half = torch.exp(size.clamp(max=6.0)) * STRIDE / 2
    pred = torch.cat([centre - half, centre + half], dim=1).permute(0, 2, 3, 1)  # (B, G, G, 4)
    target = data.target[idx].permute(0, 2, 3, 1)
    weight = data.weight[idx]
    norm = weight.sum().clamp(min=1.0)
    l1 = ((pred - target).abs().sum(-1) / STRIDE * weight).sum() / norm
    giou = (giou_loss(pred, target) * weight).sum() / norm
    return focal_loss(heat_logits, data.heat[idx]) + 0.2 * l1 + 2.0 * giou


def _fit(
    model: nn.Module,
    count: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    log: Callable[[str], None],
) -> float:
    """Adam + one-cycle-like cosine schedule over ``epochs``; returns the wall time in seconds."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps = epochs * math.ceil(count / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.15)
    generator = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    model.to(memory_format=torch.channels_last)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for i in range(0, count, batch_size):
            idx = order[i : i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(idx)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / count:.4f} ({time.perf_counter() - start:.0f} s)")
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    return time.perf_counter() - start


def train_detector(
    data: DetectorData, epochs: int, log: Callable[[str], None], batch_size: int = 16, learning_rate: float = 4e-3
) -> tuple[Detector, float]:
    seed_everything()
    model = Detector(seed=SEED)
    images = data.images

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return _detector_loss(model, to_input(images[idx.numpy()]), data, idx)

    return model, _fit(model, len(images), epochs, batch_size, learning_rate, loss_of, log)


@dataclass
class SegmenterData:
    images: np.ndarray  # (N, 128, 128, 3) uint8, stretched
    masks: torch.Tensor  # (N, 128, 128) int64 class ids


def segmenter_data(scenes: list[Scene]) -> SegmenterData:
    images = np.stack([stretch(decode_jpeg(s.jpeg())) for s in scenes])
    masks = np.stack([stretch(s.semantic_mask(), nearest=True) for s in scenes]).astype(np.int64)
    return SegmenterData(images, torch.from_numpy(masks))


def train_segmenter(
    data: SegmenterData, epochs: int, log: Callable[[str], None], batch_size: int = 16, learning_rate: float = 4e-3
) -> tuple[Segmenter, float]:
    seed_everything()
    model = Segmenter(seed=SEED)
    images = data.images

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(to_input(images[idx.numpy()])), data.masks[idx], weight=CLASS_WEIGHTS)

    return model, _fit(model, len(images), epochs, batch_size, learning_rate, loss_of, log)


def original_size() -> tuple[int, int]:
    return IMAGE_H, IMAGE_W
