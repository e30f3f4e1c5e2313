"""The collector's REST API through create_app + httpx's ASGI transport: good input, and bad input that must be a
404/422/503 with a clear detail, never a 500."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mlmodelscope.cli.nats_server import free_port
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.tracing.chrome import validate_chrome_trace
from tests.support.collector import (
    RunningApp,
    full_run,
    query_batch,
    query_latency_ns,
    run_started,
    running_app,
    settings_for,
    span_batch,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def collector(sqlite_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(settings_for(sqlite_url)) as running:
        ingest = running.runtime.ingestor.ingest
        for envelope in full_run("run-1", spans=4, queries=5, evaluation_id="eval-a"):
            ingest(envelope)
        for envelope in full_run("run-2", spans=2, queries=3, evaluation_id="eval-a"):
            ingest(envelope)
        ingest(run_started("run-3", evaluation_id="eval-b", model="resnet50"))
        ingest(query_batch("run-3", range(2), mode="accuracy"))
        ingest(span_batch("orphan", range(1, 3)))  # spans before run_started: a placeholder run
        yield running


async def test_healthz_and_readyz(collector: RunningApp) -> None:
    assert (await collector.client.get("/healthz")).json() == {"status": "ok"}
    ready = await collector.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "database": "ok", "nats": "not configured"}


async def test_readyz_is_503_when_the_database_is_gone(collector: RunningApp) -> None:
    runtime = collector.runtime
    working = runtime.database.engine
    from sqlalchemy import create_engine

    runtime.database.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        ready = await collector.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "unavailable" in ready.json()["database"]
        runs = await collector.client.get("/api/v1/runs")
        assert runs.status_code == 503
        assert "unavailable" in runs.json()["detail"]
        assert runs.headers["retry-after"] == "5"
    finally:
        runtime.database.engine.dispose()
        runtime.database.engine = working


async def test_openapi_documents_every_endpoint(collector: RunningApp) -> None:
    paths = (await collector.client.get("/openapi.json")).json()["paths"]
    assert {
        "/healthz",
        "/readyz",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/result",
        "/api/v1/runs/{run_id}/queries",
        "/api/v1/runs/{run_id}/trace",
        "/api/v1/evaluations",
    } <= set(paths)
    assert (await collector.client.get("/docs")).status_code == 200


async def test_list_runs_and_filters(collector: RunningApp) -> None:
    client = collector.client
    everything = (await client.get("/api/v1/runs")).json()
    assert everything["total"] == 4
    assert {run["run_id"] for run in everything["items"]} == {"run-1", "run-2", "run-3", "orphan"}

    async def ids(**params: str | int) -> set[str]:
        response = await client.get("/api/v1/runs", params=params)
        assert response.status_code == 200, response.text
        return {run["run_id"] for run in response.json()["items"]}

    assert await ids(status="succeeded") == {"run-1", "run-2"}
    assert await ids(status="pending") == {"orphan"}
    assert await ids(model="resnet50") == {"run-3"}
    assert await ids(evaluation_id="eval-a", framework="onnxruntime", scenario="single-stream") == {"run-1", "run-2"}
    assert await ids(model="no-such-model") == set()
    page = (await client.get("/api/v1/runs", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (4, 1, 1, 1)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "exploded"},
        {"limit": 0},
        {"limit": 1001},
        {"limit": "many"},
        {"offset": -1},
        {"offset": 10**30},
        {"model": ""},
        {"model": "a\x00b"},
        {"model": "x" * 300},
        {"colour": "blue"},
    ],
)
async def test_bad_run_filters_are_422(collector: RunningApp, params: dict[str, object]) -> None:
    response = await collector.client.get("/api/v1/runs", params=params)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_get_run(collector: RunningApp) -> None:
    run = (await collector.client.get("/api/v1/runs/run-1")).json()
    assert run["status"] == "succeeded"
    assert run["model"] == "digits-cnn"
    assert run["batch_size"] == 1
    assert (run["expected_span_count"], run["received_span_count"]) == (4, 4)
    assert (run["expected_query_count"], run["received_query_count"]) == (5, 5)
    assert run["complete"] is True
    assert run["progress"]["completed_queries"] == 5
    assert run["started_at"] == "2026-01-02T03:04:05Z"
    assert run["finished_at"].endswith("Z")
    assert run["accuracy_top1"] == pytest.approx(0.98)

    orphan = (await collector.client.get("/api/v1/runs/orphan")).json()
    assert (orphan["status"], orphan["model"], orphan["complete"]) == ("pending", None, None)


@pytest.mark.parametrize("suffix", ["", "/result", "/queries", "/trace"])
async def test_unknown_run_is_404_and_a_bad_id_is_422(collector: RunningApp, suffix: str) -> None:
    missing = await collector.client.get(f"/api/v1/runs/no-such-run{suffix}")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no run 'no-such-run'"
    bad = await collector.client.get(f"/api/v1/runs/bad%20id%21{suffix}")
    assert bad.status_code == 422
    too_long = await collector.client.get(f"/api/v1/runs/{'x' * 129}{suffix}")
    assert too_long.status_code == 422


async def test_result(collector: RunningApp) -> None:
    result = await collector.client.get("/api/v1/runs/run-1/result")
    assert result.status_code == 200
    document = result.json()
    assert document["accuracy"]["top1"] == pytest.approx(0.98)
    assert document["requested_settings"]["seeds"]["sample_index"] == 11176391829184272374

    running = await collector.client.get("/api/v1/runs/run-3/result")
    assert running.status_code == 404
    assert running.json()["detail"].startswith("run 'run-3' has not finished (status running)")


async def test_queries_as_json_and_csv(collector: RunningApp) -> None:
    client = collector.client
    records = (await client.get("/api/v1/runs/run-1/queries")).json()
    assert records["run_id"] == "run-1"
    assert [q["seq"] for q in records["queries"]] == [0, 1, 2, 3, 4]
    assert [q["latency_ns"] for q in records["queries"]] == [query_latency_ns(seq) for seq in range(5)]
    assert all(q["latency_ns"] == q["end_ns"] - q["start_ns"] for q in records["queries"])

    exported = await client.get("/api/v1/runs/run-1/queries", params={"format": "csv", "mode": "performance"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="run-1-queries.csv"' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == ["mode", "seq", "first_item", "item_count", "start_ns", "end_ns", "latency_ns"]
    assert [int(row["latency_ns"]) for row in rows] == [query_latency_ns(seq) for seq in range(5)]

    accuracy_only = (await client.get("/api/v1/runs/run-3/queries", params={"mode": "accuracy"})).json()
    assert [q["mode"] for q in accuracy_only["queries"]] == ["accuracy", "accuracy"]
    none = (await client.get("/api/v1/runs/run-3/queries", params={"mode": "performance"})).json()
    assert none["queries"] == []
    empty_csv = await client.get("/api/v1/runs/orphan/queries", params={"format": "csv"})
    assert empty_csv.text == "mode,seq,first_item,item_count,start_ns,end_ns,latency_ns\n"


@pytest.mark.parametrize("params", [{"format": "xml"}, {"mode": "training"}, {"format": ""}])
async def test_bad_query_export_params_are_422(collector: RunningApp, params: dict[str, str]) -> None:
    assert (await collector.client.get("/api/v1/runs/run-1/queries", params=params)).status_code == 422


async def test_trace_is_a_valid_chrome_trace(collector: RunningApp) -> None:
    response = await collector.client.get("/api/v1/runs/run-1/trace")
    assert response.status_code == 200
    document = response.json()
    validate_chrome_trace(document)
    complete = [event for event in document["traceEvents"] if event["ph"] == "X"]
    assert len(complete) == 4
    first = min(complete, key=lambda event: event["ts"])
    # wall clock = monotonic ns + the run's epoch offset, in microseconds
    assert first["ts"] == pytest.approx((1_000_000 + 1_700_000_000_000_000_000) / 1000)
    assert first["dur"] == pytest.approx(500.0, abs=1)
    names = [e["args"]["name"] for e in document["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    assert names == ["digits-cnn onnxruntime run-1"]

    orphan = (await collector.client.get("/api/v1/runs/orphan/trace")).json()
    validate_chrome_trace(orphan)
    assert len([e for e in orphan["traceEvents"] if e["ph"] == "X"]) == 2


async def test_evaluations_group_runs(collector: RunningApp) -> None:
    response = await collector.client.get("/api/v1/evaluations")
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    groups = {group["evaluation_id"]: group for group in body["items"]}
    assert groups["eval-a"]["run_count"] == 2
    assert groups["eval-a"]["statuses"] == {"succeeded": 2}
    assert groups["eval-a"]["run_ids"] == ["run-1", "run-2"]
    assert groups["eval-b"]["models"] == ["resnet50"]
    assert groups["eval-b"]["statuses"] == {"running": 1}
    page = (await collector.client.get("/api/v1/evaluations", params={"limit": 1})).json()
    assert len(page["items"]) == 1
    assert (await collector.client.get("/api/v1/evaluations", params={"limit": 0})).status_code == 422


async def test_routes_before_startup_are_503_not_500(sqlite_url: str) -> None:
    from mlmodelscope.collector.api.app import create_app

    app = create_app(settings_for(sqlite_url))  # lifespan not entered: nothing is opened
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/api/v1/runs")).status_code == 503
        assert (await client.get("/metrics")).status_code == 503


def test_settings_from_environment() -> None:
    settings = CollectorSettings.from_env(
        {
            "MLMODELSCOPE_COLLECTOR_DATABASE_URL": "postgresql+psycopg://u@db:5432/c",
            "MLMODELSCOPE_COLLECTOR_NATS_URL": "nats://nats:4222",
            "MLMODELSCOPE_COLLECTOR_PORT": "9000",
            "MLMODELSCOPE_COLLECTOR_FETCH_BATCH_SIZE": "50",
            "UNRELATED": "x",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@db:5432/c"
    assert settings.nats_url == "nats://nats:4222"
    assert (settings.port, settings.fetch_batch_size, settings.host) == (9000, 50, "127.0.0.1")
    assert CollectorSettings.from_env({"MLMODELSCOPE_COLLECTOR_NATS_URL": ""}).nats_url is None
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="port"):
        CollectorSettings.from_env({"MLMODELSCOPE_COLLECTOR_PORT": "not-a-port"})


@pytest.mark.slow
def test_main_serves_with_uvicorn_from_the_environment(tmp_path: Path) -> None:
    """`python -m mlmodelscope.collector.main`: settings from MLMODELSCOPE_COLLECTOR_*, a real server, clean exit."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
    environment.update(
        {
            "MLMODELSCOPE_COLLECTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
            "MLMODELSCOPE_COLLECTOR_PORT": str(port),
            "MLMODELSCOPE_COLLECTOR_LOG_LEVEL": "warning",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mlmodelscope.collector.main"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, follow_redirects=False)
        assert metrics.status_code == 200
        assert "mlmodelscope_build_info" in metrics.text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode(errors="replace")
    assert (tmp_path / "served.db").is_file()
