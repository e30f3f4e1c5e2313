"""Classification accuracy: top-1/top-5 over the answered items, and the per-item probabilities for agreement.

The classification ``Scorer`` (see ``scoring``): every accuracy batch is post-processed as the manifest says
(softmax, top-k) and its top-5 classes and probability vectors are kept per dataset item, so memory grows with
items x classes, never with the inputs. ``result`` scores them against the dataset's class labels and writes the
probabilities (``agreement.write_outputs``) so two frameworks can be compared sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlmodelscope.core.datasets.reader import ClassLabels
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.agreement import write_outputs
from mlmodelscope.core.evaluation.results import AccuracyResult, Verdict
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.processing.postprocess import Postprocessor

TOP_K_RECORDED = 5


class ClassificationScorer:
    """Keeps each item's top-5 classes ((items, 5) int64, -1 until answered) and post-processed probabilities.

    ``probabilities`` is (items, classes) float32 (softmax when the manifest asks for it), allocated on the first
    answer, when the number of classes is known.
    """

    def __init__(self, spec: ModelSpec, truth: ClassLabels, labels: Sequence[str] | None) -> None:
        self.truth = truth
        self.postprocessor = Postprocessor(spec.outputs[0].postprocess, list(labels) if labels is not None else None)
        self.top_k = np.full((len(truth.labels), TOP_K_RECORDED), -1, dtype=np.int64)
        self.probabilities: np.ndarray | None = None

    def record(self, items: np.ndarray, outputs: Sequence[np.ndarray]) -> None:
        result = self.postprocessor(outputs[0])
        k = min(TOP_K_RECORDED, result.top_indices.shape[1])
        self.top_k[items, :k] = result.top_indices[:, :k]
        if self.probabilities is None:
            self.probabilities = np.zeros((len(self.top_k), result.probabilities.shape[1]), dtype=np.float32)
        self.probabilities[items] = result.probabilities

    @property
    def answered(self) -> np.ndarray:
        return np.asarray(self.top_k[:, 0] >= 0)

    def warm(self, outputs: Sequence[np.ndarray]) -> None:
        self.postprocessor(outputs[0])

    def result(self, verdict: Verdict, log_dir: Path) -> AccuracyResult:
        answered = self.answered
        count = int(answered.sum())
        if count == 0:
            raise EvaluationError("the accuracy run answered no sample.", hint=f"See the LoadGen logs in {log_dir}.")
        top_k, truth = self.top_k[answered], self.truth.labels[answered]
        probabilities = self.probabilities
        outputs = write_outputs(log_dir, probabilities, answered) if probabilities is not None else None
        return AccuracyResult(
            top1=float(np.mean(top_k[:, 0] == truth)),
            top5=float(np.mean((top_k == truth[:, None]).any(axis=1))),
            count=count,
            verdict=verdict,
            log_dir=str(log_dir),
            outputs=outputs,
        )
