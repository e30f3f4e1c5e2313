"""Detection and segmentation results, ingested into the collector as agents send them, shown everywhere: the runs
API (primary metric), the Prometheus metrics, the run page (mAP table, AP per class, PR curve; mIoU, IoU per class),
the compare API and page (the figures of two frameworks side by side), and the report (HTML, Markdown, CSV, JSON).

The results are built by hand from ``DetectionMetrics`` / ``SegmentationMetrics`` with distinct values, so each
number found on a page can only have come from the field it is checked against.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import html
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.collector.runtime import CollectorRuntime
from mlmodelscope.core.evaluation.results import (
    AccuracyResult,
    DetectionMetrics,
    LoadTime,
    ResourceRef,
    RunResult,
    SegmentationMetrics,
)
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.messages import Envelope, RunFinished, RunStarted, message_id
from tests.support import collector as fixtures
from tests.support.cli import run_cli
from tests.support.edge_cases import served_collector
from tests.support.paths import ASSETS
from tests.support.run_results import ENVIRONMENT, VERDICT
from tests.support.web import minimal_assets

RECALL = [i / 100 for i in range(101)]


def detection(map_: float, map_50: float, map_75: float, square_ap: float) -> DetectionMetrics:
    return DetectionMetrics(
        map=map_,
        map_50=map_50,
        map_75=map_75,
        map_small=-1.0,
        map_medium=0.3789,
        map_large=0.5012,
        mar_100=0.5234,
        per_class_ap={"square": square_ap, "circle": 0.2135},
        pr_curve={"recall": RECALL, "precision": [max(0.0, 1 - r * 0.8) for r in RECALL[:90]] + [-1.0] * 11},
        detections=417,
        detections_file="/runs/x/detections.json",
        detections_sha256="ab" * 32,
    )


def segmentation(mean_iou: float, square_iou: float) -> SegmentationMetrics:
    return SegmentationMetrics(
        mean_iou=mean_iou,
        pixel_accuracy=0.9312,
        per_class_iou={"background": 0.9521, "square": square_iou},
        classes=3,
    )


def result(run_id: str, model: str, framework: str, accuracy: AccuracyResult) -> RunResult:
    return RunResult(
        id=run_id,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        model=ResourceRef(name=model, version="1.0"),
        framework=ResourceRef(name=framework, version="1.2.3"),
        dataset=ResourceRef(name="shapes-coco", version="1"),
        device="cpu",
        requested_settings=EvaluationSettings(mode="both"),
        load_time=LoadTime(artifact_fetch_s=0.01, dataset_s=0.5, model_load_s=0.25, warmup_s=0.1),
        accuracy=accuracy,
        environment=ENVIRONMENT,
    )


def accuracy(**task: DetectionMetrics | SegmentationMetrics) -> AccuracyResult:
    return AccuracyResult(count=40, verdict=VERDICT, log_dir="/logs", **task)


RUNS = {
    "det-ort": result(
        "det-ort", "shapes-detector", "onnxruntime", accuracy(detection=detection(0.4123, 0.7345, 0.4567, 0.6111))
    ),
    "det-torch": result(
        "det-torch", "shapes-detector", "pytorch", accuracy(detection=detection(0.4223, 0.7445, 0.4667, 0.6211))
    ),
    "seg-ort": result(
        "seg-ort", "shapes-segmenter", "onnxruntime", accuracy(segmentation=segmentation(0.6789, 0.5567))
    ),
    "seg-torch": result(
        "seg-torch", "shapes-segmenter", "pytorch", accuracy(segmentation=segmentation(0.6989, 0.5767))
    ),
}


def envelopes(run_id: str, evaluation: RunResult) -> list[Envelope]:
    started = RunStarted(
        evaluation_id=f"eval-{evaluation.model.name}",
        model=evaluation.model.name,
        framework=evaluation.framework.name,
        dataset="shapes-coco",
        scenario="single-stream",
        mode="both",
        batch_size=1,
        arch="x86_64",
        accelerator="cpu",
        trace_level="model",
        epoch_offset_ns=1_700_000_000_000_000_000,
        started_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    finished = RunFinished(status="succeeded", result=evaluation, error="", span_count=0, query_count=20)
    return [
        Envelope(message_id=message_id(run_id, "run_started", 0), run_id=run_id, sequence=0, payload=started),
        fixtures.query_batch(run_id, range(20)),
        Envelope(message_id=message_id(run_id, "run_finished", 0), run_id=run_id, sequence=0, payload=finished),
    ]


def ingest_all(runtime: CollectorRuntime) -> None:
    for run_id, evaluation in RUNS.items():
        for envelope in envelopes(run_id, evaluation):
            runtime.ingestor.ingest(envelope)


def cell(page: str, attribute: str, value: str) -> str:
    """The text of the element carrying ``attribute="value"`` (its first one)."""
    match = re.search(rf'{attribute}="{re.escape(value)}"[^>]*>([^<]*)<', page)
    assert match, f'no {attribute}="{value}" in the page'
    return html.unescape(match.group(1)).strip()


@pytest.mark.anyio
async def test_runs_api_and_metrics_carry_the_primary_metric_of_every_task(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        ingest_all(app.runtime)
        items = {r["run_id"]: r for r in (await app.client.get("/api/v1/runs")).json()["items"]}
        assert (items["det-ort"]["accuracy_metric"], items["det-ort"]["accuracy_value"]) == ("mAP", 0.4123)
        assert (items["seg-torch"]["accuracy_metric"], items["seg-torch"]["accuracy_value"]) == ("mIoU", 0.6989)
        assert items["det-ort"]["accuracy_top1"] is None
        listing = (await app.client.get("/ui/runs")).text
        assert cell(listing[listing.index('data-run="det-torch"') :], "data-metric", "mAP") == "mAP 42.23%"
        evaluation = (await app.client.get("/ui/evaluations/eval-shapes-segmenter")).text
        assert cell(evaluation[evaluation.index('data-run="seg-torch"') :], "data-field", "accuracy") == "mIoU 69.89%"
        samples = fixtures.metric_samples((await app.client.get("/metrics")).text)
        labels = {**fixtures.LABELS, "model": "shapes-detector", "framework": "pytorch"}
        assert fixtures.sample(samples, "mlmodelscope_accuracy_ratio", metric="mAP", **labels) == pytest.approx(0.4223)
        assert fixtures.sample(samples, "mlmodelscope_accuracy_top1_ratio", **labels) is None
    # Restarted on the same database: the gauge is seeded from the stored columns.
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        samples = fixtures.metric_samples((await app.client.get("/metrics")).text)
        seg = {**fixtures.LABELS, "model": "shapes-segmenter"}
        assert fixtures.sample(samples, "mlmodelscope_accuracy_ratio", metric="mIoU", **seg) == pytest.approx(0.6789)


@pytest.mark.anyio
async def test_the_run_page_shows_the_detection_metrics_per_class_ap_and_the_pr_curve(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        ingest_all(app.runtime)
        page = (await app.client.get("/ui/runs/det-torch")).text
    assert cell(page, "data-field", "map") == "42.23%"
    table = page[page.index('data-testid="detection-metrics"') :]
    expected = {
        "map": "42.23%",
        "map_50": "74.45%",
        "map_75": "46.67%",
        "map_small": "n/a",
        "map_medium": "37.89%",
        "map_large": "50.12%",
        "mar_100": "52.34%",
    }
    for key, text in expected.items():
        row = table[table.index(f'data-metric="{key}"') :]
        assert cell(row, "class", "num") == text, key
    per_class = page[page.index('data-testid="per-class-ap"') :]
    assert cell(per_class[per_class.index('data-class="square"') :], "class", "num") == "62.11%"
    pr = page[page.index('data-chart="pr-curve"') :]
    points = re.findall(r'data-x="([^"]+)" data-y="([^"]+)"', pr[: pr.index("</svg>")])
    assert len(points) == 90 and points[0] == ("0", "1")  # COCO's -1 (recall never reached) left out
    assert "417 detections kept" in page


@pytest.mark.anyio
async def test_the_run_page_shows_miou_pixel_accuracy_and_iou_per_class(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        ingest_all(app.runtime)
        page = (await app.client.get("/ui/runs/seg-ort")).text
    assert cell(page, "data-field", "miou") == "67.89%"
    assert cell(page, "data-field", "pixel-accuracy") == "93.12%"
    per_class = page[page.index('data-testid="per-class-iou"') :]
    assert cell(per_class[per_class.index('data-class="background"') :], "class", "num") == "95.21%"
    assert 'data-chart="bars"' in page and 'data-label="square"' in page
    assert 'data-field="top1"' not in page


@pytest.mark.anyio
async def test_compare_api_and_page_set_two_frameworks_side_by_side(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        ingest_all(app.runtime)
        view = (await app.client.get("/api/v1/compare", params=[("run", "det-ort"), ("run", "det-torch")])).json()
        page = (await app.client.get("/ui/compare", params=[("run", "det-ort"), ("run", "det-torch")])).text
        seg_page = (await app.client.get("/ui/compare", params=[("run", "seg-ort"), ("run", "seg-torch")])).text
    (accuracy,) = view["accuracy"]
    assert accuracy["task"] == "object_detection" and accuracy["classes"] == ["square", "circle"]
    by_run = {run["run_id"]: run for run in accuracy["runs"]}
    assert by_run["det-torch"]["figures"]["map_50"] == pytest.approx(0.7445)
    assert by_run["det-ort"]["label"] == "onnxruntime 1.2.3"
    table = page[page.index('data-testid="accuracy-table-object_detection"') :]
    torch_row = table[table.index('data-run="det-torch"') :]
    assert cell(torch_row, "data-metric", "map") == "42.23%"
    square = page[page.index('data-testid="per-class-object_detection"') :]
    square = square[square.index('data-class="square"') :]
    assert [cell(square, "data-run", r) for r in ("det-ort", "det-torch")] == ["61.11%", "62.11%"]
    assert page.count('data-chart="pr-curve"') == 1 and 'data-series="pytorch 1.2.3 (det-torch)"' in page
    seg_table = seg_page[seg_page.index('data-testid="accuracy-table-semantic_segmentation"') :]
    assert cell(seg_table[seg_table.index('data-run="seg-torch"') :], "data-metric", "mean_iou") == "69.89%"


@pytest.mark.anyio
async def test_the_catalog_says_which_models_fit_each_dataset_and_why_the_others_do_not(
    sqlite_url: str, tmp_path: Path
) -> None:
    assets = minimal_assets(tmp_path / "assets")  # the digits CNN, its dataset, onnxruntime
    shutil.copy(ASSETS / "models" / "transformer-encoder.yaml", assets / "models")
    async with fixtures.running_app(fixtures.settings_for(sqlite_url, assets=str(assets))) as app:
        catalog = (await app.client.get("/api/v1/catalog")).json()
        page = (await app.client.get("/ui/catalog")).text
    digits = next(d for d in catalog["datasets"] if d["name"] == "digits")
    assert digits["kind"] == "npz" and "digits-cnn" in digits["fitting_models"]
    refused = {r["model"]: r["reasons"] for r in digits["refused_models"]}
    reason = "model 'transformer-encoder' is a raw model, but dataset 'digits' (kind npz) serves image_classification."
    assert refused["transformer-encoder"] == [reason]
    assert not set(refused) & set(digits["fitting_models"])
    section = page[page.index('data-testid="refused-digits"') :]
    start = section.index('data-refused="transformer-encoder"')
    assert reason in html.unescape(section[start : section.index("</tr>", start)])
    fitting = page[page.index('data-dataset="digits"') :]
    assert 'data-fits="digits-cnn"' in fitting[: fitting.index("</tr>")]


def test_the_launcher_refuses_a_model_that_does_not_fit_the_dataset_before_any_agent_starts(tmp_path: Path) -> None:
    from mlmodelscope.collector.analysis_models import LaunchRequest
    from mlmodelscope.collector.catalog import registry_of
    from mlmodelscope.collector.errors import LaunchError
    from mlmodelscope.collector.launcher import LocalLauncher
    from mlmodelscope.collector.settings import CollectorSettings

    assets = minimal_assets(tmp_path / "assets")
    shutil.copy(ASSETS / "models" / "transformer-encoder.yaml", assets / "models")
    settings = CollectorSettings(
        assets=str(assets), launch_cache_dir=str(tmp_path / "cache"), launch_runs_dir=str(tmp_path / "runs")
    )
    request = LaunchRequest(model="transformer-encoder", frameworks=["onnxruntime"], dataset="digits")
    with pytest.raises(LaunchError) as refused:
        LocalLauncher(settings).specs(request, registry_of(settings))
    assert refused.value.message.startswith("model 'transformer-encoder' cannot be evaluated on dataset 'digits': ")
    assert "is a raw model, but dataset 'digits' (kind npz) serves image_classification." in refused.value.message
    assert not (tmp_path / "runs").exists()
    fitting = LaunchRequest(model="digits-cnn", frameworks=["onnxruntime"])
    assert [spec.dataset for spec in LocalLauncher(settings).specs(fitting, registry_of(settings))] == ["digits"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'collector.db'}"

    async def store() -> None:
        async with fixtures.running_app(fixtures.settings_for(url)) as app:
            ingest_all(app.runtime)

    # In a thread of its own: Playwright's sync API may already run an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, store()).result()
    with served_collector(url, tmp_path / "collector.log") as collector:
        yield collector


def test_the_report_compares_the_task_metrics_across_frameworks(served: str, tmp_path: Path) -> None:
    runs = ["det-ort", "det-torch", "seg-ort", "seg-torch"]
    written = {}
    for suffix in ("html", "md", "json", "csv"):
        output = tmp_path / f"report.{suffix}"
        run = run_cli("report", *runs, "--collector-url", served, "-o", str(output), cwd=tmp_path)
        assert run.returncode == 0, run.stderr + run.stdout
        written[suffix] = output
    page = written["html"].read_text()
    detection_table = page[page.index('data-table="accuracy-object_detection"') :]
    assert '<td class="num" data-column="map" data-value="0.4223">42.23%</td>' in detection_table
    assert '<td class="num" data-column="map_small" data-value="-1.0">n/a</td>' in detection_table
    assert 'data-table="per-class-semantic_segmentation"' in page and 'data-chart="pr-curve"' in page
    markdown = written["md"].read_text()
    assert "| seg-torch | pytorch 1.2.3 | 69.89% | 93.12% |" in markdown
    assert "| square | 61.11% | 62.11% |" in markdown
    tables = {t["name"]: t for t in json.loads(written["json"].read_text())["tables"]}
    per_class = tables["per-class-object_detection"]
    assert per_class["columns"] == ["class", "det-ort", "det-torch"] and per_class["rows"][1] == [
        "circle",
        0.2135,
        0.2135,
    ]
    rows = list(csv.reader((tmp_path / "report.accuracy-semantic_segmentation.csv").open()))
    assert rows[0] == ["run_id", "framework", "mean_iou", "pixel_accuracy"]
    assert rows[1] == ["seg-ort", "onnxruntime 1.2.3", "0.6789", "0.9312"]


def test_the_cli_result_table_and_runs_list_show_the_task_figures() -> None:
    from rich.console import Console

    from mlmodelscope.cli.render import primary_cell, result_table
    from mlmodelscope.cli.runs import accuracy_cell

    console = Console(width=200, record=True)
    console.print(result_table(RUNS["det-torch"]))
    console.print(result_table(RUNS["seg-ort"]))
    text = console.export_text()
    assert "mAP 0.4223   mAP@.5 0.7445   mAP@.75 0.4667   small/medium/large -1.000/0.379/0.501" in text
    assert "(40 images, 417 detections)" in text
    assert "mIoU 0.6789   pixel accuracy 0.9312   (40 images)" in text
    assert primary_cell(RUNS["seg-torch"], with_name=True) == "mIoU 0.6989"
    assert accuracy_cell({"accuracy_metric": "mAP", "accuracy_value": 0.4123, "accuracy_top1": None}) == "mAP 0.4123"
    assert accuracy_cell({"accuracy_top1": 0.9889}) == "top1 0.9889"  # a collector before schema version 3
    assert accuracy_cell({"accuracy_top1": None}) == "-"


def test_the_cli_summary_names_the_primary_metric_of_its_runs() -> None:
    from rich.console import Console

    from mlmodelscope.cli.render import summary_tables
    from mlmodelscope.core.evaluation.summary import EvaluationSummary

    def rendered(*run_ids: str) -> str:
        summary = EvaluationSummary(
            evaluation_id="e", reference_framework="onnxruntime", results=[RUNS[r] for r in run_ids]
        )
        console = Console(width=200, record=True)
        for table in summary_tables(summary):
            console.print(table)
        return console.export_text()

    detection_only = rendered("det-ort", "det-torch")
    assert re.search(r"batch\s+mAP\s+p50", detection_only) and "0.4223" in detection_only
    mixed = rendered("det-ort", "seg-ort")  # one table per task, each headed by its metric
    assert re.search(r"batch\s+mAP\s+p50", mixed) and re.search(r"batch\s+mIoU\s+p50", mixed)
    assert "0.4123" in mixed and "0.6789" in mixed


# The browser tests come last: Playwright's sync API keeps an event loop running in this thread while the
# module-scoped browser lives, which the anyio tests above could not share.
def test_the_detection_run_page_in_a_browser_draws_the_pr_curve_and_ap_per_class(served: str, page: Any) -> None:
    page.goto(f"{served}/ui/runs/det-torch")
    row = page.locator("[data-testid=detection-metrics] tr[data-metric=map_50] td")
    assert row.nth(0).inner_text() == "mAP@.5" and row.nth(1).inner_text() == "74.45%"
    points = page.locator("svg[data-chart=pr-curve] circle.point")
    assert points.count() == 90
    assert page.locator("svg[data-chart=bars] rect.bar[data-label=square]").get_attribute("data-value") == "0.6211"


def test_the_compare_page_in_a_browser_sets_iou_per_class_side_by_side(served: str, page: Any) -> None:
    page.goto(f"{served}/ui/compare?run=seg-ort&run=seg-torch")
    square = page.locator("[data-testid=per-class-semantic_segmentation] tr[data-class=square] td")
    assert [square.nth(i).inner_text() for i in range(3)] == ["square", "55.67%", "57.67%"]
