"""Builders for the collector's tests: the app run with its lifespan behind an httpx ASGI client, Prometheus samples
parsed, a database refusal for one run, and envelopes of every kind, as agents send them.

Its fixtures (the databases on both backends) are in tests/collector/conftest.py; ``sqlite_url`` and the real
``nats_server`` (local mode's ``EmbeddedNatsServer``) are in tests/conftest.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from mlmodelscope.collector.api.app import create_app
from mlmodelscope.collector.runtime import CollectorRuntime
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.messages import (
    Envelope,
    Progress,
    QueryBatch,
    QueryRecord,
    RunFinished,
    RunStarted,
    SpanBatch,
    message_id,
)
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support.run_results import classification_result

# --- the app -------------------------------------------------------------------------------------------------


def settings_for(database_url: str, **overrides: Any) -> CollectorSettings:
    """Settings with fast timings for tests."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "fetch_timeout_s": 0.2,
        "lag_refresh_s": 0.2,
        "reconnect_delay_s": 0.2,
        "nak_delay_s": 0.2,
        "ack_wait_s": 5.0,
        "fetch_batch_size": 20,
    }
    values.update(overrides)
    return CollectorSettings(**values)


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> CollectorRuntime:
        runtime: CollectorRuntime = self.app.state.runtime
        return runtime


@asynccontextmanager
async def running_app(settings: CollectorSettings) -> AsyncIterator[RunningApp]:
    """create_app(settings) with its lifespan entered (migrations, metrics, consumer) and an ASGI client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            yield RunningApp(app, client)


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse a Prometheus exposition into {(sample name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def add_poison_trigger(database_path: Path, run_id: str) -> None:
    """A real database refusal for one run's spans (what a value out of a column's range does on PostgreSQL):
    storing the message fails on every delivery, for a reason that is not a database outage."""
    connection = sqlite3.connect(database_path, timeout=30)
    try:
        connection.execute(
            f"CREATE TRIGGER refuse_{run_id.replace('-', '_')} BEFORE INSERT ON spans "
            f"WHEN NEW.run_id = '{run_id}' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
        )
        connection.commit()
    finally:
        connection.close()


# --- envelopes -----------------------------------------------------------------------------------------------

LABELS = {
    "model": "digits-cnn",
    "framework": "onnxruntime",
    "arch": "x86_64",
    "accelerator": "cpu",
    "scenario": "single-stream",
    "batch_size": "1",
}


def run_started(
    run_id: str, *, evaluation_id: str = "eval-1", model: str = "digits-cnn", sequence: int = 0
) -> Envelope:
    payload = RunStarted(
        evaluation_id=evaluation_id,
        model=model,
        framework="onnxruntime",
        dataset="digits",
        scenario="single-stream",
        mode="both",
        batch_size=1,
        arch="x86_64",
        accelerator="cpu",
        trace_level="model",
        epoch_offset_ns=1_700_000_000_000_000_000,
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return Envelope(
        message_id=message_id(run_id, "run_started", sequence), run_id=run_id, sequence=sequence, payload=payload
    )


def make_span(run_id: str, span_id: int, *, parent_id: int = 0, level: TraceLevel = TraceLevel.MODEL) -> Span:
    start = 1_000_000 * span_id
    return Span(
        run_id=run_id,
        span_id=span_id,
        parent_id=parent_id,
        name=f"predict-{span_id}",
        level=level,
        start_ns=start,
        end_ns=start + 500_000,
        attributes={"batch": 1, "note": "x"},
    )


def span_batch(run_id: str, span_ids: range | list[int], *, sequence: int = 0, msg_id: str | None = None) -> Envelope:
    return Envelope(
        message_id=msg_id or message_id(run_id, "spans", sequence),
        run_id=run_id,
        sequence=sequence,
        payload=SpanBatch(spans=[make_span(run_id, i) for i in span_ids]),
    )


def query_latency_ns(seq: int) -> int:
    """Deterministic latencies spread over several histogram buckets: 30 us, 130 us, 1.03 ms, 12 ms, ..."""
    return (30_000, 130_000, 1_030_000, 12_000_000, 700_000_000)[seq % 5]


def query_batch(
    run_id: str,
    seqs: range | list[int],
    *,
    mode: Literal["accuracy", "performance"] = "performance",
    sequence: int = 0,
    msg_id: str | None = None,
    item_count: int = 1,
) -> Envelope:
    records = [
        QueryRecord(
            seq=seq,
            mode=mode,
            first_item=seq * item_count,
            item_count=item_count,
            start_ns=10_000_000_000 + seq * 1_000_000_000,
            end_ns=10_000_000_000 + seq * 1_000_000_000 + query_latency_ns(seq),
        )
        for seq in seqs
    ]
    return Envelope(
        message_id=msg_id or message_id(run_id, "queries", sequence),
        run_id=run_id,
        sequence=sequence,
        payload=QueryBatch(queries=records),
    )


def progress(run_id: str, sequence: int, completed: int) -> Envelope:
    return Envelope(
        message_id=message_id(run_id, "progress", sequence),
        run_id=run_id,
        sequence=sequence,
        payload=Progress(phase="performance", completed_queries=completed, elapsed_s=0.5 * completed),
    )


def run_finished(
    run_id: str,
    *,
    span_count: int,
    query_count: int,
    status: Literal["succeeded", "failed"] = "succeeded",
    result: RunResult | None = None,
    error: str = "",
) -> Envelope:
    payload = RunFinished(
        status=status,
        result=result if result is not None or status == "failed" else classification_result(),
        error=error,
        span_count=span_count,
        query_count=query_count,
    )
    return Envelope(message_id=message_id(run_id, "run_finished", 0), run_id=run_id, sequence=0, payload=payload)


def full_run(run_id: str, *, spans: int = 5, queries: int = 10, evaluation_id: str = "eval-1") -> list[Envelope]:
    """The messages of one complete run, in publish order."""
    return [
        run_started(run_id, evaluation_id=evaluation_id),
        span_batch(run_id, range(1, spans + 1)),
        query_batch(run_id, range(queries)),
        progress(run_id, 0, queries),
        run_finished(run_id, span_count=spans, query_count=queries),
    ]
