"""Detection post-processing (box formats, NMS, thresholds, max detections, mapping back) and its COCO scoring."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mlmodelscope.core.datasets.reader import CocoTruth
from mlmodelscope.core.errors import EvaluationError, ProcessingError
from mlmodelscope.core.evaluation.agreement_tasks import DetectionAgreement, compare_runs, detection_agreement
from mlmodelscope.core.evaluation.results import Verdict
from mlmodelscope.core.evaluation.scoring import make_scorer
from mlmodelscope.core.evaluation.scoring_detection import DetectionScorer
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.processing.detection import DetectionPostprocess, iou_one_to_many, nms, to_xyxy
from mlmodelscope.core.processing.geometry import Geometry, geometry_of

LETTERBOX = [
    {"resize": {"size": [64, 64], "keep_aspect_ratio": True, "fit": "contain"}},
    {"pad": {"size": [64, 64], "value": 114}},
    {"layout": "CHW"},
]
VERDICT = Verdict(valid=True, result="VALID", constraints=[], recommendations=[], early_stopping=[])


def _spec(outputs: list[dict[str, Any]], preprocess: list[dict[str, Any]] | None = None) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "task": "object_detection",
            "framework": {"name": "onnxruntime"},
            "artifacts": [{"uri": "zoo:test", "format": "onnx"}],
            "inputs": [{"name": "x", "shape": [3, 64, 64], "preprocess": preprocess or LETTERBOX}],
            "outputs": outputs,
        }
    )


def _separate(box_format: str = "xyxy", coordinates: str = "pixels", post: list[Any] | None = None) -> ModelSpec:
    boxes = {"box_format": box_format, "box_coordinates": coordinates, "postprocess": post or []}
    return _spec(
        [
            {"name": "boxes", "type": "boxes", "shape": [-1, 4], **boxes},
            {"name": "scores", "type": "scores", "shape": [-1]},
            {"name": "classes", "type": "classes", "shape": [-1]},
        ]
    )


IDENTITY = Geometry((64, 64), (64, 64))


# --- box formats ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box_format", "values"),
    [
        ("xyxy", [10, 20, 30, 60]),
        ("xywh", [10, 20, 20, 40]),
        ("cxcywh", [20, 40, 20, 40]),
        ("yxyx", [20, 10, 60, 30]),
    ],
)
def test_box_formats_decode_to_corners(box_format: str, values: list[float]) -> None:
    np.testing.assert_allclose(to_xyxy(np.array([values]), box_format), [[10, 20, 30, 60]])  # type: ignore[arg-type]
    normalized = np.array(values, np.float64) / np.array([100, 80, 100, 80] if box_format != "yxyx" else [80, 100] * 2)
    decoded = to_xyxy(normalized[None], box_format, "normalized", (80, 100))  # type: ignore[arg-type]
    np.testing.assert_allclose(decoded, [[10, 20, 30, 60]])


# --- NMS -----------------------------------------------------------------------------------------------------


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None, threshold: float) -> list[int]:
    """Textbook greedy NMS with Python loops: the best remaining box suppresses every box overlapping it."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    suppressed: set[int] = set()
    keep = []
    for i in order:
        if i in suppressed:
            continue
        keep.append(i)
        for j in order:
            same_class = classes is None or classes[i] == classes[j]
            if j not in suppressed and j != i and same_class and iou(boxes[i], boxes[j]) > threshold:
                suppressed.add(j)
    return keep


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("class_aware", [True, False])
def test_nms_equals_brute_force(seed: int, class_aware: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    corners = rng.uniform(0, 80, (n, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (n, 2))], axis=1)
    scores = rng.choice(np.linspace(0.1, 1.0, 12), n)  # repeated scores exercise the tie rule
    classes = rng.integers(0, 3, n).astype(np.float64)
    got = nms(boxes, scores, classes if class_aware else None, 0.4)
    assert got.tolist() == _reference_nms(boxes, scores, classes if class_aware else None, 0.4)


def test_class_aware_keeps_overlapping_boxes_of_other_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0.0, 1.0, 0.0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, None, 0.5).tolist() == [0]


def test_iou_of_disjoint_and_degenerate_boxes() -> None:
    box = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array([[20, 20, 30, 30], [0, 0, 10, 10], [5, 0, 15, 10], [3, 3, 3, 3]], np.float64)
    np.testing.assert_allclose(iou_one_to_many(box, others), [0, 1, 50 / 150, 0])


# --- the post-processing chain -------------------------------------------------------------------------------


def _row(boxes: list[list[float]], scores: list[float], classes: list[float]) -> list[np.ndarray]:
    return [np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.float32)]


