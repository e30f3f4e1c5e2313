"""What the accuracy run does with each batch's outputs: the one interface between the driver and a task's metrics.

The driver knows nothing about tasks. In accuracy mode it hands every answered batch to a ``Scorer`` (dataset item
indices plus the predictor's raw outputs); the scorer post-processes them (top-k classes, boxes after NMS mapped
back to the original image, masks resized back) and keeps what its metrics need, in memory bounded by the dataset's
answers rather than its inputs. After the run, ``result`` computes the task's metrics. One scorer per task:
classification (``scoring_classification``), object detection and semantic segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mlmodelscope.core.datasets.reader import ClassLabels, CocoTruth, Truth
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.results import AccuracyResult, Verdict
from mlmodelscope.core.manifests.model_spec import ModelSpec


class Scorer(Protocol):
    def record(self, items: np.ndarray, outputs: Sequence[np.ndarray]) -> None:
        """Post-process and keep one batch: row r of every output answers dataset item ``items[r]``."""
        ...

    @property
    def answered(self) -> np.ndarray:
        """(items,) bool: which dataset items have been recorded."""
        ...

    def warm(self, outputs: Sequence[np.ndarray]) -> None:
        """Run the post-processing once on a warm-up batch, keeping nothing (untimed)."""
        ...

    def result(self, verdict: Verdict, log_dir: Path) -> AccuracyResult:
        """The task's metrics over the answered items; writes per-item outputs (for agreement) into ``log_dir``."""
        ...


def make_scorer(spec: ModelSpec, truth: Truth, labels: Sequence[str] | None) -> Scorer:
    """The scorer of the model's task, checked against the dataset's kind of truth."""
    from mlmodelscope.core.evaluation.scoring_classification import ClassificationScorer

    if spec.task == "object_detection":
        from mlmodelscope.core.evaluation.scoring_detection import DetectionScorer

        return DetectionScorer(spec, _coco(spec, truth), labels)
    if spec.task == "semantic_segmentation":
        from mlmodelscope.core.evaluation.scoring_segmentation import SegmentationScorer

        return SegmentationScorer(spec, _coco(spec, truth), labels)
    if not isinstance(truth, ClassLabels):
        raise EvaluationError(
            f"a {spec.task} model is scored against class labels, but this dataset holds COCO annotations.",
            hint="Evaluate it on a folder or npz dataset of its task.",
        )
    return ClassificationScorer(spec, truth, labels)


def _coco(spec: ModelSpec, truth: Truth) -> CocoTruth:
    if not isinstance(truth, CocoTruth):
        raise EvaluationError(
            f"a {spec.task} model is scored against COCO annotations, but this dataset holds class labels only.",
            hint="Evaluate it on a `coco` dataset (images plus a COCO instances JSON).",
        )
    return truth
