"""Cross-framework agreement: do two runs of the same model give the same answers, sample by sample?

MLModelScope's divergence analysis: the same weights in two frameworks should produce the same probabilities up to
floating-point noise. Accuracy alone hides disagreement (two frameworks can both score 98.9% while answering
different samples), so agreement is measured on the per-sample probability vectors of the accuracy runs:

* ``top1_agreement``: fraction of samples whose arg-max class is the same (ties broken by the lower index, as the
  post-processor does);
* ``max_abs_probability_diff``: the largest absolute difference of any class probability of any sample;
* ``mean_kl_divergence``: mean over samples of KL(reference || other), in nats;
* ``mean_js_divergence``: mean over samples of the Jensen-Shannon divergence, in nats (symmetric, bounded by ln 2).

The accuracy run writes each run's probabilities as an ``.npz`` (``write_outputs``); ``compare_outputs`` reads
two of them. Only samples both runs answered are compared.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.results import OutputsFile

OUTPUTS_FILE = "outputs.npz"
_EPSILON = 1e-12  # floor for probabilities inside logarithms: a 0 where the other run has mass is "very unlikely"


class Agreement(BaseModel):
    """How closely ``framework`` reproduces ``reference`` on the samples both answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str
    framework: str
    batch_size: int = Field(default=1, ge=1, description="Both runs' batch size.")
    device: str = "cpu"
    samples: int
    top1_agreement: float = Field(ge=0, le=1)
    max_abs_probability_diff: float = Field(ge=0)
    mean_kl_divergence: float = Field(ge=0)
    mean_js_divergence: float = Field(ge=0)


def write_outputs(directory: Path, probabilities: np.ndarray, answered: np.ndarray) -> OutputsFile:
    """Write (items, classes) float32 probabilities and the (items,) answered mask; return the file's record."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / OUTPUTS_FILE
    temporary = directory / f".{OUTPUTS_FILE}.tmp.npz"
    np.savez(temporary, probabilities=probabilities.astype(np.float32, copy=False), answered=answered.astype(bool))
    temporary.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return OutputsFile(path=str(path), sha256=digest, samples=int(answered.sum()), classes=int(probabilities.shape[1]))


def read_outputs(outputs: OutputsFile, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, answered) of a run's outputs file, checked against its recorded sha256."""
    path = Path(outputs.path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvaluationError(
            f"the per-sample outputs of {what} cannot be read from {path}: {e.strerror}.",
            hint="Agreement needs the accuracy runs' outputs on this machine: run with --mode accuracy or both.",
        ) from e
    if hashlib.sha256(data).hexdigest() != outputs.sha256:
        raise EvaluationError(
            f"the per-sample outputs of {what} at {path} changed since the run wrote them (sha256 mismatch).",
            hint="Run the evaluation again.",
        )
    with np.load(path, allow_pickle=False) as arrays:
        return np.asarray(arrays["probabilities"]), np.asarray(arrays["answered"])


def agreement(
    reference: np.ndarray,
    other: np.ndarray,
    *,
    reference_name: str,
    framework_name: str,
) -> Agreement:
    """Agreement of two (samples, classes) probability arrays over the same samples, in the same order."""
    if reference.shape != other.shape or reference.ndim != 2:
        raise EvaluationError(
            f"{framework_name} produced outputs of shape {list(other.shape)} but {reference_name} produced "
            f"{list(reference.shape)}; agreement compares the same samples and classes.",
            hint="Compare runs of the same model on the same dataset.",
        )
    if len(reference) == 0:
        raise EvaluationError(f"{reference_name} and {framework_name} answered no sample in common.")
    p = reference.astype(np.float64)
    q = other.astype(np.float64)
    same_top1 = np.argmax(p, axis=1) == np.argmax(q, axis=1)
    return Agreement(
        reference=reference_name,
        framework=framework_name,
        samples=len(p),
        top1_agreement=float(same_top1.mean()),
        max_abs_probability_diff=float(np.abs(p - q).max()),
        mean_kl_divergence=float(_kl(p, q).mean()),
        mean_js_divergence=float(_js(p, q).mean()),
    )


def compare_outputs(
    reference: OutputsFile, other: OutputsFile, *, reference_name: str, framework_name: str
) -> Agreement:
    """Agreement of two accuracy runs' outputs files over the samples both answered."""
    p, p_answered = read_outputs(reference, what=reference_name)
    q, q_answered = read_outputs(other, what=framework_name)
    if p.shape == q.shape:  # otherwise agreement() says which shapes differ
        both = p_answered & q_answered
        p, q = p[both], q[both]
    return agreement(p, q, reference_name=reference_name, framework_name=framework_name)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row KL(p || q) in nats; terms where p is 0 contribute 0."""
    p_safe = np.maximum(p, _EPSILON)
    q_safe = np.maximum(q, _EPSILON)
    terms = np.where(p > 0, p * (np.log(p_safe) - np.log(q_safe)), 0.0)
    return np.asarray(np.maximum(terms.sum(axis=1), 0.0))


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen-Shannon divergence in nats (0 for identical rows, at most ln 2)."""
    m = 0.5 * (p + q)
    return np.clip(0.5 * _kl(p, m) + 0.5 * _kl(q, m), 0.0, np.log(2.0))
