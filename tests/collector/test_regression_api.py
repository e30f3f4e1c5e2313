"""Baselines and regression detection through the collector's API: synthetic runs with known latency differences
are ingested as agents would send them; the monitor flags the slow one in the API and in Prometheus metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlmodelscope.core.messages import Envelope, QueryBatch, QueryRecord, message_id
from tests.support import collector as fixtures
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LABELS = {
    "model": "digits-cnn",
    "framework": "onnxruntime",
    "arch": "x86_64",
    "accelerator": "cpu",
    "scenario": "single-stream",
    "batch_size": "1",
}


def lognormal_queries(run_id: str, seed: int, median_ns: float, n: int = 3000) -> Envelope:
    """Back-to-back performance queries with lognormal latencies around ``median_ns``."""
    latencies = np.round(np.random.default_rng(seed).lognormal(np.log(median_ns), 0.25, size=n)).astype(int)
    starts = np.concatenate([[0], np.cumsum(latencies)[:-1]]) + 1_000_000
    records = [
        QueryRecord(seq=i, mode="performance", first_item=i, item_count=1, start_ns=int(s), end_ns=int(s + d))
        for i, (s, d) in enumerate(zip(starts, latencies, strict=True))
    ]
    return Envelope(
        message_id=message_id(run_id, "queries", 0), run_id=run_id, sequence=0, payload=QueryBatch(queries=records)
    )


def ingest_run(app: fixtures.RunningApp, run_id: str, seed: int, median_ns: float) -> None:
    ingestor = app.runtime.ingestor
    ingestor.ingest(fixtures.run_started(run_id))
    ingestor.ingest(lognormal_queries(run_id, seed, median_ns))
    ingestor.ingest(fixtures.run_finished(run_id, span_count=0, query_count=3000))


async def regression_of(app: fixtures.RunningApp, run_id: str) -> dict[str, Any]:
    response = await app.client.get(f"/api/v1/runs/{run_id}/regression")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_slower_run_is_flagged_against_its_baseline_and_a_steady_one_is_not(sqlite_url: str) -> None:
    settings = fixtures.settings_for(sqlite_url, api_token=TOKEN, regression_check_interval_s=0.05)
    async with fixtures.running_app(settings) as app:
        ingest_run(app, "base", seed=1, median_ns=100_000)
        assert (await regression_of(app, "base"))["state"] == "no baseline"
        put = await app.client.put("/api/v1/baselines", json={"run_id": "base"}, headers=AUTH)
        assert put.status_code == 200, put.text
        assert put.json()["run_id"] == "base" and put.json()["batch_size"] == 1
        assert (await regression_of(app, "base"))["state"] == "baseline"

        ingest_run(app, "steady", seed=2, median_ns=100_000)
        ingest_run(app, "slow", seed=3, median_ns=140_000)  # p99 and throughput ~40% worse

        async def both_checked() -> bool:
            return [(await regression_of(app, r))["stored"] for r in ("steady", "slow")] == [True, True]

        await eventually(both_checked, what="the monitor to check both runs")
        steady, slow = await regression_of(app, "steady"), await regression_of(app, "slow")
        assert steady["state"] == "ok" and not steady["verdict"]["regressed"]
        assert slow["state"] == "regressed" and slow["baseline_run_id"] == "base"
        assert slow["verdict"]["p99_regressed"] and slow["verdict"]["throughput_regressed"]
        assert slow["verdict"]["p99_ratio"] == pytest.approx(1.4, abs=0.1)
        assert slow["comparison"]["verdict"] == "slower"

        samples = fixtures.metric_samples((await app.client.get("/metrics")).text)
        key = frozenset(LABELS.items())
        # the gauge shows the latest check of these labels: 'slow' was checked after 'steady'
        assert samples[("mlmodelscope_regression_detected", key)] == 1.0
        assert samples[("mlmodelscope_regression_p99_ratio", key)] == pytest.approx(slow["verdict"]["p99_ratio"])

    async with fixtures.running_app(settings) as restarted:  # the gauges are seeded from the stored checks
        samples = fixtures.metric_samples((await restarted.client.get("/metrics")).text)
        assert samples[("mlmodelscope_regression_detected", frozenset(LABELS.items()))] == 1.0


async def test_a_comparison_of_synthetic_runs_matches_the_known_difference(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        ingest_run(app, "a", seed=4, median_ns=100_000)
        ingest_run(app, "b", seed=5, median_ns=80_000)
        ingest_run(app, "c", seed=6, median_ns=100_000)
        response = await app.client.get("/api/v1/compare", params=[("run", "a"), ("run", "b"), ("run", "c")])
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["baseline"]["run_id"] == "a"
        faster, same = view["candidates"]
        assert faster["candidate"]["run_id"] == "b" and faster["comparison"]["verdict"] == "faster"
        p50 = next(m for m in faster["comparison"]["metrics"] if m["metric"] == "p50")
        assert p50["ratio"] == pytest.approx(0.8, abs=0.03)
        assert same["comparison"]["verdict"] == "no significant difference"


async def test_mutations_need_the_token_and_bad_input_is_a_precise_4xx(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url, api_token=TOKEN)) as app:
        ingest_run(app, "r1", seed=7, median_ns=100_000)
        client = app.client
        missing = await client.put("/api/v1/baselines", json={"run_id": "r1"})
        assert missing.status_code == 401 and "token" in missing.json()["detail"]
        wrong = await client.put("/api/v1/baselines", json={"run_id": "r1"}, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 403
        unknown = await client.put("/api/v1/baselines", json={"run_id": "nope"}, headers=AUTH)
        assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
        assert (await client.delete("/api/v1/baselines/r1", headers=AUTH)).status_code == 404
        one = await client.get("/api/v1/compare", params={"run": "r1"})
        # The 2..8 bound is declared in the OpenAPI document, so FastAPI answers with its structured 422.
        assert one.status_code == 422
        (problem,) = one.json()["detail"]
        assert problem["loc"] == ["query", "run"] and "at least 2 items" in problem["msg"]
        assert (await client.get("/api/v1/runs/nope/analysis")).status_code == 404
        launch = await client.post(
            "/api/v1/evaluations", json={"model": "digits-cnn", "frameworks": ["onnxruntime"]}, headers=AUTH
        )
        assert launch.status_code == 409 and "cannot launch" in launch.json()["detail"]
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        disabled = await app.client.put("/api/v1/baselines", json={"run_id": "r1"}, headers=AUTH)
        assert disabled.status_code == 403 and "disabled" in disabled.json()["detail"]


async def test_a_run_without_performance_queries_cannot_be_analysed(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        ingestor = app.runtime.ingestor
        ingestor.ingest(fixtures.run_started("acc-only"))
        ingestor.ingest(fixtures.query_batch("acc-only", range(5), mode="accuracy"))
        ingestor.ingest(fixtures.run_finished("acc-only", span_count=0, query_count=5))
        response = await app.client.get("/api/v1/runs/acc-only/analysis")
        assert response.status_code == 422
        assert "no performance-mode query records" in response.json()["detail"]
