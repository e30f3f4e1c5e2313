"""``Postprocessor``: turns a classifier's (batch, classes) output into probabilities and ranked top-k classes.

It runs once per query batch on the measured path, so it is vectorised numpy with no Python loop over classes or
rows. The ranking is deterministic: descending probability, ties broken by the lower class index, so two
frameworks that produce the same scores report the same classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.processing.steps import PostprocessStep

DEFAULT_TOP_K = 5
_ARGMAX_PASSES_UP_TO = 16  # larger k: one stable sort is cheaper than k argmax passes


@dataclass(frozen=True, eq=False)
class Classification:
    """The post-processed output of one batch.

    ``probabilities`` is (batch, classes) float32: the softmax of the output, or the output itself when the
    manifest has no softmax step. ``top_indices`` (batch, k) int64 and ``top_probabilities`` (batch, k) float32 are
    ordered by descending probability, ties by ascending class index.
    """

    probabilities: npt.NDArray[np.float32]
    top_indices: npt.NDArray[np.int64]
    top_probabilities: npt.NDArray[np.float32]
    labels: tuple[str, ...] | None = None

    def labels_of(self, row: int) -> list[str]:
        """The names of row ``row``'s top classes, best first; class indices as text when there are no labels."""
        indices = self.top_indices[row].tolist()
        if self.labels is None:
            return [str(i) for i in indices]
        return [self.labels[i] for i in indices]


class Postprocessor:
    """Applies a model output's post-processing steps (at most one softmax and one top_k, in any order)."""

    def __init__(self, steps: Sequence[PostprocessStep], labels: Sequence[str] | None = None) -> None:
        self.steps: tuple[PostprocessStep, ...] = tuple(steps)
        self.labels: tuple[str, ...] | None = tuple(labels) if labels is not None else None
        seen: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            if step.kind in seen:
                raise ProcessingError(
                    f"post-processing step {index} ({step.kind}) repeats step {seen[step.kind]}; "
                    "each kind may appear once.",
                    hint="Remove the duplicate step from the Model manifest's postprocess list.",
                )
            seen[step.kind] = index
        self._softmax_axis: int | None = next((s.softmax.axis for s in self.steps if s.softmax is not None), None)
        self._k: int = next((s.top_k.k for s in self.steps if s.top_k is not None), DEFAULT_TOP_K)

    def __call__(self, outputs: npt.NDArray[np.generic]) -> Classification:
        """Post-process a (batch, classes) output; (batch, classes, 1, 1)-style outputs are flattened first."""
        scores = _as_batch_by_classes(np.asarray(outputs))
        classes = scores.shape[1]
        if self.labels is not None and len(self.labels) != classes:
            raise ProcessingError(
                f"the model outputs {classes} classes but its labels file has {len(self.labels)} labels.",
                hint="Use the labels file that matches this model (some models add a background class at index 0).",
            )
        if self._softmax_axis is not None:
            if not -2 <= self._softmax_axis <= 1:
                raise ProcessingError(
                    f"post-processing softmax axis {self._softmax_axis} is out of range for the (batch, classes) "
                    "output.",
                    hint="Use axis -1 (the classes axis).",
                )
            probabilities = softmax(scores, axis=self._softmax_axis)
        else:
            probabilities = scores.astype(np.float32, copy=False)
        top_indices = top_k_indices(probabilities, min(self._k, classes))
        top_probabilities = np.take_along_axis(probabilities, top_indices, axis=1)
        return Classification(probabilities, top_indices, top_probabilities, self.labels)


def softmax(logits: npt.NDArray[np.generic], axis: int = -1) -> npt.NDArray[np.float32]:
    """Numerically stable softmax in float32: exp(x - max) / sum(exp(x - max)) along ``axis``."""
    x = np.asarray(logits, dtype=np.float32)
    shifted: npt.NDArray[np.float32] = x - x.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def top_k_indices(scores: npt.NDArray[np.floating], k: int) -> npt.NDArray[np.int64]:
    """Indices of each row's ``k`` largest scores, by descending score and then ascending index; NaN ranks last.

    For the usual small k this takes k vectorised ``argmax`` passes, masking each winner: ``argmax`` returns the
    first of equal maxima, which is exactly the tie rule, and k passes over a (256, 1000) batch cost less than one
    ``argpartition``. Rows that hold fewer than k scores above -inf (where masked and real -inf, or NaN, would be
    confused), and large k, use a full stable sort instead.
    """
    rows, classes = scores.shape
    if not 1 <= k <= classes:
        raise ProcessingError(f"top_k {k} must be between 1 and the number of classes ({classes}).")
    if k > _ARGMAX_PASSES_UP_TO:
        return _stable_top_k(scores, k)
    work = np.where(np.isnan(scores), -np.inf, scores)
    short = np.count_nonzero(work > -np.inf, axis=1) < k
    every_row = np.arange(rows)
    top = np.empty((rows, k), dtype=np.int64)
    for rank in range(k):
        winners = work.argmax(axis=1)
        top[:, rank] = winners
        work[every_row, winners] = -np.inf
    if short.any():
        top[short] = _stable_top_k(scores[short], k)
    return top


def _stable_top_k(scores: npt.NDArray[np.floating], k: int) -> npt.NDArray[np.int64]:
    """Top k by a full stable sort of the negated scores (NaN sorts last, after -inf)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64, copy=False)


def load_labels(path: Path) -> list[str]:
    """Read a labels file: one label per line, line i names class i; surrounding whitespace is stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProcessingError(
            f"cannot read labels file {path}: {e}.", hint="Check the model's outputs[].labels entry."
        ) from e
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ProcessingError(
            f"labels file {path} is empty.", hint="It must hold one label per line, line i naming class i."
        )
    blank = [i + 1 for i, label in enumerate(labels) if not label]
    if blank:
        raise ProcessingError(
            f"labels file {path} has blank lines ({', '.join(map(str, blank[:5]))}) between labels, which would "
            "leave classes unnamed.",
            hint="Remove the blank lines or name those classes; line i must name class i.",
        )
    return labels


def _as_batch_by_classes(outputs: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """(batch, classes) as given; (batch, classes, 1, 1) and similar are flattened; anything else is an error."""
    if outputs.ndim == 2 and outputs.shape[1] >= 1:
        return outputs
    trailing = outputs.shape[1:]
    if outputs.ndim > 2 and sum(d != 1 for d in trailing) <= 1 and outputs.size:
        return outputs.reshape(outputs.shape[0], -1)
    raise ProcessingError(
        f"a classification output must be (batch, classes), got shape {list(outputs.shape)}.",
        hint="Set the output's type to raw in the Model manifest if it is not a classifier's scores.",
    )