def test_threshold_nms_and_max_detections() -> None:
    post = [{"score_threshold": {"threshold": 0.3}}, {"nms": {"iou_threshold": 0.5}}, {"top_k": {"k": 2}}]
    process = DetectionPostprocess.from_spec(_separate(post=post))
    row = _row(
        [[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 40, 10, 50]],
        [0.9, 0.8, 0.2, 0.6, 0.5],
        [0, 0, 1, 1, 2],
    )
    out = process.image(row, IDENTITY)
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out[:, 4], [0.9, 0.6], rtol=1e-6)  # 0.8 suppressed, 0.2 below threshold, 0.5 cut
    np.testing.assert_allclose(out[0, :4], [0, 0, 10, 10])
    assert out[:, 5].tolist() == [0, 1]


def test_default_max_detections_and_sigmoid() -> None:
    process = DetectionPostprocess.from_spec(_separate())
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 40, (150, 2))
    boxes = np.concatenate([corners, corners + 5], axis=1)
    out = process.image([boxes, rng.uniform(0, 1, 150), np.zeros(150)], IDENTITY)
    assert len(out) == 100 and (np.diff(out[:, 4]) <= 0).all()
    sigmoid = DetectionPostprocess.from_spec(_separate(post=[{"sigmoid": {}}, {"score_threshold": {"threshold": 0.5}}]))
    out = sigmoid.image(_row([[0, 0, 5, 5], [9, 9, 19, 19]], [0.0, -1.0], [0, 0]), IDENTITY)
    np.testing.assert_allclose(out[:, 4], [0.5])  # sigmoid(0) = 0.5 is kept, sigmoid(-1) = 0.27 is not


def test_combined_detections_with_columns_and_background_offset() -> None:
    spec = _spec(
        [
            {
                "name": "det",
                "type": "detections",
                "shape": [-1, 6],
                "columns": {"box": 2, "score": 1, "class": 0},
                "box_format": "yxyx",
                "box_coordinates": "normalized",
                "class_offset": 1,
            }
        ]
    )
    process = DetectionPostprocess.from_spec(spec)
    det = np.array([[1, 0.9, 0.0, 0.25, 0.5, 0.75], [0, 0.95, 0, 0, 1, 1], [3, 0.4, 0.5, 0.5, 1, 1]])
    out = process.image([det], IDENTITY)
    assert out[:, 5].tolist() == [0, 2]  # the model's class 0 (background) is dropped
    np.testing.assert_allclose(out[0, :4], [16, 0, 48, 32])


def test_per_class_scores_take_the_best_class() -> None:
    spec = _spec([{"name": "b", "type": "boxes", "shape": [-1, 4]}, {"name": "s", "type": "scores", "shape": [-1, 3]}])
    process = DetectionPostprocess.from_spec(spec)
    scores = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    out = process.image([np.array([[0, 0, 5, 5], [10, 10, 20, 20]]), scores], IDENTITY)
    assert out[:, 5].tolist() == [1, 0] and out[:, 4].tolist() == [0.7, 0.6]


def test_batch_rows_are_independent_and_mapped_back() -> None:
    process = DetectionPostprocess.from_spec(_separate(post=[{"nms": {"iou_threshold": 0.5}}]))
    steps = _spec([{"name": "d", "type": "detections", "shape": [6], "columns": {}}]).inputs[0].preprocess
    geometries = [geometry_of(steps, (100, 200)), geometry_of(steps, (64, 64))]
    boxes = np.array([[[0, 16, 64, 48], [0, 16, 64, 48]], [[0, 0, 32, 32], [0, 0, 32, 32]]], np.float32)
    scores = np.array([[0.9, 0.8], [0.7, 0.6]], np.float32)
    out = process.batch([boxes, scores, np.array([[0, 1], [0, 0]])], geometries)
    np.testing.assert_allclose(out[0][:, :4], [[0, 0, 200, 100]] * 2, atol=1e-9)  # different classes: both kept
    np.testing.assert_allclose(out[1][:, :4], [[0, 0, 32, 32]])
    with pytest.raises(ProcessingError, match="should hold 2 rows"):
        process.batch([boxes[:1], scores, np.zeros((2, 2))], geometries)


def test_mismatched_counts_and_missing_outputs() -> None:
    process = DetectionPostprocess.from_spec(_separate())
    with pytest.raises(ProcessingError, match="3 boxes but 2 scores"):
        process.image([np.zeros((3, 4)), np.zeros(2), np.zeros(3)], IDENTITY)
    combined = _spec([{"name": "d", "type": "detections", "shape": [4], "columns": {}}])
    with pytest.raises(ProcessingError, match="columns"):
        DetectionPostprocess.from_spec(combined).image([np.zeros((2, 4))], IDENTITY)
    with pytest.raises(ProcessingError, match="4 values"):
        to_xyxy(np.zeros((3, 5)), "xyxy")


# --- COCO scoring --------------------------------------------------------------------------------------------

