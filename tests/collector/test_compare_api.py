"""Analysis and comparison endpoints on both database backends (SQLite and a real PostgreSQL): layer times
aggregated by the database from JSON span attributes equal hand-computed sums, and stored regression checks
round-trip through the analysis tables' own migration track."""

from __future__ import annotations

import pytest

from mlmodelscope.core.messages import Envelope, QueryBatch, QueryRecord, SpanBatch, message_id
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support import collector as fixtures
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio
TOKEN = "t0ken"

# (op_type, node, duration_ns) of the operators each query runs, plus the session span that must not count.
OPERATORS = (("Conv", "/1/Conv", 5_000), ("Conv", "/3/Conv", 3_000), ("Gemm", "/7/Gemm", 1_000))


def traced_run(run_id: str, queries: int, latency_ns: int) -> list[Envelope]:
    spans: list[Span] = []
    records: list[QueryRecord] = []
    next_id = 1
    phase = Span(run_id=run_id, span_id=next_id, name="performance_run", level=TraceLevel.APPLICATION, start_ns=0,
                 end_ns=queries * latency_ns)  # fmt: skip
    spans.append(phase)
    for q in range(queries):
        start = q * latency_ns
        next_id += 1
        predict_id = next_id
        spans.append(Span(run_id=run_id, span_id=predict_id, parent_id=phase.span_id, name="predict",
                          level=TraceLevel.MODEL, start_ns=start, end_ns=start + latency_ns,
                          attributes={"seq": q, "first_item": q, "item_count": 1}))  # fmt: skip
        next_id += 1
        spans.append(Span(run_id=run_id, span_id=next_id, parent_id=predict_id, name="model_run",
                          level=TraceLevel.FRAMEWORK, start_ns=start, end_ns=start + latency_ns - 100,
                          attributes={"kind": "session", "framework": "onnxruntime"}))  # fmt: skip
        offset = start
        for op_type, node, duration in OPERATORS:
            next_id += 1
            spans.append(Span(run_id=run_id, span_id=next_id, parent_id=predict_id, name=op_type,
                              level=TraceLevel.FRAMEWORK, start_ns=offset, end_ns=offset + duration,
                              attributes={"kind": "node", "op_type": op_type, "node": node}))  # fmt: skip
            offset += duration
        records.append(QueryRecord(seq=q, mode="performance", first_item=q, item_count=1, start_ns=start,
                                   end_ns=start + latency_ns + (q % 7) * 100))  # fmt: skip
    return [
        fixtures.run_started(run_id),
        Envelope(message_id=message_id(run_id, "spans", 0), run_id=run_id, sequence=0, payload=SpanBatch(spans=spans)),
        Envelope(
            message_id=message_id(run_id, "queries", 0), run_id=run_id, sequence=0, payload=QueryBatch(queries=records)
        ),
        fixtures.run_finished(run_id, span_count=len(spans), query_count=len(records)),
    ]


async def test_layers_and_comparisons_on_both_backends(database_url: str) -> None:
    settings = fixtures.settings_for(database_url, api_token=TOKEN, regression_check_interval_s=0.05)
    async with fixtures.running_app(settings) as app:
        for envelope in [*traced_run("fast", 200, 10_000), *traced_run("slow", 200, 20_000)]:
            app.runtime.ingestor.ingest(envelope)
        analysis = (await app.client.get("/api/v1/runs/fast/analysis", params={"top": 2})).json()
        layers = analysis["layers"]
        assert layers["layer_spans"] == 200 * len(OPERATORS)  # the session spans are not layers
        assert layers["total_ns"] == 200 * 9_000
        assert [(r["name"], r["calls"], r["total_ns"]) for r in layers["top_layers"]] == [
            ("/1/Conv", 200, 1_000_000),
            ("/3/Conv", 200, 600_000),
        ]
        assert [(o["op_type"], o["total_ns"], o["share"]) for o in layers["op_types"]] == [
            ("Conv", 1_600_000, pytest.approx(8 / 9)),
            ("Gemm", 200_000, pytest.approx(1 / 9)),
        ]
        assert analysis["latency"]["p50_ns"] == 10_300  # latencies 10_000 + (q % 7) * 100

        timeline = (await app.client.get("/api/v1/runs/fast/timeline", params={"queries": 3})).json()
        assert timeline["span_count"] == 1 + 200 * 5 and timeline["window_queries"] == 3
        assert len(timeline["window"]["bars"]) == 3 * 5

        view = (await app.client.get("/api/v1/compare", params=[("run", "fast"), ("run", "slow")])).json()
        assert view["candidates"][0]["comparison"]["verdict"] == "slower"

        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert (await app.client.put("/api/v1/baselines", json={"run_id": "fast"}, headers=headers)).status_code == 200
        for envelope in traced_run("slower", 200, 30_000):
            app.runtime.ingestor.ingest(envelope)

        async def checked() -> bool:
            return bool((await app.client.get("/api/v1/runs/slower/regression")).json()["stored"])

        await eventually(checked, what="the regression check of 'slower'")
        regression = (await app.client.get("/api/v1/runs/slower/regression")).json()
        assert regression["state"] == "regressed" and regression["verdict"]["p99_ratio"] > 2.5
        assert (await app.client.delete("/api/v1/baselines/fast", headers=headers)).status_code == 204
        assert (await app.client.get("/api/v1/baselines")).json()["items"] == []
