"""Scoring an object detector: per-image detections during the run, COCO's box metrics (pycocotools) after it.

Every accuracy batch is post-processed as it arrives (``DetectionPostprocess``: decode, threshold, NMS, max
detections, back to original pixels) and only the kept detections are held, a few hundred numbers per image. After
the run they are written as a standard COCO results JSON (``detections.json``: ``[{image_id, category_id,
bbox: [x, y, w, h], score}]`` in original-image pixels), which is what pycocotools' ``COCOeval`` (iouType
``bbox``) scores, restricted to the images the run answered. Writing the file first and scoring exactly what it
holds means anyone can recompute the metrics from it with pycocotools alone. Dataset class k is reported as the
k-th COCO category by ascending id. pycocotools prints progress to stdout; it is captured, never shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mlmodelscope.core.datasets.reader import CocoTruth
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.results import AccuracyResult, DetectionMetrics, Verdict
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.processing.detection import DetectionPostprocess, Detections
from mlmodelscope.core.processing.geometry import ItemGeometries

DETECTIONS_FILE = "detections.json"
CocoResult = dict[str, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow pycocotools' progress prints (it writes to stdout unconditionally)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_coco(path: Path) -> COCO:
    """The COCO ground truth of ``path``, loaded without pycocotools' prints; EvaluationError if unreadable."""
    try:
        with _quiet():
            return COCO(str(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EvaluationError(
            f"cannot load the COCO annotations {path}: {e}.",
            hint="The dataset's annotations_file must be a COCO instances JSON (images, annotations, categories).",
        ) from e


class DetectionScorer:
    """Keeps each answered image's detections and scores them with COCOeval (the ``Scorer`` protocol)."""

    def __init__(self, spec: ModelSpec, truth: CocoTruth, labels: Sequence[str] | None) -> None:
        self._post = DetectionPostprocess.from_spec(spec)
        self._geometry = ItemGeometries(spec.inputs[0].preprocess, truth.original_hw)
        self._truth = truth
        del labels  # class names come from the dataset's categories (class k is the k-th category by id)
        self._answered = np.zeros(len(truth.image_ids), dtype=bool)
        self._detections: dict[int, Detections] = {}
        self._lock = threading.Lock()

    @property
    def answered(self) -> np.ndarray:
        return self._answered

    def record(self, items: np.ndarray, outputs: Sequence[np.ndarray]) -> None:
        """Post-process one batch and keep its detections (an item answered twice keeps the later answer)."""
        indices = [int(i) for i in np.asarray(items).reshape(-1)]
        per_image = self._post.batch(outputs, [self._geometry(i) for i in indices])
        classes = len(self._truth.category_ids)
        with self._lock:
            for item, detections in zip(indices, per_image, strict=True):
                self._detections[item] = detections[detections[:, 5] < classes]  # drop classes the dataset lacks
                self._answered[item] = True

    def warm(self, outputs: Sequence[np.ndarray]) -> None:
        """Post-process a warm-up batch as if every row were item 0's image, keeping nothing."""
        rows = len(outputs[self._post.box_output]) if len(outputs) > self._post.box_output else 0
        self._post.batch(outputs, [self._geometry(0)] * rows)

    def result(self, verdict: Verdict, log_dir: Path) -> AccuracyResult:
        """Write ``detections.json`` into ``log_dir`` and score it with COCOeval over the answered images."""
        count = int(self._answered.sum())
        if count == 0:
            raise EvaluationError("the accuracy run answered no image.", hint=f"See the LoadGen logs in {log_dir}.")
        results = self.coco_results()
        path, digest = write_detections(log_dir, results)
        image_ids = [int(self._truth.image_ids[i]) for i in np.flatnonzero(self._answered)]
        evaluation = evaluate_bbox(load_coco(self._truth.annotations_path), results, image_ids, self._truth)
        metrics = detection_metrics(evaluation, self._truth.category_names, len(results), str(path), digest)
        return AccuracyResult(count=count, verdict=verdict, log_dir=str(log_dir), detection=metrics)

    def coco_results(self) -> list[CocoResult]:
        """The kept detections as COCO results, by item then by descending score."""
        categories = self._truth.category_ids
        results: list[CocoResult] = []
        for item in sorted(self._detections):
            image_id = int(self._truth.image_ids[item])
            for x1, y1, x2, y2, score, klass in self._detections[item].tolist():
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(categories[int(klass)]),
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(score, 6),
                    }
                )
        return results


def write_detections(log_dir: Path, results: list[CocoResult]) -> tuple[Path, str]:
    """Write the COCO results list as ``log_dir/detections.json``; returns its path and sha256."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / DETECTIONS_FILE
    data = json.dumps(results, separators=(",", ":")).encode("utf-8")
    temporary = log_dir / f".{DETECTIONS_FILE}.tmp"
    temporary.write_bytes(data)
    temporary.replace(path)
    return path, hashlib.sha256(data).hexdigest()


def evaluate_bbox(gt: COCO, results: list[CocoResult], image_ids: list[int], truth: CocoTruth) -> COCOeval:
    """COCOeval (bbox) of ``results`` over ``image_ids`` and the dataset's categories, evaluated and summarised."""
    with _quiet():
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes cannot load an empty list; an empty result set scores 0 wherever there is ground truth
            dt = COCO()
            dt.dataset = {"images": gt.dataset.get("images", []), "categories": gt.dataset.get("categories", [])}
            dt.dataset["annotations"] = []
            dt.createIndex()
        evaluation = COCOeval(gt, dt, iouType="bbox")
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.params.catIds = list(truth.category_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def detection_metrics(
    evaluation: COCOeval, class_names: Sequence[str], detections: int, path: str, sha256: str
) -> DetectionMetrics:
    """DetectionMetrics from a summarised COCOeval (stats[0..5], stats[8]; per-class AP and the IoU .5 PR curve)."""
    stats = [float(s) for s in evaluation.stats]
    precision = np.asarray(evaluation.eval["precision"])  # (IoU thresholds, recall points, classes, areas, maxDets)
    all_area, max_100 = 0, len(evaluation.params.maxDets) - 1
    per_class: dict[str, float] = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k, all_area, max_100]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    at_50 = precision[0, :, :, all_area, max_100]  # (recall points, classes)
    with_truth = (at_50 > -1).all(axis=0)
    pr_curve: dict[str, list[float]] = {}
    if with_truth.any():
        pr_curve = {
            "recall": [round(float(r), 2) for r in evaluation.params.recThrs],
            "precision": [float(v) for v in at_50[:, with_truth].mean(axis=1)],
        }
    return DetectionMetrics(
        map=stats[0],
        map_50=stats[1],
        map_75=stats[2],
        map_small=stats[3],
        map_medium=stats[4],
        map_large=stats[5],
        mar_100=stats[8],
        per_class_ap=per_class,
        pr_curve=pr_curve,
        detections=detections,
        detections_file=path,
        detections_sha256=sha256,
    )
