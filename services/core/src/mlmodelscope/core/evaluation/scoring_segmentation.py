"""Scoring a semantic segmenter: a confusion matrix over every original-size pixel, accumulated batch by batch.

The ground truth is rasterised from the COCO instance annotations (polygons and RLE, with pycocotools.mask) into a
semantic mask per image: 0 is background and dataset class k is k + 1; annotations are drawn in file order, so a
later one covers an earlier one where they overlap. Crowd regions (``iscrowd: 1``) are "ignore" pixels: they
count for no class, as COCOeval ignores crowd boxes. The model's masks are resized back to the original image
(``SegmentationPostprocess``) and counted into the (classes, classes + 1) confusion matrix as they arrive (the last
column counts predicted ids outside the dataset's classes: wrong for the true class, no class's false positive).

Masks are not kept in memory. Each predicted mask is written, as it arrives, as one deflate-compressed uint8
entry (``item_<index>``) of an .npz written to a temporary file, moved into the log directory as ``masks.npz``
when the run is scored; only cross-framework agreement reads it back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
import weakref
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pycocotools import mask as mask_utils

from mlmodelscope.core.datasets.reader import CocoTruth
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.results import AccuracyResult, SegmentationMetrics, Verdict
from mlmodelscope.core.evaluation.scoring_detection import load_coco
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.processing.geometry import ItemGeometries
from mlmodelscope.core.processing.segmentation import SegmentationPostprocess

MASKS_FILE = "masks.npz"
IGNORE = 255  # ground-truth pixels that count for no class (crowd regions)


def annotation_mask(annotation: dict[str, Any], height: int, width: int) -> npt.NDArray[np.bool_]:
    """The (height, width) pixels of one COCO annotation's ``segmentation`` (polygons, RLE or compressed RLE)."""
    segmentation = annotation.get("segmentation")
    try:
        if isinstance(segmentation, list):
            if not segmentation:
                return np.zeros((height, width), bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict):
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            raise ValueError("it has no `segmentation` (polygons or RLE)")
        with warnings.catch_warnings():  # pycocotools 2.0.11's Masks.__array__ predates numpy 2's copy keyword
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            decoded = np.asarray(mask_utils.decode(rle), dtype=bool)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise EvaluationError(
            f"COCO annotation {annotation.get('id')} of image {annotation.get('image_id')} cannot be rasterised: {e}.",
            hint="Segmentation needs polygons ([[x1, y1, x2, y2, ...]], at least 3 points) or RLE per annotation.",
        ) from e
    if decoded.shape != (height, width):
        raise EvaluationError(
            f"COCO annotation {annotation.get('id')} has an RLE of {list(decoded.shape)} pixels, but its image "
            f"{annotation.get('image_id')} is {height}x{width}.",
            hint="The RLE `size` must be the image's [height, width].",
        )
    return decoded


def semantic_mask(
    annotations: Sequence[dict[str, Any]], height: int, width: int, class_of: dict[int, int]
) -> npt.NDArray[np.uint8]:
    """An image's semantic mask: 0 background, ``class_of[category_id]`` per annotation, IGNORE for crowds."""
    mask = np.zeros((height, width), np.uint8)
    for annotation in annotations:
        value = class_of.get(int(annotation["category_id"]))
        if value is None:
            continue  # a category the dataset does not score
        mask[annotation_mask(annotation, height, width)] = IGNORE if annotation.get("iscrowd") else value
    return mask


