"""SSD anchors and the decoding of box regressors against them (MediaPipe's BlazeFace convention).

Single-shot detectors such as BlazeFace do not output boxes: each of their N outputs is an offset from a fixed
anchor, and the anchors themselves live outside the graph, in the detector's pipeline configuration. The Model
manifest declares them (``ModelOutput.anchors``, an ``AnchorGrid``) so that any framework's output is decoded the
same way here. ``generate_anchors`` reproduces MediaPipe's SsdAnchorsCalculator with ``fixed_anchor_size: true``
(the order is layer, row, column, anchor of the cell); ``decode_anchor_offsets`` is its
TensorsToDetectionsCalculator without the exponential size option:

    x_center = x / x_scale * anchor_w + anchor_x      w = w_raw / w_scale * anchor_w
    y_center = y / y_scale * anchor_h + anchor_y      h = h_raw / h_scale * anchor_h

giving centre/size boxes normalized to the model input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.manifests.model_tensors import AnchorGrid

Anchors = npt.NDArray[np.float64]  # (N, 4): x_center, y_center, width, height, normalized to the input


def generate_anchors(grid: AnchorGrid) -> Anchors:
    """The grid's (N, 4) anchors [x_center, y_center, width, height] in input-normalized units."""
    height, width = grid.input_size
    parts: list[Anchors] = []
    for layer in grid.layers:
        rows, cols = -(-height // layer.stride), -(-width // layer.stride)
        y, x = np.meshgrid(
            (np.arange(rows) + grid.offset) / rows, (np.arange(cols) + grid.offset) / cols, indexing="ij"
        )
        centres = np.repeat(np.stack([x.ravel(), y.ravel()], axis=1), layer.per_cell, axis=0)
        sizes = np.full_like(centres, grid.fixed_size)
        parts.append(np.concatenate([centres, sizes], axis=1))
    anchors = np.concatenate(parts, axis=0)
    assert len(anchors) == grid.count
    return anchors


def decode_anchor_offsets(
    raw: npt.NDArray[np.generic], anchors: Anchors, scale: Sequence[float], output: str = "boxes"
) -> npt.NDArray[np.float64]:
    """(N, K >= 4) regressor values of one image -> (N, 4) [cx, cy, w, h] boxes normalized to the input.

    Only the first 4 values of each row are the box (BlazeFace adds 6 keypoints after them).
    """
    values = np.asarray(raw, dtype=np.float64)
    if values.ndim == 1 and values.size == 4 * len(anchors):
        values = values.reshape(len(anchors), 4)
    if values.ndim != 2 or values.shape[1] < 4:
        raise ProcessingError(
            f"output '{output}': anchor offsets must be (N, K >= 4) per image, got shape {list(values.shape)}.",
            hint="The boxes output of an anchor_offsets detector is (batch, N, K): box values first, in x, y, w, h.",
        )
    if len(values) != len(anchors):
        batched = len(values) > len(anchors) and len(values) % len(anchors) == 0
        raise ProcessingError(
            f"output '{output}' holds {len(values)} boxes per image but its anchor grid has {len(anchors)} anchors.",
            hint=f"{len(values) // len(anchors)} images' boxes in one row: the graph has a fixed batch size of 1 "
            "(BlazeFace reshapes to [1, N, 16]); run it with --batch-size 1."
            if batched
            else "Fix the output's `anchors` (layers' stride and per_cell, input_size) in the Model manifest so "
            "that their count equals the model's N.",
        )
    sx, sy, sw, sh = (float(v) for v in scale)
    boxes = np.empty((len(values), 4), np.float64)
    boxes[:, 0] = values[:, 0] / sx * anchors[:, 2] + anchors[:, 0]
    boxes[:, 1] = values[:, 1] / sy * anchors[:, 3] + anchors[:, 1]
    boxes[:, 2] = values[:, 2] / sw * anchors[:, 2]
    boxes[:, 3] = values[:, 3] / sh * anchors[:, 3]
    return boxes
