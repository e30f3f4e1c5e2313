"""The reference figures of the shapes models, computed here independently of MLModelScope's scorers.

Why this module exists
----------------------
The Model manifests state the mAP and mIoU the models reach on the shapes-coco test split; ``build_shapes.py``
measures them with this module, on the same pre- and post-processing the manifests declare, so that MLModelScope's
own DetectionScorer / SegmentationScorer can be checked against numbers made another way:

* detection: each cell's best class and its score, kept when >= 0.05, class-aware greedy NMS at IoU 0.5,
  the 100 best per image; boxes mapped back to the 160 x 120 image by undoing the letterbox (minus the pad, divided by
  0.8) and clipped to it; COCO bbox mAP by pycocotools' COCOeval;
* segmentation: argmax of the logits at 128 x 128, resized to 160 x 120 with nearest neighbour; IoU per class
  summed over the whole split (one confusion matrix), mean over the 4 classes (background included) and over the 3
  shapes.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from shapes_data import IMAGE_H, IMAGE_W
from shapes_train import LETTERBOX_SCALE, PAD_LEFT, PAD_TOP

SCORE_THRESHOLD = 0.05
NMS_IOU = 0.5
MAX_DETECTIONS = 100
COCO_STATS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100")


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], others[:, :2])
    rb = np.minimum(box[2:], others[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-12))


def _nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(best)
        if order:
            rest = np.array(order)
            order = [int(i) for i in rest[_iou(boxes[best], boxes[rest]) <= NMS_IOU]]
    return keep


def postprocess(boxes_cxcywh: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float, int]]:
    """One image's (1024, 4) boxes and (1024, 3) scores -> [(xyxy in original pixels, score, class)], best first."""
    xyxy = np.concatenate(
        [boxes_cxcywh[:, :2] - boxes_cxcywh[:, 2:] / 2, boxes_cxcywh[:, :2] + boxes_cxcywh[:, 2:] / 2], 1
    )
    classes, best = scores.argmax(axis=1), scores.max(axis=1)
    kept: list[tuple[np.ndarray, float, int]] = []
    for cls in range(scores.shape[1]):
        rows = np.nonzero((classes == cls) & (best >= SCORE_THRESHOLD))[0]
        for i in _nms(xyxy[rows], best[rows]):
            kept.append((xyxy[rows[i]], float(best[rows[i]]), cls))
    kept.sort(key=lambda d: -d[1])
    out = []
    for box, score, cls in kept[:MAX_DETECTIONS]:
        original = (box - np.array([PAD_LEFT, PAD_TOP, PAD_LEFT, PAD_TOP])) / LETTERBOX_SCALE
        original = np.clip(original, 0, [IMAGE_W, IMAGE_H, IMAGE_W, IMAGE_H])
        out.append((original, score, cls))
    return out


def coco_detection_metrics(annotations: dict[str, Any], boxes: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """COCO bbox metrics of the model outputs for images 1..N (outputs row i = image id i + 1)."""
    results = []
    for row in range(len(boxes)):
        for box, score, cls in postprocess(boxes[row], scores[row]):
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append(
                {"image_id": row + 1, "category_id": cls + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = annotations
        truth.createIndex()
        detections = truth.loadRes(results) if results else COCO()
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    metrics: dict[str, Any] = {name: float(v) for name, v in zip(COCO_STATS, evaluation.stats, strict=False)}
    precision = evaluation.eval["precision"]  # (iou, recall, class, area, max_dets)
    per_class = []
    for k in range(precision.shape[2]):
        values = precision[:, :, k, 0, -1]
        per_class.append(float(values[values > -1].mean()) if (values > -1).any() else -1.0)
    metrics["per_class_ap"] = per_class
    metrics["detections"] = len(results)
    return metrics


def semantic_predictions(logits: np.ndarray) -> np.ndarray:
    """(N, 4, 128, 128) logits -> (N, 120, 160) uint8 class ids at the original size (nearest)."""
    ids = np.argmax(logits, axis=1).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(m).resize((IMAGE_W, IMAGE_H), Image.Resampling.NEAREST)) for m in ids])


def segmentation_metrics(truth: np.ndarray, predicted: np.ndarray, classes: int = 4) -> dict[str, Any]:
    """IoU per class over the split (truth, predicted: (N, H, W) ids), their mean, and pixel accuracy."""
    confusion = np.bincount(truth.reshape(-1).astype(np.int64) * classes + predicted.reshape(-1), minlength=classes**2)
    confusion = confusion.reshape(classes, classes)
    tp = np.diag(confusion).astype(np.float64)
    iou = tp / np.maximum(confusion.sum(0) + confusion.sum(1) - tp, 1)
    return {
        "mean_iou": float(iou.mean()),
        "mean_iou_shapes": float(iou[1:].mean()),
        "per_class_iou": [float(v) for v in iou],
        "pixel_accuracy": float(tp.sum() / confusion.sum()),
    }
