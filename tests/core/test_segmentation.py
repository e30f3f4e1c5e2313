"""Semantic segmentation: ground truth from COCO polygons/RLE, masks resized back, mIoU and pixel accuracy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils

from mlmodelscope.core.datasets.reader import CocoTruth
from mlmodelscope.core.errors import EvaluationError, ProcessingError
from mlmodelscope.core.evaluation.agreement_tasks import SegmentationAgreement, compare_masks, compare_runs
from mlmodelscope.core.evaluation.results import Verdict
from mlmodelscope.core.evaluation.scoring import make_scorer
from mlmodelscope.core.evaluation.scoring_segmentation import (
    IGNORE,
    SegmentationScorer,
    annotation_mask,
    segmentation_metrics,
)
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.processing.preprocess import Preprocessor
from mlmodelscope.core.processing.segmentation import SegmentationPostprocess
from mlmodelscope.core.processing.steps import PreprocessStep
from tests.support.paths import REPO

VERDICT = Verdict(valid=True, result="VALID", constraints=[], recommendations=[], early_stopping=[])


def _spec(mask: dict[str, Any], preprocess: list[dict[str, Any]] | None = None, shape: list[int] | None = None) -> Any:
    return ModelSpec.model_validate(
        {
            "task": "semantic_segmentation",
            "framework": {"name": "onnxruntime"},
            "artifacts": [{"uri": "zoo:test", "format": "onnx"}],
            "inputs": [{"name": "x", "shape": shape or [4, 6], "preprocess": preprocess or []}],
            "outputs": [{"name": "mask", "type": "mask", "shape": [-1, -1], **mask}],
        }
    )


def _rle(mask: np.ndarray) -> dict[str, Any]:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat.tolist():
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _write_coco(tmp_path: Path, images: dict[int, tuple[int, int]], annotations: list[dict[str, Any]]) -> CocoTruth:
    categories = [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 11, "name": "emu"}]
    for i, a in enumerate(annotations):
        a.setdefault("id", i + 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", 1.0)
        a.setdefault("bbox", [0, 0, 1, 1])
    document = {
        "images": [{"id": i, "height": h, "width": w, "file_name": f"{i}.png"} for i, (h, w) in images.items()],
        "annotations": annotations,
        "categories": categories,
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(document))
    return CocoTruth(
        annotations_path=path,
        image_ids=np.array(list(images), np.int64),
        category_ids=(5, 9, 11),
        category_names=("cat", "dog", "emu"),
        original_hw=np.array(list(images.values()), np.int64),
    )


# The hand-computed case: a 4 x 6 image; class 1 (cat) on the left, class 2 (dog) top right, a crowd over row 3.
TRUTH = np.array([[1, 1, 0, 0, 2, 2], [1, 1, 0, 0, 2, 2], [1, 1, 0, 0, 0, 0], [IGNORE] * 6])
PREDICTED = np.array([[1, 0, 0, 0, 2, 2], [1, 1, 0, 0, 0, 2], [1, 1, 2, 0, 0, 0], [2] * 6])


def _hand_case(tmp_path: Path) -> CocoTruth:
    cat = np.zeros((4, 6), bool)
    cat[:, :2] = True
    dog = np.zeros((4, 6), bool)
    dog[:2, 4:] = True
    crowd = np.zeros((4, 6), bool)
    crowd[3] = True
    return _write_coco(
        tmp_path,
        {7: (4, 6)},
        [
            {"image_id": 7, "category_id": 5, "segmentation": _uncompressed_rle(cat)},
            {"image_id": 7, "category_id": 9, "segmentation": _rle(dog)},
            {"image_id": 7, "category_id": 5, "segmentation": _rle(crowd), "iscrowd": 1},
        ],
    )


def _logits(ids: np.ndarray, classes: int, layout: str) -> np.ndarray:
    onehot = np.eye(classes, dtype=np.float32)[ids]  # (H, W, C)
    return onehot if layout == "HWC" else onehot.transpose(2, 0, 1)


@pytest.mark.parametrize("form", ["ids", "ids_offset", "logits_CHW", "logits_HWC"])
def test_metrics_equal_the_hand_computation(tmp_path: Path, form: str) -> None:
    truth = _hand_case(tmp_path)
    if form.startswith("logits"):
        layout = form.split("_")[1]
        mask: dict[str, Any] = {"mask_format": "logits", "layout": layout}
        output = _logits(PREDICTED, 4, layout)[None]
    else:
        offset = 1 if form == "ids_offset" else 0
        mask = {"mask_format": "ids", "class_offset": offset}
        output = (PREDICTED + offset)[None].astype(np.int64)
    scorer = make_scorer(_spec(mask), truth, None)
    assert isinstance(scorer, SegmentationScorer)
    np.testing.assert_array_equal(scorer.truth_mask(0), TRUTH)
    scorer.warm([output])
    scorer.record(np.array([0]), [output])
    scorer.record(np.array([0]), [output])  # a repeated answer counts once
    result = scorer.result(VERDICT, tmp_path / "log")
    metrics = result.segmentation
    assert metrics is not None and result.count == 1 and result.primary == ("mIoU", metrics.mean_iou)
    # 18 scored pixels (row 3 is a crowd), 15 right. IoU background 7/10, cat 5/6, dog 3/5; emu is nowhere.
    assert metrics.pixel_accuracy == pytest.approx(15 / 18)
    assert metrics.per_class_iou == pytest.approx({"background": 0.7, "cat": 5 / 6, "dog": 0.6})
    assert metrics.mean_iou == pytest.approx((0.7 + 5 / 6 + 0.6) / 3)
    assert metrics.classes == 4
    with np.load(metrics.masks_file) as masks:
        assert list(masks) == ["item_0"]
        np.testing.assert_array_equal(masks["item_0"], PREDICTED)


def test_confusion_matrix_with_predictions_outside_the_classes() -> None:
    # rows: truth 0, 1; columns: predicted 0, 1, outside. Class 1: TP 2, FN 1 (0) + 1 (outside), FP 1.
    confusion = np.array([[3, 1, 0], [1, 2, 1]])
    metrics = segmentation_metrics(confusion, ("background", "a"), None)
    assert metrics.per_class_iou == pytest.approx({"background": 3 / 5, "a": 2 / 5})
    assert metrics.pixel_accuracy == pytest.approx(5 / 8)


def test_polygon_and_rle_ground_truth(tmp_path: Path) -> None:
    square = np.zeros((40, 40), bool)
    square[5:15, 20:30] = True
    truth = _write_coco(
        tmp_path,
        {1: (40, 40)},
        [
            {"image_id": 1, "category_id": 9, "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]},  # 20 x 10
            {"image_id": 1, "category_id": 11, "segmentation": _uncompressed_rle(square)},  # drawn over the dog
            {"image_id": 1, "category_id": 99, "segmentation": [[0, 0, 5, 0, 5, 5]]},  # not a dataset category
        ],
    )
    scorer = SegmentationScorer(_spec({"mask_format": "ids"}, shape=[40, 40]), truth, None)
    mask = scorer.truth_mask(0)
    expected = np.zeros((40, 40), np.uint8)
    expected[10:20, 10:30] = 2
    expected[square] = 3
    np.testing.assert_array_equal(mask, expected)


def test_bad_annotations_are_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="annotation 4 of image 2"):
        annotation_mask({"id": 4, "image_id": 2, "bbox": [0, 0, 1, 1]}, 5, 5)
    with pytest.raises(EvaluationError, match="RLE of"):
        annotation_mask({"id": 4, "image_id": 2, "segmentation": _rle(np.ones((3, 3)))}, 5, 5)
    assert not annotation_mask({"segmentation": []}, 2, 2).any()


LETTERBOX = [
    {"resize": {"size": [64, 64], "keep_aspect_ratio": True, "fit": "contain", "method": "nearest"}},
    {"pad": {"size": [64, 64]}},
]
COVER_CROP = [
    {"resize": {"size": [72, 72], "keep_aspect_ratio": True, "method": "nearest"}},
    {"crop": {"size": [64, 64]}},
]


@pytest.mark.parametrize("preprocess", [LETTERBOX, COVER_CROP], ids=["letterbox", "crop"])
@pytest.mark.parametrize("stride", [1, 2])
def test_masks_resize_back_through_the_preprocess_geometry(tmp_path: Path, preprocess: Any, stride: int) -> None:
    images = {1: (120, 200), 2: (200, 120), 3: (90, 90)}
    annotations = []
    for image_id, (h, w) in images.items():
        x, y = w * 0.3, h * 0.3
        polygon = [x, y, x + w * 0.4, y, x + w * 0.4, y + h * 0.4, x, y + h * 0.4]
        annotations.append({"image_id": image_id, "category_id": 5, "segmentation": [polygon]})
    truth = _write_coco(tmp_path, images, annotations)
    spec = _spec({"mask_format": "ids"}, preprocess, shape=[64, 64, 1])
    scorer = SegmentationScorer(spec, truth, None)
    steps = [PreprocessStep.model_validate(s) for s in preprocess]
    # the model's answer: the truth itself put through the pipeline (nearest), at the input or half its size
    outputs = [Preprocessor(steps)(scorer.truth_mask(i)[:, :, None])[::stride, ::stride, 0] for i in range(3)]
    scorer.record(np.array([0, 1, 2]), [np.stack(outputs)])
    metrics = scorer.result(VERDICT, tmp_path / "log").segmentation
    assert metrics is not None
    assert metrics.pixel_accuracy > 0.97 and metrics.mean_iou > 0.93
    assert set(metrics.per_class_iou) == {"background", "cat"}


def test_mask_shape_errors() -> None:
    post = SegmentationPostprocess.from_spec(_spec({"mask_format": "logits"}))
    with pytest.raises(ProcessingError, match=r"\(C, H, W\)"):
        post.class_ids(np.zeros((4, 6)))
    ids = SegmentationPostprocess.from_spec(_spec({"mask_format": "ids"}))
    assert ids.class_ids(np.zeros((1, 4, 6))).shape == (4, 6)
    assert ids.class_ids(np.full((4, 6, 1), 2.0)).tolist()[0][0] == 2
    with pytest.raises(ProcessingError, match=r"must be \(H, W\)"):
        ids.class_ids(np.zeros((2, 4, 6)))


def test_nothing_answered_is_an_error(tmp_path: Path) -> None:
    scorer = SegmentationScorer(_spec({"mask_format": "ids"}), _hand_case(tmp_path), None)
    with pytest.raises(EvaluationError, match="answered no image"):
        scorer.result(VERDICT, tmp_path)


def test_pixel_agreement_of_two_runs(tmp_path: Path) -> None:
    truth = _hand_case(tmp_path)
    spec = _spec({"mask_format": "ids"})
    runs = []
    for name, predicted in (("a", PREDICTED), ("b", np.where(PREDICTED == 2, 1, PREDICTED))):  # 10 of 24 differ
        scorer = SegmentationScorer(spec, truth, None)
        scorer.record(np.array([0]), [predicted[None]])
        runs.append(scorer.result(VERDICT, tmp_path / name))
    agreement = compare_runs(runs[0], runs[1], reference_name="a", framework_name="b")
    assert isinstance(agreement, SegmentationAgreement)
    assert (agreement.images, agreement.pixels) == (1, 24)
    assert agreement.pixel_agreement == pytest.approx(1 - int((PREDICTED == 2).sum()) / 24)
    assert runs[0].segmentation is not None
    assert (
        compare_masks(
            runs[0].segmentation, runs[0].segmentation, reference_name="a", framework_name="a"
        ).pixel_agreement
        == 1
    )


def test_the_yaml_examples_of_docs_tasks_are_valid() -> None:
    text = (REPO / "docs" / "tasks.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    assert len(blocks) == 4
    assert [PreprocessStep.model_validate(s).kind for s in blocks[0]["preprocess"]][:3] == ["decode", "resize", "pad"]
    tasks = ["object_detection", "object_detection", "semantic_segmentation"]
    for block, task in zip(blocks[1:], tasks, strict=True):
        spec = ModelSpec.model_validate(
            {
                "task": task,
                "framework": {"name": "onnxruntime"},
                "artifacts": [{"uri": "zoo:test", "format": "onnx"}],
                "inputs": [{"name": "x", "shape": [3, 320, 320], "preprocess": blocks[0]["preprocess"]}],
                "outputs": block["outputs"],
            }
        )
        assert spec.task == block.get("task", task)