CATEGORY_IDS = (3, 7, 11)
NAMES = ("circle", "square", "triangle")
SIZES = {10: (120, 160), 20: (160, 120), 30: (90, 250), 40: (200, 200), 50: (64, 64), 60: (100, 300)}


def _coco_truth(tmp_path: Path, seed: int = 0) -> tuple[CocoTruth, dict[int, list[tuple[list[float], int]]]]:
    rng = np.random.default_rng(seed)
    images, annotations, objects = [], [], {}
    for image_id, (h, w) in SIZES.items():
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.png"})
        objects[image_id] = []
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            k = int(rng.integers(0, 3))
            polygon = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORY_IDS[k], "iscrowd": 0}
            annotations.append({**ann, "bbox": [x, y, bw, bh], "area": bw * bh, "segmentation": [polygon]})
            objects[image_id].append(([x, y, bw, bh], k))
    categories = [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, NAMES, strict=True)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    truth = CocoTruth(
        annotations_path=path,
        image_ids=np.array(list(SIZES), np.int64),
        category_ids=CATEGORY_IDS,
        category_names=NAMES,
        original_hw=np.array(list(SIZES.values()), np.int64),
    )
    return truth, objects


def _model_outputs(truth: CocoTruth, objects: dict[int, list[tuple[list[float], int]]], seed: int = 1) -> Any:
    """Per item: noisy GT boxes plus a false positive, as xywh normalized to the 64 x 64 letterboxed input."""
    rng = np.random.default_rng(seed)
    steps = _separate().inputs[0].preprocess
    rows = []
    for item, image_id in enumerate(truth.image_ids.tolist()):
        g = geometry_of(steps, tuple(truth.original_hw[item]))
        found = [(box, k) for box, k in objects[image_id] if rng.uniform() > 0.2]
        found.append(([rng.uniform(0, 20), rng.uniform(0, 20), 15.0, 15.0], int(rng.integers(0, 3))))
        boxes, scores, classes = np.zeros((6, 4)), np.zeros(6), np.zeros(6)
        for i, ((x, y, w, h), k) in enumerate(found):
            x, y, w, h = np.array([x, y, w, h]) + rng.normal(0, 2, 4)
            sx, ox, oy = g.scale_yx[1], g.offset_yx[1], g.offset_yx[0]
            boxes[i] = [(x * sx + ox) / 64, (y * sx + oy) / 64, w * sx / 64, h * sx / 64]
            scores[i], classes[i] = rng.uniform(0.3, 1.0), k
        rows.append((boxes, scores, classes))
    return [np.stack([r[i] for r in rows]).astype(np.float32) for i in range(3)]


def _reference_stats(annotations: Path, detections: Path, image_ids: list[int]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        evaluation = COCOeval(gt, gt.loadRes(str(detections)), "bbox")
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats)


DETECTOR_POST = [{"score_threshold": {"threshold": 0.05}}, {"nms": {"iou_threshold": 0.6}}]


def _score(spec: ModelSpec, truth: CocoTruth, outputs: list[np.ndarray], items: list[int], log: Path) -> Any:
    scorer = make_scorer(spec, truth, None)
    assert isinstance(scorer, DetectionScorer)
    scorer.warm([o[:2] for o in outputs])
    for start in range(0, len(items), 4):
        batch = np.array(items[start : start + 4])
        scorer.record(batch, [o[batch] for o in outputs])
    return scorer.result(VERDICT, log)


def test_map_equals_pycocotools_on_the_written_detections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth, objects = _coco_truth(tmp_path)
    outputs = _model_outputs(truth, objects)
    result = _score(_separate("xywh", "normalized", DETECTOR_POST), truth, outputs, list(range(6)), tmp_path / "log")
    assert capsys.readouterr().out == ""  # pycocotools' prints stay out of our output
    metrics = result.detection
    assert metrics is not None and result.count == 6 and result.top1 is None
    assert result.primary == ("mAP", metrics.map)
    path = Path(metrics.detections_file)
    assert path == tmp_path / "log" / "detections.json"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == metrics.detections_sha256
    detections = json.loads(path.read_text())
    assert len(detections) == metrics.detections and {d["category_id"] for d in detections} <= set(CATEGORY_IDS)
    stats = _reference_stats(truth.annotations_path, path, list(SIZES))
    ours = [metrics.map, metrics.map_50, metrics.map_75, metrics.map_small, metrics.map_medium, metrics.map_large]
    np.testing.assert_allclose([*ours, metrics.mar_100], [*stats[:6], stats[8]], atol=1e-6)
    assert 0.3 < metrics.map_50 <= 1.0  # noisy but mostly right boxes
    assert set(metrics.per_class_ap) == set(NAMES)
    assert len(metrics.pr_curve["recall"]) == 101 and len(metrics.pr_curve["precision"]) == 101


