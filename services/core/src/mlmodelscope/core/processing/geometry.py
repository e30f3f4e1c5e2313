"""Where each original image pixel lands in the model input, computed from the pre-processing steps alone.

Detectors answer in model-input pixels and segmenters answer with model-input-sized masks, but COCO's ground truth
is in original-image pixels. Resize, crop and pad are each an axis-aligned affine map, so their composition is one
per-axis ``input = original * scale + offset`` (continuous coordinates: pixel edges at integers, so the image
spans [0, W] x [0, H]). ``geometry_of`` replays the steps' size arithmetic exactly as the image functions do
(``resized_shape``, torchvision's crop rounding, the pad offsets) without touching pixels, so the scorer can map
answers back from nothing but the manifest and each image's original size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.processing.image import center_offset, pad_offsets, resized_shape
from mlmodelscope.core.processing.steps import CropStep, PadStep, PreprocessStep, ResizeStep


@dataclass(frozen=True)
class Geometry:
    """The affine map from an original image to the model input, per axis: ``input = original * scale + offset``.

    All pairs are (y, x) / (height, width). A crop gives a negative offset (the window's corner), a pad a positive
    one (the margin); parts of the original outside the input window are simply not seen by the model.
    """

    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale_yx: tuple[float, float] = (1.0, 1.0)
    offset_yx: tuple[float, float] = (0.0, 0.0)


def geometry_of(steps: Sequence[PreprocessStep], original_hw: tuple[int, int]) -> Geometry:
    """The geometry of an ``original_hw`` image put through ``steps`` (only resize, crop and pad move pixels)."""
    height, width = int(original_hw[0]), int(original_hw[1])
    if height < 1 or width < 1:
        raise ProcessingError(f"an image of {height}x{width} (HxW) pixels has no geometry; sizes must be positive.")
    geometry = Geometry((height, width), (height, width))
    for index, step in enumerate(steps):
        try:
            if step.resize is not None:
                geometry = _resized(geometry, step.resize)
            elif step.crop is not None:
                geometry = _cropped(geometry, step.crop)
            elif step.pad is not None:
                geometry = _padded(geometry, step.pad)
        except ProcessingError as e:
            raise ProcessingError(f"pre-processing step {index} ({step.kind}): {e.message}", hint=e.hint) from e
    return geometry


class ItemGeometries:
    """The geometry of each dataset item, computed once per distinct original size (scorers ask per row)."""

    def __init__(self, steps: Sequence[PreprocessStep], original_hw: npt.NDArray[np.integer]) -> None:
        self._steps = tuple(steps)
        self._original_hw = original_hw
        self._by_size: dict[tuple[int, int], Geometry] = {}

    def __call__(self, item: int) -> Geometry:
        """Item ``item``'s geometry; ProcessingError when the dataset has no such item."""
        if not 0 <= item < len(self._original_hw):
            raise ProcessingError(f"dataset item {item} is out of range (the dataset has {len(self._original_hw)}).")
        hw = (int(self._original_hw[item][0]), int(self._original_hw[item][1]))
        geometry = self._by_size.get(hw)
        if geometry is None:
            geometry = self._by_size[hw] = geometry_of(self._steps, hw)
        return geometry


def _resized(g: Geometry, step: ResizeStep) -> Geometry:
    h, w = g.input_hw
    new_h, new_w = resized_shape(h, w, step.size, step.keep_aspect_ratio, step.fit)
    fy, fx = new_h / h, new_w / w
    return Geometry(
        g.original_hw,
        (new_h, new_w),
        (g.scale_yx[0] * fy, g.scale_yx[1] * fx),
        (g.offset_yx[0] * fy, g.offset_yx[1] * fx),
    )


def _cropped(g: Geometry, step: CropStep) -> Geometry:
    h, w = g.input_hw
    if step.size is not None:
        crop_h, crop_w = step.size
    else:
        crop_h = crop_w = max(1, round(min(h, w) * (step.ratio or 1.0)))
    if crop_h > h or crop_w > w:
        raise ProcessingError(
            f"crop window {crop_h}x{crop_w} (HxW) does not fit the {h}x{w} image.",
            hint="Resize before cropping, or make the crop smaller.",
        )
    top, left = (center_offset(h, crop_h), center_offset(w, crop_w)) if step.method == "center" else (0, 0)
    return Geometry(g.original_hw, (crop_h, crop_w), g.scale_yx, (g.offset_yx[0] - top, g.offset_yx[1] - left))


def _padded(g: Geometry, step: PadStep) -> Geometry:
    h, w = g.input_hw
    if h > step.size[0] or w > step.size[1]:
        raise ProcessingError(
            f"pad to {step.size[0]}x{step.size[1]} (HxW) cannot hold the {h}x{w} image.",
            hint="Resize with keep_aspect_ratio: true and fit: contain to the pad size first.",
        )
    top, left = pad_offsets(h, w, step.size, step.position)
    return Geometry(g.original_hw, step.size, g.scale_yx, (g.offset_yx[0] + top, g.offset_yx[1] + left))


def to_original_boxes(xyxy: npt.NDArray[np.floating], geometry: Geometry) -> npt.NDArray[np.float64]:
    """(N, 4) [x1, y1, x2, y2] boxes in model-input pixels -> original-image pixels, clipped to the image."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    sy, sx = geometry.scale_yx
    oy, ox = geometry.offset_yx
    height, width = geometry.original_hw
    out = np.empty_like(boxes)
    out[:, 0::2] = np.clip((boxes[:, 0::2] - ox) / sx, 0.0, width)
    out[:, 1::2] = np.clip((boxes[:, 1::2] - oy) / sy, 0.0, height)
    return out


def source_pixels(geometry: Geometry, mask_hw: tuple[int, int]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """For each original row and column, the row and column of a ``mask_hw`` model-output mask that covers it.

    The mask spans the whole model input (at its own resolution, e.g. a stride-4 output). Each original pixel's
    centre is mapped into the input, then into the mask, and floored (nearest-neighbour resize). Pixels the model
    never saw (cropped away) take the nearest edge of the mask. ``mask[rows[:, None], cols[None, :]]`` is the mask
    at the original size.
    """
    height, width = geometry.original_hw
    in_h, in_w = geometry.input_hw
    mask_h, mask_w = mask_hw
    sy, sx = geometry.scale_yx
    oy, ox = geometry.offset_yx
    y = ((np.arange(height) + 0.5) * sy + oy) * (mask_h / in_h)
    x = ((np.arange(width) + 0.5) * sx + ox) * (mask_w / in_w)
    rows = np.clip(np.floor(y), 0, mask_h - 1).astype(np.intp)
    cols = np.clip(np.floor(x), 0, mask_w - 1).astype(np.intp)
    return rows, cols


def to_original_mask(mask: npt.NDArray[np.generic], geometry: Geometry) -> npt.NDArray[np.generic]:
    """An (h, w) per-pixel mask over the model input, resized (nearest) back to the original (H, W) image."""
    rows, cols = source_pixels(geometry, (int(mask.shape[0]), int(mask.shape[1])))
    return np.asarray(mask[rows[:, None], cols[None, :]])