class _MaskArchive:
    """An .npz written entry by entry (a zip of .npy files), in a temporary file until ``move_to``."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="mlmodelscope-masks-", suffix=".npz")
        self.path = Path(name)
        os.close(handle)
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED)
        self._cleanup = weakref.finalize(self, _discard, self._zip, self.path)

    def add(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)

    def move_to(self, destination: Path) -> None:
        self._zip.close()
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self.path, destination)
        self._cleanup.detach()


def _discard(archive: zipfile.ZipFile, path: Path) -> None:
    archive.close()
    path.unlink(missing_ok=True)


class SegmentationScorer:
    """Accumulates the pixel confusion matrix of the answered images (the ``Scorer`` protocol)."""

    def __init__(self, spec: ModelSpec, truth: CocoTruth, labels: Sequence[str] | None) -> None:
        del labels  # class names come from the dataset's categories (mask class k + 1 is category k)
        self._post = SegmentationPostprocess.from_spec(spec)
        self._geometry = ItemGeometries(spec.inputs[0].preprocess, truth.original_hw)
        self._truth = truth
        self._coco = load_coco(truth.annotations_path)
        self._class_of = {int(c): k + 1 for k, c in enumerate(truth.category_ids)}
        self._classes = len(truth.category_ids) + 1
        self._confusion = np.zeros((self._classes, self._classes + 1), np.int64)
        self._answered = np.zeros(len(truth.image_ids), dtype=bool)
        self._archive: _MaskArchive | None = None
        self._lock = threading.Lock()

    @property
    def answered(self) -> np.ndarray:
        return self._answered

    def record(self, items: np.ndarray, outputs: Sequence[np.ndarray]) -> None:
        """Resize one batch's masks back, count them against the truth, and archive them (first answer counts)."""
        indices = [int(i) for i in np.asarray(items).reshape(-1)]
        masks = self._post.batch(outputs, [self._geometry(i) for i in indices])
        with self._lock:
            if self._archive is None:
                self._archive = _MaskArchive()
            for item, mask in zip(indices, masks, strict=True):
                if self._answered[item]:
                    continue  # LoadGen may answer an item twice; count its pixels once
                predicted = np.where((mask >= 0) & (mask < self._classes), mask, self._classes)
                self._count(self.truth_mask(item), predicted)
                self._archive.add(f"item_{item}", predicted.astype(np.uint8 if self._classes < 255 else np.uint16))
                self._answered[item] = True

    def warm(self, outputs: Sequence[np.ndarray]) -> None:
        """Post-process a warm-up batch as if every row were item 0's image, keeping nothing."""
        rows = len(outputs[self._post.mask_output]) if len(outputs) > self._post.mask_output else 0
        self._post.batch(outputs, [self._geometry(0)] * rows)

    def truth_mask(self, item: int) -> npt.NDArray[np.uint8]:
        """Dataset item ``item``'s semantic ground-truth mask at its original size."""
        height, width = (int(v) for v in self._truth.original_hw[item])
        annotations = self._coco.imgToAnns.get(int(self._truth.image_ids[item]), [])
        return semantic_mask(annotations, height, width, self._class_of)

    def result(self, verdict: Verdict, log_dir: Path) -> AccuracyResult:
        """Mean IoU, per-class IoU and pixel accuracy over the answered images; moves the masks into ``log_dir``."""
        count = int(self._answered.sum())
        if count == 0 or self._archive is None:
            raise EvaluationError("the accuracy run answered no image.", hint=f"See the LoadGen logs in {log_dir}.")
        path = log_dir / MASKS_FILE
        self._archive.move_to(path)
        self._archive = None
        names = ("background", *self._truth.category_names)
        metrics = segmentation_metrics(self._confusion, names, str(path))
        return AccuracyResult(count=count, verdict=verdict, log_dir=str(log_dir), segmentation=metrics)

    def _count(self, truth: npt.NDArray[np.uint8], predicted: np.ndarray) -> None:
        if truth.shape != predicted.shape:
            raise EvaluationError(
                f"a predicted mask of {list(predicted.shape)} pixels does not match its {list(truth.shape)} truth."
            )
        scored = truth != IGNORE
        columns = self._classes + 1
        flat = truth[scored].astype(np.int64) * columns + predicted[scored]
        self._confusion += np.bincount(flat, minlength=self._classes * columns).reshape(self._classes, columns)


def segmentation_metrics(confusion: np.ndarray, names: Sequence[str], masks_file: str | None) -> SegmentationMetrics:
    """Metrics of a (classes, classes + 1) confusion matrix (rows: truth; last column: predictions of no class)."""
    classes = confusion.shape[0]
    tp = np.diag(confusion[:, :classes]).astype(np.float64)
    truth_pixels = confusion.sum(axis=1).astype(np.float64)
    predicted_pixels = confusion[:, :classes].sum(axis=0).astype(np.float64)
    union = truth_pixels + predicted_pixels - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
    total = float(truth_pixels.sum())
    return SegmentationMetrics(
        mean_iou=float(iou[present].mean()) if present.any() else 0.0,
        pixel_accuracy=float(tp.sum() / total) if total else 0.0,
        per_class_iou={names[c]: float(iou[c]) for c in range(classes) if present[c]},
        classes=classes,
        masks_file=masks_file,
    )
