"""The collector's read side on stored data at the edges, and the API's contract details found by fuzzing: NaN in a
result, all-zero latencies, a run that succeeded without a result, ids outside the pages' pattern, /docs without a
CDN, 400 and 405 in the OpenAPI document, the configured token stripped, bounded launch requests. Every answer is
valid JSON or an HTML page, never a 500."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from mlmodelscope.collector.analysis_models import MAX_LAUNCH_BATCH_SIZES, LaunchRequest
from mlmodelscope.collector.api.routers.runs import NON_FINITE_HEADER
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.analysis import svg
from mlmodelscope.core.analysis.compare import BootstrapSettings
from mlmodelscope.core.analysis.query_samples import QuerySample
from mlmodelscope.core.analysis.report import build_report, to_html, to_markdown
from mlmodelscope.core.analysis.run_analysis import analyze
from mlmodelscope.core.analysis.tables import RunInfo
from tests.support import collector as fixtures
from tests.support import edge_cases as edges

pytestmark = pytest.mark.anyio
TOKEN = "edge-token"


@pytest.fixture
async def collector(sqlite_url: str) -> AsyncIterator[fixtures.RunningApp]:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url, api_token=f"  {TOKEN}\n")) as running:
        edges.ingest_edge_cases(running.runtime)
        yield running


def _strict_json(text: str) -> object:
    """Parse as JSON proper: NaN/Infinity literals are refused."""

    def refuse(literal: str) -> object:
        raise AssertionError(f"{literal} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def test_a_stored_nan_result_is_served_as_json_with_null_and_the_reason(collector: fixtures.RunningApp) -> None:
    response = await collector.client.get(f"/api/v1/runs/{edges.NAN_RUN}/result")
    assert response.status_code == 200, response.text
    document = _strict_json(response.text)
    assert isinstance(document, dict)
    assert document["performance"]["throughput"]["samples_per_s"] is None
    assert document["accuracy"]["top1"] is None
    assert document["accuracy"]["top5"] == 1.0  # finite numbers are untouched
    reason = response.headers[NON_FINITE_HEADER]
    assert "2 non-finite" in reason
    assert "performance.throughput.samples_per_s: NaN" in reason and "accuracy.top1: Infinity" in reason
    listing = await collector.client.get("/api/v1/runs")
    assert listing.status_code == 200
    _strict_json(listing.text)
    page = await collector.client.get(f"/ui/runs/{edges.NAN_RUN}")
    assert page.status_code == 200


async def test_every_read_of_every_edge_case_answers_without_a_server_error(collector: fixtures.RunningApp) -> None:
    client = collector.client
    for run_id in edges.EDGE_RUNS:
        for suffix in ("", "/result", "/queries", "/trace", "/analysis", "/timeline", "/regression"):
            response = await client.get(f"/api/v1/runs/{run_id}{suffix}")
            assert response.status_code in (200, 404, 422), f"{run_id}{suffix}: {response.text[:300]}"
            _strict_json(response.text)
        page = await client.get(f"/ui/runs/{run_id}")
        assert page.status_code == 200, f"{run_id}: {page.text[:300]}"
    compared = await client.get("/api/v1/compare", params=[("run", edges.ZERO_RUN), ("run", edges.HUGE_RUN)])
    assert compared.status_code == 200
    assert (
        await client.get("/ui/compare", params=[("run", edges.ZERO_RUN), ("run", edges.HUGE_RUN)])
    ).status_code == 200


async def test_all_zero_latencies_draw_log_scale_charts(collector: fixtures.RunningApp) -> None:
    page = await collector.client.get(f"/ui/runs/{edges.ZERO_RUN}")
    assert page.status_code == 200, page.text[:500]
    assert 'data-chart="cdf"' in page.text and 'data-chart="histogram"' in page.text
    assert "nan" not in page.text.lower().replace("nanosecond", "")


def test_a_report_over_all_zero_latencies_renders() -> None:
    sample = QuerySample.from_records(
        [{"seq": i, "start_ns": 1_000, "end_ns": 1_000, "item_count": 1} for i in range(20)]
    )
    analysis = analyze("zero", sample, layer_groups=[], top=5, settings=BootstrapSettings())
    run = RunInfo(
        run_id="zero",
        evaluation_id=None,
        model="m",
        framework="f",
        arch=None,
        accelerator=None,
        scenario="single-stream",
        batch_size=1,
        result=None,
        analysis=analysis,
    )
    report = build_report(
        [run, run.model_copy(update={"run_id": "zero-2"})], [], source="t", generated_at=datetime.now(UTC)
    )
    html = to_html(report)
    assert html.count('data-chart="cdf"') == 3  # one per run and the side-by-side one
    assert "zero" in to_markdown(report)
    chart = svg.line_chart([svg.Series("s", [(0.0, 0.5), (0.0, 1.0)])], title="t", x_label="x", y_label="y", log_x=True)
    assert all(math.isfinite(float(v)) for v in _numbers_in(chart, "cx"))


def _numbers_in(chart: str, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([^"]+)"', chart)


async def test_a_succeeded_run_without_a_result_says_so(collector: fixtures.RunningApp) -> None:
    response = await collector.client.get(f"/api/v1/runs/{edges.NO_RESULT_RUN}/result")
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"run '{edges.NO_RESULT_RUN}' succeeded but its agent sent no result")


@pytest.mark.parametrize("path", ["/ui/runs/bad%20id%21", "/ui/runs/" + "x" * 200, "/ui/no-such-page"])
async def test_pages_answer_bad_ids_and_unknown_pages_with_an_html_404(
    collector: fixtures.RunningApp, path: str
) -> None:
    response = await collector.client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-testid="error"' in response.text
    api = await collector.client.get("/api/v1/runs/bad%20id%21")
    assert api.status_code == 422 and api.headers["content-type"] == "application/json"


async def test_docs_load_nothing_from_elsewhere(collector: fixtures.RunningApp) -> None:
    docs = await collector.client.get("/docs")
    assert docs.status_code == 200
    assert "http://" not in docs.text.replace("http://collector", "") and "https://" not in docs.text
    assert "/openapi.json" in docs.text


async def test_docs_serve_swagger_ui_from_a_local_folder(sqlite_url: str, tmp_path: Path) -> None:
    assets = tmp_path / "swagger-ui"
    assets.mkdir()
    (assets / "swagger-ui-bundle.js").write_text("window.SwaggerUIBundle = function () {};\n")
    (assets / "swagger-ui.css").write_text(".swagger-ui {}\n")
    async with fixtures.running_app(fixtures.settings_for(sqlite_url, docs_assets=str(assets))) as app:
        docs = await app.client.get("/docs")
        assert docs.status_code == 200
        assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "/docs-assets/swagger-ui.css" in docs.text
        assert "cdn." not in docs.text and "https://" not in docs.text
        script = await app.client.get("/docs-assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and "SwaggerUIBundle" in script.text
        assert (await app.client.get("/docs-assets/swagger-ui.css")).status_code == 200


async def test_docs_serve_the_swagger_ui_that_the_collector_installs(collector: fixtures.RunningApp) -> None:
    """swagger-ui-bundle is a dependency of the collector: a default install serves the real Swagger UI offline."""
    docs = await collector.client.get("/docs")
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text, docs.text[:500]
    script = await collector.client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text and len(script.content) > 100_000
    css = await collector.client.get("/docs-assets/swagger-ui.css")
    assert css.status_code == 200 and ".swagger-ui" in css.text


async def test_openapi_lists_400_everywhere_and_405_names_every_documented_method(
    collector: fixtures.RunningApp,
) -> None:
    document = (await collector.client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "400" in operation["responses"], f"{method.upper()} {path}"
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in ("/api/v1/baselines", "/api/v1/evaluations", "/api/v1/runs/run-x"):
        documented = {m.upper() for m in document["paths"][path.replace("run-x", "{run_id}")]}
        response = await collector.client.request("OPTIONS", path)
        assert response.status_code == 405
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed - {"HEAD"} == documented, (path, allowed)


async def test_the_configured_token_is_stripped_like_the_supplied_one(collector: fixtures.RunningApp) -> None:
    put = await collector.client.put(
        "/api/v1/baselines", json={"run_id": edges.ZERO_RUN}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert put.status_code == 200, put.text
    padded = await collector.client.delete(
        f"/api/v1/baselines/{edges.ZERO_RUN}", headers={"Authorization": f"Bearer   {TOKEN}  "}
    )
    assert padded.status_code == 204
    wrong = await collector.client.delete(
        f"/api/v1/baselines/{edges.ZERO_RUN}", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403
    assert CollectorSettings.from_env({"MLMODELSCOPE_COLLECTOR_API_TOKEN": "abc\n"}).api_token is not None
    token = CollectorSettings.from_env({"MLMODELSCOPE_COLLECTOR_API_TOKEN": " abc\n"}).api_token
    assert token is not None and token.get_secret_value() == "abc"
    assert CollectorSettings.from_env({"MLMODELSCOPE_COLLECTOR_API_TOKEN": " \n"}).api_token is None


def test_launch_batch_sizes_are_bounded_and_distinct() -> None:
    fine = LaunchRequest.model_validate({"model": "m", "frameworks": ["f"], "batch_sizes": [1, 2, 4]})
    assert fine.batch_sizes == [1, 2, 4]
    with pytest.raises(ValidationError, match="at most"):
        LaunchRequest.model_validate(
            {"model": "m", "frameworks": ["f"], "batch_sizes": list(range(1, MAX_LAUNCH_BATCH_SIZES + 2))}
        )
    with pytest.raises(ValidationError, match="repeat"):
        LaunchRequest.model_validate({"model": "m", "frameworks": ["f"], "batch_sizes": [4, 1, 4]})


async def test_a_launch_request_with_too_many_batch_sizes_is_422(collector: fixtures.RunningApp) -> None:
    body = {"model": "m", "frameworks": ["f"], "batch_sizes": list(range(1, 10_001))}
    response = await collector.client.post(
        "/api/v1/evaluations", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 422
    assert "batch_sizes" in response.text
