"""Cross-framework agreement of detection and segmentation runs, wherever several runs are shown together.

* ``summarize`` (the summary ``evaluate -f a,b`` writes) measures each run against the reference framework in the
  runs' task: boxes (matched fraction, matched-box IoU, score difference, boxes only one run found) and masks
  (pixel agreement), with the reason for each run it cannot measure. The figures are checked against values
  worked out by hand from boxes and masks chosen so that each figure has one possible value.
* The CLI prints one table per task with that task's columns; ``report`` adds an agreement table per task.
* The operator's status names the result's primary metric (top1, mAP, mIoU) and its value.
* ``mlmodelscope evaluate`` of the committed shapes models on two frameworks prints the agreement (slow).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from mlmodelscope.cli.render import summary_tables
from mlmodelscope.cli.report_tasks import agreement_tables, markdown_section
from mlmodelscope.core.analysis.report import build_report
from mlmodelscope.core.analysis.tables import RunInfo
from mlmodelscope.core.evaluation.agreement import write_outputs
from mlmodelscope.core.evaluation.results import (
    AccuracyResult,
    DetectionMetrics,
    LoadTime,
    ResourceRef,
    RunResult,
    SegmentationMetrics,
)
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.evaluation.summary import EvaluationSummary, summarize
from mlmodelscope.operator.evaluation import RunStatus
from mlmodelscope.operator.results import figures_of
from tests.support.cli import run_cli
from tests.support.paths import REPO
from tests.support.run_results import ENVIRONMENT, VERDICT

# The reference's detections (COCO results: bbox is [x, y, width, height] in pixels).
REFERENCE_BOXES: list[dict[str, Any]] = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
    {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.8},
    {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.7},
    {"image_id": 3, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.6},
]
# The perturbed run: box 1 shifted right by 1 px (IoU 90/110 = 9/11), box 2 identical but its score 0.05 lower,
# box 3 identical, box 4 missing, and one box on image 3 that the reference does not have (another class).
PERTURBED_BOXES: list[dict[str, Any]] = [
    {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.9},
    {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.75},
    {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.7},
    {"image_id": 3, "category_id": 2, "bbox": [0, 0, 4, 4], "score": 0.6},
]
MASK_SHAPE = (6, 8)


def _result(framework: str, accuracy: AccuracyResult | None, *, model: str = "shapes-detector") -> RunResult:
    return RunResult(
        id=f"run-{model}-{framework}",
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        model=ResourceRef(name=model, version="1"),
        framework=ResourceRef(name=framework, version="1.0"),
        dataset=ResourceRef(name="shapes-coco", version="1"),
        device="cpu",
        requested_settings=EvaluationSettings(mode="accuracy" if accuracy is not None else "performance"),
        load_time=LoadTime(artifact_fetch_s=0.01, dataset_s=0.5, model_load_s=0.25, warmup_s=0.1),
        accuracy=accuracy,
        environment=ENVIRONMENT,
    )


def _detection_run(tmp_path: Path, framework: str, boxes: list[dict[str, Any]], map_: float) -> RunResult:
    path = tmp_path / framework / "detections.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(boxes), encoding="utf-8")
    metrics = DetectionMetrics(
        map=map_,
        map_50=0.7,
        map_75=0.6,
        map_small=-1.0,
        map_medium=0.5,
        map_large=0.4,
        mar_100=0.6,
        detections=len(boxes),
        detections_file=str(path),
        detections_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    return _result(framework, AccuracyResult(count=3, verdict=VERDICT, log_dir="/logs", detection=metrics))


def _segmentation_run(tmp_path: Path, framework: str, masks: dict[str, np.ndarray]) -> RunResult:
    path = tmp_path / framework / "masks.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **masks)  # type: ignore[arg-type]  # numpy's stubs type **kwds like allow_pickle
    metrics = SegmentationMetrics(mean_iou=0.61, pixel_accuracy=0.9, classes=3, masks_file=str(path))
    accuracy = AccuracyResult(count=len(masks), verdict=VERDICT, log_dir="/logs", segmentation=metrics)
    return _result(framework, accuracy, model="shapes-segmenter")


def _masks() -> dict[str, np.ndarray]:
    first = np.zeros(MASK_SHAPE, np.uint8)
    first[1:4, 2:6] = 1
    second = np.full(MASK_SHAPE, 2, np.uint8)
    return {"1": first, "2": second}


def _rendered(summary: EvaluationSummary) -> str:
    console = Console(width=220, record=True)
    for table in summary_tables(summary):
        console.print(table)
    return console.export_text()


# --- the summary's agreement -------------------------------------------------------------------------------------


def test_identical_detection_runs_agree_fully(tmp_path: Path) -> None:
    runs = [_detection_run(tmp_path, name, REFERENCE_BOXES, 0.5) for name in ("onnxruntime", "pytorch")]
    summary = summarize("e", "onnxruntime", runs)
    (same,) = summary.detection_agreement
    assert (same.reference, same.framework) == ("onnxruntime 1.0", "pytorch 1.0")
    assert (same.matched, same.matched_fraction, same.mean_matched_iou, same.max_abs_score_diff) == (4, 1.0, 1.0, 0)
    assert (same.unmatched_reference, same.unmatched_framework) == (0, 0)
    assert summary.agreement == [] and summary.segmentation_agreement == [] and summary.agreement_unavailable == []


def test_a_perturbed_detection_run_agrees_less_by_the_expected_amounts(tmp_path: Path) -> None:
    runs = [
        _detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5),
        _detection_run(tmp_path, "pytorch", PERTURBED_BOXES, 0.4),
    ]
    (measured,) = summarize("e", "onnxruntime", runs).detection_agreement
    # Pairs: box 1 (IoU 9/11, same score), box 2 (IoU 1, score 0.05 apart), box 3 (IoU 1). Box 4 has no partner
    # (the other run's box there is another class), so 3 of 4 + 4 boxes are paired: 2 * 3 / 8.
    assert measured.matched == 3 and measured.images == 3
    assert measured.matched_fraction == pytest.approx(6 / 8)
    assert measured.mean_matched_iou == pytest.approx((9 / 11 + 1 + 1) / 3)
    assert measured.max_abs_score_diff == pytest.approx(0.05)
    assert (measured.unmatched_reference, measured.unmatched_framework) == (1, 1)
    assert (measured.batch_size, measured.device) == (1, "cpu")


def test_segmentation_runs_report_pixel_agreement(tmp_path: Path) -> None:
    masks = _masks()
    changed = {key: mask.copy() for key, mask in masks.items()}
    changed["1"][0, 0:3] = 2  # 3 of the 2 * 48 pixels get another class
    runs = [
        _segmentation_run(tmp_path, "onnxruntime", masks),
        _segmentation_run(tmp_path, "pytorch", masks),
        _segmentation_run(tmp_path, "tensorflow", changed),
    ]
    same, perturbed = summarize("e", "onnxruntime", runs).segmentation_agreement
    assert (same.framework, same.pixel_agreement, same.differing_pixels, same.images) == ("pytorch 1.0", 1.0, 0, 2)
    assert perturbed.framework == "tensorflow 1.0" and perturbed.pixels == 96
    assert perturbed.differing_pixels == 3 and perturbed.pixel_agreement == pytest.approx(93 / 96)


def test_a_run_that_cannot_be_compared_says_why(tmp_path: Path) -> None:
    reference = _detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5)
    gone = _detection_run(tmp_path, "pytorch", REFERENCE_BOXES, 0.5)
    assert gone.accuracy is not None and gone.accuracy.detection is not None
    Path(gone.accuracy.detection.detections_file).unlink()
    performance_only = _result("tensorflow", None)
    other_task = _segmentation_run(tmp_path, "mxnet", _masks()).model_copy(
        update={"model": ResourceRef(name="shapes-detector", version="1")}
    )
    summary = summarize("e", "onnxruntime", [reference, gone, performance_only, other_task])
    assert summary.detection_agreement == []
    reasons = {u.framework: u.reason for u in summary.agreement_unavailable}
    assert set(reasons) == {"pytorch 1.0", "tensorflow 1.0", "mxnet 1.0"}
    assert "cannot be read from" in reasons["pytorch 1.0"] and "detections.json" in reasons["pytorch 1.0"]
    assert "no accuracy run (mode performance)" in reasons["tensorflow 1.0"]
    assert "--mode accuracy or both" in reasons["tensorflow 1.0"]
    assert "masks (semantic segmentation)" in reasons["mxnet 1.0"]
    assert "detections (object detection)" in reasons["mxnet 1.0"]
    no_reference = summarize("e", "onnxruntime", [gone])
    assert (
        "no onnxruntime run of shapes-detector at batch size 1 on cpu" in no_reference.agreement_unavailable[0].reason
    )


def test_the_summary_round_trips_through_its_json(tmp_path: Path) -> None:
    runs = [_detection_run(tmp_path, name, REFERENCE_BOXES, 0.5) for name in ("onnxruntime", "pytorch")]
    summary = summarize("e", "onnxruntime", [*runs, _result("tensorflow", None)])
    path = tmp_path / "summary.json"
    summary.write(path)
    document = json.loads(path.read_text())
    assert document["schema_version"] == 2
    assert document["detection_agreement"][0]["matched_fraction"] == 1.0
    assert EvaluationSummary.model_validate(document) == summary


# --- the CLI's tables ----------------------------------------------------------------------------------------------


def test_the_detection_table_has_the_box_columns_and_the_figures(tmp_path: Path) -> None:
    runs = [
        _detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5),
        _detection_run(tmp_path, "pytorch", PERTURBED_BOXES, 0.4),
        _result("tensorflow", None),
    ]
    text = _rendered(summarize("e", "onnxruntime", runs))
    assert "e: object detection agreement with onnxruntime" in text
    assert re.search(
        r"framework\s+batch\s+mAP\s+p50\s+items/s\s+boxes\s+matched\s+IoU\s+max\|ds\|\s+ref-only\s+run-only", text
    )
    # 4 boxes, 75.00% paired, mean IoU (9/11 + 2) / 3 = 0.939394, score difference 0.05, 1 box only each run found
    assert re.search(r"pytorch\s+1\s+0\.4000\s+-\s+-\s+4\s+75\.00%\s+0\.939394\s+5\.0e-02\s+1\s+1", text)
    assert re.search(r"onnxruntime\s+1\s+0\.5000\s+-\s+-\s+ref", text)
    assert "agreement of tensorflow 1.0 (batch 1, cpu) not measured: the tensorflow 1.0 run" in text
    assert "max|dp|" not in text


def test_the_segmentation_table_has_the_pixel_columns(tmp_path: Path) -> None:
    masks = _masks()
    changed = {key: mask.copy() for key, mask in masks.items()}
    changed["2"][5, :] = 0  # 8 of 96 pixels
    runs = [_segmentation_run(tmp_path, "onnxruntime", masks), _segmentation_run(tmp_path, "pytorch", changed)]
    text = _rendered(summarize("e", "onnxruntime", runs))
    assert "e: semantic segmentation agreement with onnxruntime" in text
    assert re.search(r"framework\s+batch\s+mIoU\s+p50\s+items/s\s+pixel agree\s+diff px\s+images", text)
    assert re.search(r"pytorch\s+1\s+0\.6100\s+-\s+-\s+91\.6667%\s+8\s+2", text)


def test_the_classification_table_is_unchanged(tmp_path: Path) -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    runs = []
    for name, p in (("onnxruntime", probabilities), ("pytorch", probabilities[:, ::-1].copy())):
        outputs = write_outputs(tmp_path / name, p, np.ones(2, bool))
        accuracy = AccuracyResult(top1=0.5, top5=1.0, count=2, verdict=VERDICT, log_dir="/l", outputs=outputs)
        runs.append(_result(name, accuracy, model="digits-cnn"))
    summary = summarize("e", "onnxruntime", runs)
    (measured,) = summary.agreement
    assert measured.top1_agreement == 0.0 and measured.max_abs_probability_diff == pytest.approx(0.8)
    text = _rendered(summary)
    assert "e: agreement with onnxruntime (top-1 agreement" in text
    assert re.search(r"framework\s+batch\s+top-1\s+p50\s+items/s\s+agree\s+max\|dp\|\s+KL\s+JS", text)
    assert re.search(r"pytorch\s+1\s+0\.5000\s+-\s+-\s+0\.0%\s+8\.0e-01", text)


# --- the report's agreement tables ---------------------------------------------------------------------------------


def _run_info(result: RunResult) -> RunInfo:
    return RunInfo(run_id=result.id, model=result.model.name, framework=result.framework.name, result=result)


def test_the_report_compares_each_run_with_the_first_of_its_task(tmp_path: Path) -> None:
    masks = _masks()
    changed = {key: mask.copy() for key, mask in masks.items()}
    changed["1"][0, 0:3] = 2
    infos = [
        _run_info(_detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5)),
        _run_info(_detection_run(tmp_path, "pytorch", PERTURBED_BOXES, 0.4)),
        _run_info(_segmentation_run(tmp_path / "seg", "onnxruntime", masks)),
        _run_info(_segmentation_run(tmp_path / "seg", "pytorch", changed)),
        _run_info(_result("tensorflow", None)),  # no accuracy run: no task, no row
    ]
    detection, segmentation = agreement_tables(infos)
    assert detection.name == "agreement-object_detection"
    assert detection.columns == [
        "run_id",
        "framework",
        "reference_run_id",
        "framework_detections",
        "matched",
        "matched_fraction",
        "mean_matched_iou",
        "max_abs_score_diff",
        "unmatched_reference",
        "unmatched_framework",
        "reason",
    ]
    (row,) = detection.rows
    assert row[:5] == ["run-shapes-detector-pytorch", "pytorch 1.0", "run-shapes-detector-onnxruntime", 4, 3]
    assert row[5] == pytest.approx(0.75) and row[6] == pytest.approx((9 / 11 + 2) / 3)
    assert row[7] == pytest.approx(0.05) and row[8:] == [1, 1, ""]
    assert segmentation.columns[3:] == ["images", "pixels", "differing_pixels", "pixel_agreement", "reason"]
    assert segmentation.rows[0][3:7] == [2, 96, 3, pytest.approx(93 / 96)]
    report = build_report(infos, [], source="test", generated_at=datetime(2026, 1, 2, tzinfo=UTC))
    markdown = markdown_section(report)
    assert (
        "| run-shapes-detector-pytorch | pytorch 1.0 | run-shapes-detector-onnxruntime | 4 | 3 | 75.00% |" in markdown
    )
    assert "| 0.939394 | 5.0e-02 | 1 | 1 |  |" in markdown
    assert "| 2 | 96 | 3 | 96.8750% |  |" in markdown


def test_a_report_run_whose_answers_are_gone_has_a_reason_instead_of_figures(tmp_path: Path) -> None:
    first = _detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5)
    second = _detection_run(tmp_path, "pytorch", REFERENCE_BOXES, 0.5)
    assert second.accuracy is not None and second.accuracy.detection is not None
    Path(second.accuracy.detection.detections_file).unlink()
    (table,) = agreement_tables([_run_info(first), _run_info(second)])
    (row,) = table.rows
    assert row[3:10] == [None] * 7
    assert isinstance(row[10], str) and "cannot be read from" in row[10]


# --- the operator's status -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "metric", "value", "top1"),
    [
        ("classification", "top1", 0.9889, 0.9889),
        ("detection", "mAP", 0.5747, None),
        ("segmentation", "mIoU", 0.61, None),
        ("performance only", None, None, None),
    ],
)
def test_the_operator_status_reports_the_primary_metric(
    tmp_path: Path, task: str, metric: str | None, value: float | None, top1: float | None
) -> None:
    if task == "classification":
        stored = _result("onnxruntime", AccuracyResult(top1=0.9889, top5=1.0, count=9, verdict=VERDICT, log_dir="/l"))
    elif task == "detection":
        stored = _detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5747)
    elif task == "segmentation":
        stored = _segmentation_run(tmp_path, "onnxruntime", _masks())
    else:
        stored = _result("onnxruntime", None)
    result = figures_of(json.loads(stored.model_dump_json()))  # the document as the collector serves it
    assert (result.accuracy_metric, result.accuracy_value) == (metric, value)
    assert result.top1 == top1


def test_the_operator_names_a_stored_detection_results_metric_as_accuracy_result_primary_does(tmp_path: Path) -> None:
    stored = _detection_run(tmp_path, "onnxruntime", REFERENCE_BOXES, 0.5747)
    assert stored.accuracy is not None
    result = figures_of(json.loads(stored.model_dump_json()))
    assert (result.accuracy_metric, result.accuracy_value) == stored.accuracy.primary == ("mAP", 0.5747)
    status = RunStatus.model_validate(
        {
            "name": "shapes-detector/onnxruntime/amd64-cpu/b1",
            "model": "shapes-detector",
            "framework": "onnxruntime",
            "arch": "amd64",
            "accelerator": "cpu",
            "batch_size": 1,
            "run_id": "r",
            "job_name": "j",
            "state": "Succeeded",
            "result": result.model_dump(),
        }
    )
    assert status.result is not None and status.result.accuracy_metric == "mAP"


def test_the_evaluation_crd_declares_the_primary_metric_fields() -> None:
    import yaml

    crd = yaml.safe_load((REPO / "crds" / "evaluations.mlmodelscope.org.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    result = status["properties"]["runs"]["items"]["properties"]["result"]["properties"]
    assert result["accuracy_metric"]["type"] == "string" and result["accuracy_value"]["type"] == "number"


# --- the real thing ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model", ["shapes-detector", "shapes-segmenter"])
def test_evaluate_on_two_frameworks_prints_the_tasks_agreement(tmp_path: Path, model: str) -> None:
    output = tmp_path / "summary.json"
    run = run_cli(
        "--cache-dir",
        str(tmp_path / "cache"),
        "evaluate",
        "-m",
        model,
        "-f",
        "onnxruntime,pytorch",
        "--dataset",
        "shapes-coco",
        "--mode",
        "accuracy",
        "--output",
        str(output),
        cwd=REPO,
        data_dir=tmp_path / "data",
    )
    assert run.returncode == 0, run.stderr + run.stdout
    summary = EvaluationSummary.model_validate_json(output.read_text())
    assert summary.agreement == [] and summary.agreement_unavailable == []
    if model == "shapes-detector":
        (measured,) = summary.detection_agreement
        assert measured.matched_fraction >= 0.995 and measured.reference_detections > 1000, measured
        assert measured.mean_matched_iou is not None and measured.mean_matched_iou >= 0.9999, measured
        assert measured.max_abs_score_diff is not None and measured.max_abs_score_diff <= 1e-4, measured
        assert re.search(r"boxes\s+matched\s+IoU\s+max\|ds\|\s+ref-only\s+run-only", run.stdout), run.stdout
        assert re.search(rf"pytorch\s+1\s+[\d.]+\s+-\s+-\s+{measured.framework_detections:,}\s+", run.stdout)
    else:
        (pixels,) = summary.segmentation_agreement
        assert pixels.images == 200 and pixels.pixels == 200 * 120 * 160 and pixels.pixel_agreement >= 0.9999
        assert re.search(r"pixel agree\s+diff px\s+images", run.stdout), run.stdout
        assert re.search(r"pytorch\s+1\s+[\d.]+\s+-\s+-\s+[\d.]+%\s+[\d,]+\s+200", run.stdout), run.stdout
