"""Object-detection post-processing: a detector's raw tensors to per-image boxes in original-image pixels.

Detectors disagree on everything: one combined ``detections`` tensor or separate boxes/scores/classes, box order
(xyxy, xywh, cxcywh, yxyx), normalized or pixel coordinates, a background class at 0, scores as logits, NMS done
in the graph or not. The Model manifest declares which (``ModelOutput``), and this module turns every variant into
the same answer, so frameworks and models are scored alike: per image an (N, 6) float64 array
``[x1, y1, x2, y2, score, class]`` in original-image pixels, best score first, ``class`` the dataset's class index.

SSD-style detectors (BlazeFace) give offsets from anchors instead of boxes: with ``box_encoding: anchor_offsets``
the boxes are first decoded against the declared anchor grid (``processing/anchors.py``).

The steps run in one fixed order whatever their order in the manifest: sigmoid, score_threshold, nms, top_k
(pre-NMS ranking is not a thing a manifest can ask for). Rows of a batch are processed independently; NMS is
greedy and vectorised (one numpy IoU row per kept box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.manifests.model_tensors import BoxCoordinates, BoxFormat, ModelOutput
from mlmodelscope.core.processing.anchors import Anchors, decode_anchor_offsets, generate_anchors
from mlmodelscope.core.processing.geometry import Geometry, to_original_boxes
from mlmodelscope.core.processing.steps import NmsStep

DEFAULT_MAX_DETECTIONS = 100
Detections = npt.NDArray[np.float64]  # (N, 6): x1, y1, x2, y2, score, class
_EMPTY = np.zeros((0, 6), np.float64)


def to_xyxy(
    boxes: npt.NDArray[np.generic],
    box_format: BoxFormat,
    coordinates: BoxCoordinates = "pixels",
    input_hw: tuple[int, int] = (1, 1),
) -> npt.NDArray[np.float64]:
    """(..., 4) boxes in ``box_format`` -> [x1, y1, x2, y2] in pixels of an ``input_hw`` model input."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ProcessingError(f"boxes must have 4 values in their last axis, got shape {list(b.shape)}.")
    a0, a1, a2, a3 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    if box_format == "xyxy":
        out = np.stack([a0, a1, a2, a3], axis=-1)
    elif box_format == "yxyx":
        out = np.stack([a1, a0, a3, a2], axis=-1)
    elif box_format == "xywh":
        out = np.stack([a0, a1, a0 + a2, a1 + a3], axis=-1)
    else:  # cxcywh
        out = np.stack([a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2], axis=-1)
    if coordinates == "normalized":
        height, width = input_hw
        out[..., 0::2] *= width
        out[..., 1::2] *= height
    return out


def sigmoid(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The logistic function without overflow: logits are clipped to +-500 (exp(500) is finite in float64)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -500.0, 500.0))), dtype=np.float64)


def iou_one_to_many(box: npt.NDArray[np.float64], boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU of one xyxy box with each of (N, 4) xyxy boxes (0 where the union is empty)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.asarray(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0), dtype=np.float64)


def nms(
    boxes: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    classes: npt.NDArray[np.float64] | None,
    iou_threshold: float,
) -> npt.NDArray[np.intp]:
    """Greedy NMS: indices of kept boxes, best score first (ties: lower index first).

    A box is dropped when its IoU with an already kept box exceeds ``iou_threshold``; with ``classes`` only boxes
    of the same class suppress each other (torchvision's batched_nms: each class is shifted to its own region).
    """
    order = np.argsort(-scores, kind="stable")
    if classes is not None and len(boxes):
        span = float(np.abs(boxes).max()) * 2 + 1
        boxes = boxes + (classes * span)[:, None]
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


