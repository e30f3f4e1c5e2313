"""Cross-framework agreement for detection and segmentation: do two runs of one model give the same answers?

The classification analysis (``agreement``) compares probability vectors; detectors and segmenters answer with
boxes and masks, so they get their own measures, computed from the files their accuracy runs wrote:

* detection (two ``detections.json`` COCO results files): per image, each reference detection, best score first,
  is matched to the unmatched other detection of the same class with the highest IoU, if that IoU is >= 0.5.
  ``matched_fraction`` is 2 * matched / (reference detections + other detections): 1 when both runs found the same
  boxes, lower for every box only one run found. ``mean_matched_iou`` and ``max_abs_score_diff`` describe the
  matched pairs (floating-point noise gives IoU ~1 and score differences ~1e-6);
* segmentation (two ``masks.npz``): ``pixel_agreement``, the fraction of pixels of the items both runs answered
  that got the same class (``differing_pixels`` counts the others).

Both carry the runs' batch size and device, as the classification ``Agreement`` does, so an evaluation's summary
can say which pair of runs each one compares.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.agreement import Agreement, compare_outputs
from mlmodelscope.core.evaluation.results import AccuracyResult, DetectionMetrics, SegmentationMetrics
from mlmodelscope.core.processing.detection import iou_one_to_many

MATCH_IOU = 0.5


class DetectionAgreement(BaseModel):
    """How closely ``framework``'s detections reproduce ``reference``'s, image by image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str
    framework: str
    batch_size: int = Field(default=1, ge=1, description="Both runs' batch size.")
    device: str = "cpu"
    images: int = Field(ge=0, description="Images with a detection in either run.")
    reference_detections: int = Field(ge=0)
    framework_detections: int = Field(ge=0)
    matched: int = Field(ge=0, description="Pairs of the same class with IoU >= 0.5 (greedy, best score first).")
    matched_fraction: float = Field(
        ge=0, le=1, description="2 * matched / (reference + framework detections); 1 when neither run detects."
    )
    mean_matched_iou: float | None = Field(default=None, description="Mean IoU of the matched pairs (None: none).")
    max_abs_score_diff: float | None = Field(default=None, description="Largest score difference of a matched pair.")

    @property
    def unmatched_reference(self) -> int:
        """Reference detections no detection of ``framework`` matches (boxes only the reference found)."""
        return self.reference_detections - self.matched

    @property
    def unmatched_framework(self) -> int:
        """Detections of ``framework`` that match no reference detection (boxes only it found)."""
        return self.framework_detections - self.matched


class SegmentationAgreement(BaseModel):
    """How closely ``framework``'s masks reproduce ``reference``'s, pixel by pixel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str
    framework: str
    batch_size: int = Field(default=1, ge=1, description="Both runs' batch size.")
    device: str = "cpu"
    images: int = Field(ge=0, description="Items both runs answered.")
    pixels: int = Field(ge=0, description="Original-image pixels compared.")
    differing_pixels: int = Field(ge=0, description="Pixels of those given a different class.")
    pixel_agreement: float = Field(ge=0, le=1, description="Fraction of those pixels given the same class.")


def read_detections(path: str | Path, sha256: str | None = None, *, what: str) -> list[dict[str, Any]]:
    """A run's COCO results list, checked against its recorded sha256 when one is given."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise EvaluationError(
            f"the detections of {what} cannot be read from {path}: {e.strerror}.",
            hint="Agreement needs the accuracy runs' detections.json on this machine: run with --mode accuracy.",
        ) from e
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise EvaluationError(f"the detections of {what} at {path} changed since the run wrote them (sha256).")
    try:
        results = json.loads(data)
    except ValueError as e:
        raise EvaluationError(f"the detections of {what} at {path} are not JSON: {e}.") from e
    if not isinstance(results, list):
        raise EvaluationError(f"the detections of {what} at {path} are not a COCO results list.")
    return results


def detection_agreement(
    reference: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]], *, reference_name: str, framework_name: str
) -> DetectionAgreement:
    """Agreement of two COCO results lists ([{image_id, category_id, bbox [x, y, w, h], score}])."""
    by_image: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = defaultdict(lambda: ([], []))
    for side, results in enumerate((reference, other)):
        for detection in results:
            by_image[int(detection["image_id"])][side].append(detection)
    ious: list[float] = []
    score_diffs: list[float] = []
    for ref, oth in by_image.values():
        for iou, diff in _match_image(ref, oth):
            ious.append(iou)
            score_diffs.append(diff)
    total = len(reference) + len(other)
    return DetectionAgreement(
        reference=reference_name,
        framework=framework_name,
        images=len(by_image),
        reference_detections=len(reference),
        framework_detections=len(other),
        matched=len(ious),
        matched_fraction=2 * len(ious) / total if total else 1.0,
        mean_matched_iou=float(np.mean(ious)) if ious else None,
        max_abs_score_diff=float(np.max(score_diffs)) if score_diffs else None,
    )


