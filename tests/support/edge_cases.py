"""Stored data at the edges, for the tests of the collector's read side: a result holding NaN and Infinity, a run
whose latencies are all 0 ns, self-parented and looping spans, durations near 2**63 ns, a run that succeeded
without a result document; and a collector process (local mode's, on 127.0.0.1) serving such a database.

The runs go in through the ingestor like any agent's messages, except what the ingest path may refuse (non-finite
numbers): those are written into the stored row directly, since data stored before such a check exists must
still be served.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import update

from mlmodelscope.cli.local import CollectorProcess
from mlmodelscope.collector.runtime import CollectorRuntime
from mlmodelscope.collector.storage import schema
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.messages import Envelope, QueryBatch, QueryRecord, SpanBatch, message_id
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support.collector import run_finished, run_started, running_app, settings_for
from tests.support.run_results import classification_result

INT64_MAX = 2**63 - 1
NAN_RUN = "e-nan"
ZERO_RUN = "e-zero"
CYCLE_RUN = "e-cycle"
HUGE_RUN = "e-huge"
NO_RESULT_RUN = "e-noresult"
EDGE_RUNS = (NAN_RUN, ZERO_RUN, CYCLE_RUN, HUGE_RUN, NO_RESULT_RUN)


def _queries(run_id: str, intervals: list[tuple[int, int]]) -> Envelope:
    records = [
        QueryRecord(seq=seq, mode="performance", first_item=seq, item_count=1, start_ns=start, end_ns=end)
        for seq, (start, end) in enumerate(intervals)
    ]
    return Envelope(
        message_id=message_id(run_id, "queries", 0), run_id=run_id, sequence=0, payload=QueryBatch(queries=records)
    )


def _spans(run_id: str, spans: list[tuple[int, int, TraceLevel, int, int]]) -> Envelope:
    """spans as (span_id, parent_id, level, start_ns, end_ns)."""
    batch = [
        Span(
            run_id=run_id,
            span_id=span_id,
            parent_id=parent_id,
            name="performance_run" if level == TraceLevel.APPLICATION else f"span-{span_id}",
            level=level,
            start_ns=start,
            end_ns=end,
            attributes={"op_type": "Conv", "node": "conv1"} if level == TraceLevel.FRAMEWORK else {},
        )
        for span_id, parent_id, level, start, end in spans
    ]
    return Envelope(
        message_id=message_id(run_id, "spans", 0), run_id=run_id, sequence=0, payload=SpanBatch(spans=batch)
    )


def nan_result(result: RunResult) -> dict[str, Any]:
    """``result``'s stored document with NaN throughput and an infinite top-1 (what an older database may hold)."""
    document = result.model_dump(mode="json")
    document["performance"]["throughput"]["samples_per_s"] = float("nan")
    document["accuracy"]["top1"] = float("inf")
    return document


def ingest_edge_cases(runtime: CollectorRuntime, result: RunResult | None = None) -> None:
    """Store the edge-case runs (ids in ``EDGE_RUNS``); ``result`` is the document the succeeded ones carry."""
    ingest = runtime.ingestor.ingest
    document = result or classification_result()
    for run_id in EDGE_RUNS:
        ingest(run_started(run_id, evaluation_id=f"eval-{run_id}"))
    ingest(_queries(ZERO_RUN, [(1_000, 1_000)] * 12))
    ingest(run_finished(ZERO_RUN, span_count=0, query_count=12, result=document))

    app_level, model, framework = TraceLevel.APPLICATION, TraceLevel.MODEL, TraceLevel.FRAMEWORK
    cycle_spans = [
        (1, 0, app_level, 0, 10_000),
        (2, 1, model, 100, 900),
        (3, 3, model, 1_000, 1_900),  # its own parent
        (4, 5, framework, 1_100, 1_200),  # 4 <-> 5
        (5, 4, framework, 1_200, 1_300),
        (6, 2, framework, 200, 300),
        (7, 7, app_level, 0, 5),  # a self-parented phase
    ]
    ingest(_spans(CYCLE_RUN, cycle_spans))
    ingest(_queries(CYCLE_RUN, [(100, 900), (1_000, 1_900)]))
    ingest(run_finished(CYCLE_RUN, span_count=len(cycle_spans), query_count=2, result=document))

    huge_spans = [
        (1, 0, app_level, 0, INT64_MAX),
        (2, 1, model, 0, INT64_MAX),
        (3, 2, framework, 0, INT64_MAX),
        (4, 2, framework, 1, INT64_MAX),
    ]
    ingest(_spans(HUGE_RUN, huge_spans))
    ingest(_queries(HUGE_RUN, [(0, INT64_MAX), (1, INT64_MAX), (5, 10)]))
    ingest(run_finished(HUGE_RUN, span_count=len(huge_spans), query_count=3, result=document))

    ingest(_queries(NAN_RUN, [(10, 20), (30, 45)]))
    ingest(run_finished(NAN_RUN, span_count=0, query_count=2, result=document))
    with runtime.database.write() as connection:
        # What an ingest check (if any) would refuse, as a database written before it holds it.
        connection.execute(
            update(schema.runs).where(schema.runs.c.run_id == NAN_RUN).values(result=nan_result(document))
        )

    ingest(_queries(NO_RESULT_RUN, [(10, 20)]))
    ingest(run_finished(NO_RESULT_RUN, span_count=0, query_count=1, result=document))
    with runtime.database.write() as connection:
        connection.execute(update(schema.runs).where(schema.runs.c.run_id == NO_RESULT_RUN).values(result=None))


async def store_edge_cases(database_url: str, result: RunResult | None = None) -> None:
    """Migrate ``database_url`` if needed and add the edge-case runs to it."""
    async with running_app(settings_for(database_url)) as app:
        ingest_edge_cases(app.runtime, result)


@contextlib.contextmanager
def served_collector(database_url: str, log_path: Path, *, token: str | None = None) -> Iterator[str]:
    """A collector process (as local mode starts it, no NATS) on 127.0.0.1 serving ``database_url``; yields its URL."""
    collector = CollectorProcess(
        database_url, None, log_path, settings={"MLMODELSCOPE_COLLECTOR_API_TOKEN": token or ""}
    )
    try:
        collector.start(timeout_s=60)
        yield collector.url
    finally:
        collector.stop(timeout_s=15)
