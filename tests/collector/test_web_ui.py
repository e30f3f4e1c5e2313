"""The web UI in headless Chromium against a collector holding real evaluations: every page loads, and the numbers
it renders are the REST API's; the launch form starts a real evaluation that completes and is checked against a
baseline marked through the UI. Screenshots are saved as test artifacts (see tests/support/web.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from mlmodelscope.core.analysis.svg import format_ns
from tests.support.collector import metric_samples
from tests.support.web import TOKEN, WebEnvironment

pytestmark = pytest.mark.slow


def cells(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def num(value: float) -> str:
    return f"{value:,.1f}"


def test_web_catalog_page_lists_the_api_catalog(web: WebEnvironment, page: Any) -> None:
    catalog = web.get("/api/v1/catalog")
    page.goto(f"{web.url}/ui/catalog")
    assert [m["name"] for m in catalog["models"]] == ["digits-cnn"]
    assert page.locator("[data-testid=models] tr[data-model]").count() == len(catalog["models"])
    row = page.locator("tr[data-model=digits-cnn]")
    assert row.locator("td").nth(1).inner_text() == catalog["models"][0]["task"]
    assert page.locator("tr[data-framework=onnxruntime] td").nth(1).inner_text() == catalog["frameworks"][0]["version"]
    assert page.locator("tr[data-dataset=digits] td").nth(2).inner_text() == str(catalog["datasets"][0]["size"])


def test_web_runs_page_lists_runs_and_filters_them(web: WebEnvironment, page: Any) -> None:
    runs = web.get("/api/v1/runs")
    page.goto(f"{web.url}/ui/runs")
    shown = page.locator("[data-testid=runs] tr[data-run]")
    assert shown.count() == runs["total"] == 3
    for run in runs["items"]:
        row = page.locator(f"[data-testid=runs] tr[data-run='{run['run_id']}']")
        assert row.locator("[data-field=top1]").inner_text() == f"{run['accuracy_top1']:.2%}"
        assert row.locator("[data-field=throughput]").inner_text() == num(run["throughput_samples_per_s"])
    evaluations = web.get("/api/v1/evaluations")
    assert page.locator("[data-testid=evaluations] tr[data-evaluation]").count() == evaluations["total"] == 2

    page.fill("input[name=evaluation_id]", web.sweep_evaluation)
    page.click("form[data-testid=filters] button")
    page.wait_for_url("**evaluation_id=*")
    filtered = web.get("/api/v1/runs", evaluation_id=web.sweep_evaluation)
    assert {r["run_id"] for r in filtered["items"]} == set(web.sweep_runs.values())
    ids = page.locator("[data-testid=runs] tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert sorted(ids) == sorted(web.sweep_runs.values())
    assert page.locator("[data-testid=run-count]").inner_text() == "2 of 2 runs"


def test_web_run_page_shows_the_api_statistics_layers_and_timeline(web: WebEnvironment, page: Any) -> None:
    run_id = web.framework_run
    analysis = web.get(f"/api/v1/runs/{run_id}/analysis")
    result = web.get(f"/api/v1/runs/{run_id}/result")
    timeline = web.get(f"/api/v1/runs/{run_id}/timeline")
    page.goto(f"{web.url}/ui/runs/{run_id}")
    assert page.locator("[data-testid=run-id]").inner_text() == run_id

    latency = analysis["latency"]
    for name, key in (
        ("p50", "p50_ns"),
        ("p90", "p90_ns"),
        ("p99", "p99_ns"),
        ("p99.9", "p99_9_ns"),
        ("max", "max_ns"),
    ):
        value = page.locator(f"[data-testid=percentiles] tr[data-metric='{name}'] td").nth(1)
        assert float(value.get_attribute("data-value")) == latency[key]
        assert value.inner_text() == format_ns(latency[key])
    p99 = analysis["estimates"]["p99"]
    interval = page.locator("[data-testid=percentiles] tr[data-metric=p99] td").nth(2).inner_text()
    assert interval == f"{format_ns(p99['low'])} – {format_ns(p99['high'])}"
    throughput = page.locator("[data-testid=percentiles] tr[data-metric=throughput] td").nth(1)
    assert throughput.inner_text() == num(analysis["estimates"]["throughput"]["value"])

    top1 = page.locator("[data-testid=result] [data-field=top1]")
    assert float(top1.get_attribute("data-value")) == result["accuracy"]["top1"]
    assert top1.inner_text() == f"{result['accuracy']['top1']:.2%}"

    # histogram: one bar per bin with the API's counts, summing to the number of queries; CDF points = API's
    bars = page.locator("svg[data-chart=histogram] rect.bar")
    counts = bars.evaluate_all("bars => bars.map(b => Number(b.dataset.count))")
    assert counts == analysis["histogram"]["counts"]
    assert sum(counts) == analysis["queries"] == result["performance"]["queries"]
    points = page.locator("[data-testid=distribution] svg[data-chart=cdf] circle.point")
    assert points.count() == len(analysis["cdf"])

    layers = analysis["layers"]
    assert layers["layer_spans"] > 0
    rows = page.locator("[data-testid=layers] tr[data-layer]")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.layer)") == [row["name"] for row in layers["top_layers"]]
    first = layers["top_layers"][0]
    assert rows.first.locator("td").nth(4).inner_text() == format_ns(first["total_ns"])
    ops = page.locator("[data-testid=op-types] tr[data-op]").evaluate_all("rows => rows.map(r => r.dataset.op)")
    assert ops == [o["op_type"] for o in layers["op_types"]]
    assert {"Conv2D", "MatMul", "MaxPool"} <= set(ops)  # canonical op types (ONNX Runtime's Conv, Gemm, MaxPool)

    spans = page.locator("[data-testid=timeline] rect.span")
    assert spans.count() == len(timeline["phases"]["bars"]) + len(timeline["window"]["bars"])
    names = set(spans.evaluate_all("rects => rects.map(r => r.dataset.name)"))
    assert {"evaluation", "performance_run", "predict", "Conv"} <= names


def test_web_run_page_shows_throughput_vs_batch_size(web: WebEnvironment, page: Any) -> None:
    sweeps = web.get("/api/v1/sweeps", evaluation_id=web.sweep_evaluation)["sweeps"]
    assert len(sweeps) == 1 and [p["batch_size"] for p in sweeps[0]["points"]] == [1, 4]
    page.goto(f"{web.url}/ui/runs/{web.sweep_runs[1]}")
    for point in sweeps[0]["points"]:
        row = page.locator(f"[data-testid=sweeps] tr[data-batch='{point['batch_size']}'] td").nth(2)
        assert float(row.get_attribute("data-value")) == point["samples_per_s"]
        assert row.inner_text() == num(point["samples_per_s"])
    optimal = page.locator(
        f"[data-testid=sweeps] tr[data-batch='{sweeps[0]['optimal_batch_size']}'] [data-field=optimal]"
    )
    assert optimal.inner_text() == "optimal"
    chart = page.locator("svg[data-chart=sweep] circle.point")
    assert chart.evaluate_all("cs => cs.map(c => Number(c.dataset.x))") == [1, 4]


def test_web_compare_page_shows_the_api_verdicts(web: WebEnvironment, page: Any) -> None:
    run_ids = [web.sweep_runs[1], web.sweep_runs[4], web.framework_run]
    view = web.get("/api/v1/compare", run=run_ids)
    page.goto(f"{web.url}/ui/runs")
    for run_id in run_ids:  # pick the runs on the list page, in this order, and submit
        page.check(f"[data-testid=runs] tr[data-run='{run_id}'] input[type=checkbox]")
    page.get_by_role("button", name="Compare selected (first = baseline)").click()
    page.wait_for_url("**/ui/compare?**")
    shown_baseline = page.locator("[data-testid=baseline]").inner_text()
    assert shown_baseline in run_ids
    if shown_baseline != view["baseline"]["run_id"]:  # the list page orders runs newest first
        view = web.get("/api/v1/compare", run=[shown_baseline, *(r for r in run_ids if r != shown_baseline)])
    for candidate in view["candidates"]:
        run_id = candidate["candidate"]["run_id"]
        heading = page.locator(f"h2[data-candidate='{run_id}'] [data-field=verdict]")
        assert heading.inner_text() == candidate["comparison"]["verdict"]
        for metric in candidate["comparison"]["metrics"]:
            row = page.locator(f"[data-testid='comparison-{run_id}'] tr[data-metric='{metric['metric']}']")
            assert row.locator("[data-field=verdict]").inner_text() == metric["verdict"]
            ratio = row.locator("td").nth(5)
            assert float(ratio.get_attribute("data-value")) == pytest.approx(metric["ratio"], rel=1e-12)
            assert ratio.inner_text() == f"{metric['ratio']:.3f}"
    assert page.locator("svg[data-chart=cdf] polyline").count() == 3


def _wait_for_text(page: Any, selector: str, wanted: set[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        page.reload()
        locator = page.locator(selector)
        text = locator.first.inner_text() if locator.count() else ""
        if text in wanted:
            return text
        time.sleep(1.0)
    raise AssertionError(f"{selector} still '{text}' after {timeout_s} s")


def test_web_launch_form_runs_an_evaluation_checked_against_a_baseline(web: WebEnvironment, page: Any) -> None:
    baseline = web.sweep_runs[1]
    page.goto(f"{web.url}/ui/runs/{baseline}")
    page.fill("[data-testid=baseline-form] input[name=token]", TOKEN)
    page.click("[data-testid=baseline-form] button")
    page.wait_for_url(f"**/ui/runs/{baseline}")
    assert page.locator("[data-field=regression-state]").inner_text() == "baseline"
    assert [b["run_id"] for b in web.get("/api/v1/baselines")["items"]] == [baseline]
    page.goto(f"{web.url}/ui/baselines")
    row = page.locator(f"[data-testid=baselines] tr[data-baseline='{baseline}'] td")
    assert row.nth(1).inner_text() == "onnxruntime" and row.nth(5).inner_text() == "1"

    page.goto(f"{web.url}/ui/launch")
    page.select_option("select[name=model]", "digits-cnn")
    page.check("input[name=frameworks][value=onnxruntime]")
    page.fill("input[name=batch_sizes]", "1")
    page.fill("input[name=min_duration_s]", "1")
    page.select_option("select[name=mode]", "performance")
    page.fill("input[name=token]", TOKEN)
    page.click("[data-testid=launch-form] button")
    page.wait_for_url("**/ui/evaluations/**")
    evaluation_id = page.locator("[data-testid=evaluation-id]").inner_text()
    status = _wait_for_text(page, "[data-testid=evaluation-runs] [data-field=status]", {"succeeded", "failed"}, 180)
    assert status == "succeeded", (web.data / "ui-runs").glob("*/agent.log")
    assert page.locator("[data-testid=evaluation-state]").inner_text() == "finished"

    runs = web.get("/api/v1/runs", evaluation_id=evaluation_id)["items"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded"
    run_id = runs[0]["run_id"]

    def checked() -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            regression: dict[str, Any] = web.get(f"/api/v1/runs/{run_id}/regression")
            if regression["stored"]:
                return regression
            time.sleep(0.5)
        raise AssertionError("the launched run was not checked against the baseline")

    regression = checked()
    assert regression["baseline_run_id"] == baseline
    page.goto(f"{web.url}/ui/runs/{run_id}")
    assert page.locator("[data-field=regression-state]").inner_text() == regression["state"]
    assert f"×{regression['verdict']['p99_ratio']:.3f}" in page.locator("[data-testid=regression]").inner_text()
    samples = metric_samples(httpx.get(f"{web.url}/metrics", timeout=10).text)
    labels = {k: str(runs[0][k]) for k in ("model", "framework", "arch", "accelerator", "scenario", "batch_size")}
    detected = samples[("mlmodelscope_regression_detected", frozenset(labels.items()))]
    assert detected == (1.0 if regression["state"] == "regressed" else 0.0)


def test_web_forms_refuse_a_missing_or_wrong_token(web: WebEnvironment, page: Any) -> None:
    page.goto(f"{web.url}/ui/launch")
    page.check("input[name=frameworks][value=onnxruntime]")
    page.fill("input[name=token]", "not-the-token")
    with page.expect_response(lambda r: r.url.endswith("/ui/launch") and r.request.method == "POST") as answer:
        page.click("[data-testid=launch-form] button")
    assert answer.value.status == 403
    assert "not this collector's token" in page.locator("[data-testid=error]").inner_text()
    before = web.get("/api/v1/runs")["total"]
    response = httpx.post(f"{web.url}/api/v1/evaluations", json={"model": "digits-cnn", "frameworks": ["onnxruntime"]})
    assert response.status_code == 401
    assert web.get("/api/v1/runs")["total"] == before


def test_the_database_aggregated_layers_equal_the_spans_aggregated_in_python(web: WebEnvironment) -> None:
    """The layer table comes from a GROUP BY over JSON attributes; it must equal the core's own aggregation."""
    from mlmodelscope.collector import analysis
    from mlmodelscope.collector.storage import reads
    from mlmodelscope.collector.storage.database import Database
    from mlmodelscope.core.analysis.layers import groups_of

    database = Database(f"sqlite:///{web.data / 'collector.db'}")
    try:
        with database.read() as connection:
            in_sql = analysis.layer_groups(connection, web.framework_run)
            in_python = groups_of(reads.list_spans(connection, web.framework_run))
    finally:
        database.dispose()
    assert sorted(in_sql, key=str) == sorted(in_python, key=str)
    assert sum(group.calls for group in in_sql) > 0