@dataclass(frozen=True)
class DetectionPostprocess:
    """What a detector's manifest says about its outputs, resolved once (see ``from_spec``)."""

    box_output: int  # index in the model's outputs of the boxes (or combined detections) tensor
    score_output: int | None  # None: combined
    class_output: int | None
    box_format: BoxFormat
    box_coordinates: BoxCoordinates
    columns: tuple[int, int, int | None] | None  # combined: (box, score, class) column indices
    class_offset: int
    sigmoid: bool
    score_threshold: float | None
    nms: NmsStep | None
    max_detections: int
    anchors: Anchors | None = field(default=None, compare=False)  # anchor_offsets: (N, 4) cx, cy, w, h
    anchor_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    box_output_name: str = "boxes"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> DetectionPostprocess:
        """Read the detection outputs and their steps from an object_detection model's spec."""
        kinds: list[str] = [o.type for o in spec.outputs]
        main = kinds.index("detections") if "detections" in kinds else _index(kinds, "boxes", spec)
        output: ModelOutput = spec.outputs[main]
        _no_repeats(output)
        threshold = next((s.score_threshold for s in output.postprocess if s.score_threshold is not None), None)
        top_k = next((s.top_k for s in output.postprocess if s.top_k is not None), None)
        columns = output.columns
        return cls(
            box_output=main,
            score_output=None if columns is not None else _index(kinds, "scores", spec),
            class_output=kinds.index("classes") if "classes" in kinds and columns is None else None,
            box_format=output.box_format,
            box_coordinates=output.box_coordinates,
            columns=(columns.box, columns.score, columns.class_) if columns is not None else None,
            class_offset=output.class_offset,
            sigmoid=any(s.sigmoid is not None for s in output.postprocess),
            score_threshold=threshold.threshold if threshold is not None else None,
            nms=next((s.nms for s in output.postprocess if s.nms is not None), None),
            max_detections=top_k.k if top_k is not None else DEFAULT_MAX_DETECTIONS,
            anchors=generate_anchors(output.anchors) if output.anchors is not None else None,
            anchor_scale=tuple(output.anchor_scale),
            box_output_name=output.name,
        )

    def batch(self, outputs: Sequence[np.ndarray], geometries: Sequence[Geometry]) -> list[Detections]:
        """Post-process a batch: row r of every output is the image of ``geometries[r]``."""
        rows = len(geometries)
        for index in self._used():
            if index >= len(outputs) or len(outputs[index]) != rows:
                got = list(np.shape(outputs[index])) if index < len(outputs) else "nothing"
                raise ProcessingError(
                    f"detection output {index} should hold {rows} rows (one per image of the batch), got {got}.",
                    hint="Check the model's outputs (their order in the manifest is the graph's order).",
                )
        return [self.image([np.asarray(o[r]) for o in outputs], geometries[r]) for r in range(rows)]

    def image(self, row: Sequence[np.ndarray], geometry: Geometry) -> Detections:
        """Post-process one image's outputs (no batch axis) into (N, 6) detections in original pixels."""
        boxes, scores, classes = self._decode(row)
        boxes = to_xyxy(boxes, self.box_format, self.box_coordinates, geometry.input_hw)
        if self.sigmoid:
            scores = sigmoid(scores)
        keep = (classes >= 0) & np.isfinite(scores) & np.isfinite(boxes).all(axis=1)
        if self.score_threshold is not None:
            keep &= scores >= self.score_threshold
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        if self.nms is not None:
            chosen = nms(boxes, scores, classes if self.nms.class_aware else None, self.nms.iou_threshold)
        else:
            chosen = np.argsort(-scores, kind="stable")
        chosen = chosen[: self.max_detections]
        if not chosen.size:
            return _EMPTY.copy()
        out = np.empty((chosen.size, 6), np.float64)
        out[:, :4] = to_original_boxes(boxes[chosen], geometry)
        out[:, 4] = scores[chosen]
        out[:, 5] = classes[chosen]
        return out

    def _used(self) -> list[int]:
        return [i for i in (self.box_output, self.score_output, self.class_output) if i is not None]

    def _decode(self, row: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 4) boxes as declared, (N,) float64 scores, (N,) float64 dataset classes (background < 0)."""
        main = np.asarray(row[self.box_output], dtype=np.float64)
        if self.columns is not None:
            box, score, klass = self.columns
            if main.ndim != 2 or main.shape[1] <= max(box + 3, score, klass or 0):
                raise ProcessingError(
                    f"a detections output row must be (N, K) with columns box {box}..{box + 3}, score {score}"
                    f"{'' if klass is None else f', class {klass}'}; got shape {list(main.shape)}.",
                    hint="Fix the output's `columns` in the Model manifest.",
                )
            boxes, scores = main[:, box : box + 4], main[:, score]
            classes = main[:, klass] if klass is not None else np.zeros(len(main))
        else:
            assert self.score_output is not None
            if self.anchors is not None:
                boxes = decode_anchor_offsets(main, self.anchors, self.anchor_scale, self.box_output_name)
            else:
                boxes = main.reshape(-1, 4) if main.ndim != 2 else main
            scores, classes = self._scores_and_classes(row, len(boxes))
        return boxes, scores, np.rint(classes) - self.class_offset

    def _scores_and_classes(self, row: Sequence[np.ndarray], boxes: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.score_output is not None
        scores = np.asarray(row[self.score_output], dtype=np.float64)
        if scores.ndim == 2 and self.class_output is None:  # per-class scores (N, C): the best class of each box
            classes, scores = scores.argmax(axis=1).astype(np.float64), scores.max(axis=1)
        elif self.class_output is not None:
            scores, classes = scores.reshape(-1), np.asarray(row[self.class_output], dtype=np.float64).reshape(-1)
        else:
            scores, classes = scores.reshape(-1), np.zeros(scores.size)
        if len(scores) != boxes or len(classes) != boxes:
            raise ProcessingError(
                f"the detector gives {boxes} boxes but {len(scores)} scores and {len(classes)} classes per image.",
                hint="scores must be (batch, N) or (batch, N, C) and classes (batch, N) for (batch, N, 4) boxes.",
            )
        return scores, classes


def _index(kinds: list[str], kind: str, spec: ModelSpec) -> int:
    if kind not in kinds:
        raise ProcessingError(
            f"this {spec.task} model has no '{kind}' output (its outputs are {kinds}).",
            hint="Declare one 'detections' output, or 'boxes' and 'scores' (and 'classes') outputs.",
        )
    return kinds.index(kind)


def _no_repeats(output: ModelOutput) -> None:
    kinds = [step.kind for step in output.postprocess]
    repeated = sorted({k for k in kinds if kinds.count(k) > 1})
    if repeated:
        raise ProcessingError(
            f"output '{output.name}' repeats post-processing step(s) {', '.join(repeated)}; each may appear once.",
            hint="Remove the duplicate step from the Model manifest's postprocess list.",
        )