def _match_image(reference: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(IoU, |score difference|) of each greedy same-class match of one image's detections."""
    if not reference or not other:
        return []
    boxes = _xyxy(other)
    classes = np.array([int(d["category_id"]) for d in other])
    scores = np.array([float(d["score"]) for d in other])
    free = np.ones(len(other), bool)
    pairs = []
    for detection in sorted(reference, key=lambda d: -float(d["score"])):
        iou = iou_one_to_many(_xyxy([detection])[0], boxes)
        iou[~free | (classes != int(detection["category_id"]))] = -1.0
        best = int(np.argmax(iou))
        if iou[best] >= MATCH_IOU:
            free[best] = False
            pairs.append((float(iou[best]), abs(float(detection["score"]) - float(scores[best]))))
    return pairs


def _xyxy(detections: Sequence[dict[str, Any]]) -> np.ndarray:
    xywh = np.array([d["bbox"] for d in detections], np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def compare_detections(
    reference: DetectionMetrics, other: DetectionMetrics, *, reference_name: str, framework_name: str
) -> DetectionAgreement:
    """Agreement of two detection accuracy runs, from their detections files."""
    ref = read_detections(reference.detections_file, reference.detections_sha256, what=reference_name)
    oth = read_detections(other.detections_file, other.detections_sha256, what=framework_name)
    return detection_agreement(ref, oth, reference_name=reference_name, framework_name=framework_name)


def compare_masks(
    reference: SegmentationMetrics | str | Path,
    other: SegmentationMetrics | str | Path,
    *,
    reference_name: str,
    framework_name: str,
) -> SegmentationAgreement:
    """Pixel agreement of two segmentation accuracy runs over the items both answered, from their masks files."""
    paths = [_masks_path(run, name) for run, name in ((reference, reference_name), (other, framework_name))]
    same = pixels = images = 0
    try:
        with np.load(paths[0], allow_pickle=False) as ref, np.load(paths[1], allow_pickle=False) as oth:
            for key in sorted(set(ref.files) & set(oth.files)):
                a, b = ref[key], oth[key]
                if a.shape != b.shape:
                    raise EvaluationError(
                        f"{key} has a {list(a.shape)} mask in {reference_name} but {list(b.shape)} in "
                        f"{framework_name}; agreement compares runs on the same dataset."
                    )
                same += int(np.count_nonzero(a == b))
                pixels += a.size
                images += 1
    except (OSError, ValueError) as e:
        raise EvaluationError(f"cannot read the masks files {paths[0]} and {paths[1]}: {e}.") from e
    if images == 0:
        raise EvaluationError(f"{reference_name} and {framework_name} answered no image in common.")
    return SegmentationAgreement(
        reference=reference_name,
        framework=framework_name,
        images=images,
        pixels=pixels,
        differing_pixels=pixels - same,
        pixel_agreement=same / pixels if pixels else 1.0,
    )


def _masks_path(run: SegmentationMetrics | str | Path, name: str) -> Path:
    if isinstance(run, SegmentationMetrics):
        if run.masks_file is None:
            raise EvaluationError(f"the accuracy run of {name} kept no masks file.", hint="Run it again.")
        return Path(run.masks_file)
    return Path(run)


def _kept(accuracy: AccuracyResult) -> str:
    if accuracy.outputs is not None:
        return "per-sample probabilities (classification)"
    if accuracy.detection is not None:
        return "detections (object detection)"
    if accuracy.segmentation is not None:
        return "masks (semantic segmentation)"
    return "no per-sample answers"


def incomparable_reason(
    reference: AccuracyResult, other: AccuracyResult, *, reference_name: str, framework_name: str
) -> str:
    """Why ``compare_runs`` found nothing to compare in two accuracy runs (it returned None)."""
    if _kept(reference) == _kept(other):
        return (
            f"neither {reference_name} nor {framework_name} kept per-sample answers (probabilities, detections or "
            "masks): their agent predates agreement; run the evaluation again."
        )
    return (
        f"{framework_name} kept {_kept(other)} but {reference_name} kept {_kept(reference)}: agreement compares "
        "runs of the same task; compare runs of the same model."
    )


def compare_runs(
    reference: AccuracyResult, other: AccuracyResult, *, reference_name: str, framework_name: str
) -> Agreement | DetectionAgreement | SegmentationAgreement | None:
    """The agreement measure of the runs' task (classification, detection or segmentation); None if they kept
    nothing to compare (e.g. a run without per-sample outputs)."""
    names = {"reference_name": reference_name, "framework_name": framework_name}
    if reference.outputs is not None and other.outputs is not None:
        return compare_outputs(reference.outputs, other.outputs, **names)
    if reference.detection is not None and other.detection is not None:
        return compare_detections(reference.detection, other.detection, **names)
    if reference.segmentation is not None and other.segmentation is not None:
        return compare_masks(reference.segmentation, other.segmentation, **names)
    return None
