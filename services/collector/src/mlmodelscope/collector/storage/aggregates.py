"""The database aggregates the metrics start from, so every counter equals the true count after a restart.

Sums never overflow, whatever is stored: SQLite's ``SUM`` of integers raises "integer overflow" past 2**63 (two
query records of a few centuries each are enough), and a collector that cannot seed its metrics cannot start. So
each non-negative 64-bit value is summed as two halves, ``value >> 32`` and ``value & 0xFFFFFFFF``, each below
2**32, which stay exact for up to 2**31 rows per group on both dialects; Python joins them as integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, Integer, case, cast, func, literal, select

from mlmodelscope.collector.metrics import (
    LATENCY_BUCKETS_NS,
    LatencyHistogram,
    LatestValue,
    MetricsSnapshot,
    RunLabels,
)
from mlmodelscope.collector.storage import schema
from mlmodelscope.collector.storage.timeutil import utc

DUPLICATE_COUNTER = "messages_duplicate"
LABEL_COLUMNS = (
    schema.runs.c.model,
    schema.runs.c.framework,
    schema.runs.c.arch,
    schema.runs.c.accelerator,
    schema.runs.c.scenario,
    schema.runs.c.batch_size,
)
_runs = schema.runs
_LABELLED = _runs.c.model.is_not(None)  # its run_started arrived: the run has metric labels
_LOW_BITS = 32
_LOW_MASK = (1 << _LOW_BITS) - 1


def sum_halves(value: ColumnElement[int]) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """SUM(value >> 32) and SUM(value & 0xFFFFFFFF): an exact sum of non-negative 64-bit values, overflow-free."""
    wide = cast(value, BigInteger)  # so the mask is a BIGINT on PostgreSQL too, whatever the column's type
    shift, mask = literal(_LOW_BITS, Integer), literal(_LOW_MASK, BigInteger)  # PostgreSQL: bigint >> integer
    return func.sum(wide.op(">>")(shift)), func.sum(wide.op("&")(mask))


def joined_halves(high: int | None, low: int | None) -> int:
    return (int(high or 0) << _LOW_BITS) + int(low or 0)


def labels_of(values: Sequence[Any]) -> RunLabels:
    """Metric labels from (model, framework, arch, accelerator, scenario, batch_size) column values."""
    model, framework, arch, accelerator, scenario, batch_size = values
    return RunLabels(str(model), str(framework), str(arch), str(accelerator), str(scenario), str(batch_size))


def load_snapshot(connection: Connection) -> MetricsSnapshot:
    """The metrics' state as the database holds it (a collector's start, or after a restart)."""
    snapshot = MetricsSnapshot()
    _load_message_counts(connection, snapshot)
    _load_query_figures(connection, snapshot)
    _load_batch_figures(connection, snapshot)
    _load_latest_results(connection, snapshot)
    return snapshot


def _load_message_counts(connection: Connection, snapshot: MetricsSnapshot) -> None:
    """Spans stored (row by row and in column batches), messages by kind, duplicates, dead letters by reason."""
    batches = schema.span_batches
    snapshot.spans_ingested = int(connection.execute(select(func.count()).select_from(schema.spans)).scalar_one())
    snapshot.spans_ingested += int(
        connection.execute(select(func.coalesce(func.sum(batches.c.span_count), 0))).scalar_one()
    )
    for kind, count in connection.execute(
        select(schema.ingested_messages.c.kind, func.count()).group_by(schema.ingested_messages.c.kind)
    ):
        snapshot.messages_ingested[str(kind)] = int(count)
    duplicate = connection.execute(
        select(schema.counters.c.value).where(schema.counters.c.name == DUPLICATE_COUNTER)
    ).scalar_one_or_none()
    snapshot.messages_duplicate = int(duplicate or 0)
    for reason, count in connection.execute(
        select(schema.dead_letters.c.reason, func.count()).group_by(schema.dead_letters.c.reason)
    ):
        snapshot.messages_rejected[str(reason)] = int(count)


def _load_query_figures(connection: Connection, snapshot: MetricsSnapshot) -> None:
    """Inferences and the latency histogram of labelled runs, from their query records."""
    queries = schema.queries
    for *label_values, items_high, items_low in connection.execute(
        select(*LABEL_COLUMNS, *sum_halves(queries.c.item_count))
        .join_from(queries, _runs, queries.c.run_id == _runs.c.run_id)
        .where(_LABELLED)
        .group_by(*LABEL_COLUMNS)
    ):
        snapshot.inferences[labels_of(label_values)] = joined_halves(items_high, items_low)

    latency = queries.c.end_ns - queries.c.start_ns
    bucket = case(
        *[(latency <= bound, index) for index, bound in enumerate(LATENCY_BUCKETS_NS)],
        else_=len(LATENCY_BUCKETS_NS),
    ).label("bucket")
    for *label_values, index, count, sum_high, sum_low in connection.execute(
        select(*LABEL_COLUMNS, bucket, func.count(), *sum_halves(latency))
        .join_from(queries, _runs, queries.c.run_id == _runs.c.run_id)
        .where(_LABELLED, queries.c.mode == "performance")
        .group_by(*LABEL_COLUMNS, bucket)
    ):
        histogram = snapshot.latency.setdefault(labels_of(label_values), LatencyHistogram())
        histogram.counts[int(index)] += int(count)
        histogram.sum_ns += joined_halves(sum_high, sum_low)


def _load_batch_figures(connection: Connection, snapshot: MetricsSnapshot) -> None:
    """Inferences and latencies of labelled runs that the span column batches carry (added to the queries')."""
    batches = schema.span_batches
    for *label_values, query_items, histogram in connection.execute(
        select(*LABEL_COLUMNS, batches.c.query_items, batches.c.latency_histogram)
        .join_from(batches, _runs, batches.c.run_id == _runs.c.run_id)
        .where(_LABELLED)
    ):
        labels = labels_of(label_values)
        snapshot.inferences[labels] = snapshot.inferences.get(labels, 0) + int(query_items)
        if histogram is not None:
            snapshot.latency.setdefault(labels, LatencyHistogram()).merge(histogram)


def _load_latest_results(connection: Connection, snapshot: MetricsSnapshot) -> None:
    """The accuracy and throughput of the latest finished run of each label set."""
    figures = (_runs.c.accuracy_top1, _runs.c.accuracy_metric, _runs.c.accuracy_value, _runs.c.throughput_samples_per_s)
    for *label_values, finished_at, top1, metric, value, throughput in connection.execute(
        select(*LABEL_COLUMNS, _runs.c.finished_at, *figures).where(_LABELLED, _runs.c.finished_at.is_not(None))
    ):
        labels = labels_of(label_values)
        at = utc(finished_at)
        if top1 is not None:
            _keep_latest(snapshot.accuracy_top1, labels, LatestValue(at, float(top1)))
        if metric is not None and value is not None:
            _keep_latest(snapshot.accuracy, labels, LatestValue(at, float(value), str(metric)))
        if throughput is not None:
            _keep_latest(snapshot.throughput, labels, LatestValue(at, float(throughput)))


def _keep_latest(values: dict[RunLabels, LatestValue], labels: RunLabels, candidate: LatestValue) -> None:
    current = values.get(labels)
    if current is None or candidate.at >= current.at:
        values[labels] = candidate