def test_only_answered_images_are_scored(tmp_path: Path) -> None:
    truth, objects = _coco_truth(tmp_path)
    outputs = _model_outputs(truth, objects)
    result = _score(_separate("xywh", "normalized"), truth, outputs, [0, 2, 3], tmp_path / "log")
    assert result.count == 3 and result.detection is not None
    path = Path(result.detection.detections_file)
    assert {d["image_id"] for d in json.loads(path.read_text())} <= {10, 30, 40}
    stats = _reference_stats(truth.annotations_path, path, [10, 30, 40])
    assert result.detection.map == pytest.approx(stats[0], abs=1e-6)


def test_a_wrong_box_format_gives_a_visibly_different_map(tmp_path: Path) -> None:
    truth, objects = _coco_truth(tmp_path)
    outputs = _model_outputs(truth, objects)
    right = _score(_separate("xywh", "normalized"), truth, outputs, list(range(6)), tmp_path / "right").detection
    wrong = _score(_separate("xyxy", "normalized"), truth, outputs, list(range(6)), tmp_path / "wrong").detection
    assert right is not None and wrong is not None
    assert right.map_50 > 0.3 and wrong.map_50 < right.map_50 / 2


def test_zero_detections_score_zero(tmp_path: Path) -> None:
    truth, objects = _coco_truth(tmp_path)
    outputs = _model_outputs(truth, objects)
    outputs[1][:] = 0.01  # every score below the threshold
    result = _score(_separate("xywh", "normalized", DETECTOR_POST), truth, outputs, list(range(6)), tmp_path / "log")
    assert result.detection is not None
    assert result.detection.map == 0 and result.detection.map_50 == 0 and result.detection.detections == 0
    assert json.loads(Path(result.detection.detections_file).read_text()) == []


def test_nothing_answered_is_an_error(tmp_path: Path) -> None:
    truth, _ = _coco_truth(tmp_path)
    scorer = DetectionScorer(_separate(), truth, None)
    with pytest.raises(EvaluationError, match="answered no image"):
        scorer.result(VERDICT, tmp_path)


# --- cross-framework agreement -------------------------------------------------------------------------------


def _det(image_id: int, category_id: int, bbox: list[float], score: float) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def test_detection_agreement_matches_by_class_and_iou() -> None:
    reference = [
        _det(1, 3, [0, 0, 10, 10], 0.9),
        _det(1, 3, [50, 50, 10, 10], 0.8),
        _det(1, 7, [20, 20, 10, 10], 0.7),
        _det(2, 3, [0, 0, 10, 10], 0.6),
    ]
    other = [
        _det(1, 3, [1, 0, 10, 10], 0.85),  # IoU 90/110 with the first
        _det(1, 3, [50, 50, 10, 10], 0.8),
        _det(1, 3, [20, 20, 10, 10], 0.7),  # the right box but another class: no match
        _det(3, 3, [0, 0, 10, 10], 0.5),  # an image the reference found nothing in
    ]
    agreement = detection_agreement(reference, other, reference_name="onnxruntime", framework_name="pytorch")
    assert (agreement.images, agreement.matched) == (3, 2)
    assert agreement.matched_fraction == pytest.approx(4 / 8)
    assert agreement.mean_matched_iou == pytest.approx((90 / 110 + 1) / 2)
    assert agreement.max_abs_score_diff == pytest.approx(0.05)
    same = detection_agreement(reference, reference, reference_name="a", framework_name="a")
    assert same.matched_fraction == 1 and same.mean_matched_iou == 1 and same.max_abs_score_diff == 0
    empty = detection_agreement([], [], reference_name="a", framework_name="b")
    assert empty.matched_fraction == 1 and empty.mean_matched_iou is None


def test_compare_runs_of_two_detection_scorers(tmp_path: Path) -> None:
    truth, objects = _coco_truth(tmp_path)
    outputs = _model_outputs(truth, objects)
    spec = _separate("xywh", "normalized", DETECTOR_POST)
    first = _score(spec, truth, outputs, list(range(6)), tmp_path / "a")
    noisy = [outputs[0], outputs[1] + np.float32(1e-4), outputs[2]]  # another framework's rounding
    second = _score(spec, truth, noisy, list(range(6)), tmp_path / "b")
    agreement = compare_runs(first, second, reference_name="a", framework_name="b")
    assert isinstance(agreement, DetectionAgreement)
    assert agreement.matched_fraction == 1 and agreement.max_abs_score_diff == pytest.approx(1e-4, abs=2e-6)
    assert first.detection is not None
    Path(first.detection.detections_file).write_text("[]")
    with pytest.raises(EvaluationError, match="changed since the run wrote them"):
        compare_runs(first, second, reference_name="a", framework_name="b")
