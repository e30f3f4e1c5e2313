"""The database aggregates the metrics start from, so every counter equals the true count after a restart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, case, func, select

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


def labels_of(values: Sequence[Any]) -> RunLabels:
    """Metric labels from (model, framework, arch, accelerator, scenario, batch_size) column values."""
    model, framework, arch, accelerator, scenario, batch_size = values
    return RunLabels(str(model), str(framework), str(arch), str(accelerator), str(scenario), str(batch_size))


def load_snapshot(connection: Connection) -> MetricsSnapshot:
    snapshot = MetricsSnapshot()
    snapshot.spans_ingested = int(connection.execute(select(func.count()).select_from(schema.spans)).scalar_one())
    for kind, count in connection.execute(
        select(schema.ingested_messages.c.kind, func.count()).group_by(schema.ingested_messages.c.kind)
    ):
        snapshot.messages_ingested[str(kind)] = int(count)
    duplicate = connection.execute(
        select(schema.counters.c.value).where(schema.counters.c.name == DUPLICATE_COUNTER)
    ).scalar_one_or_none()
    snapshot.messages_duplicate = int(duplicate or 0)
    for reason, count in connection.execute(
        select(schema.rejected_messages.c.reason, func.count()).group_by(schema.rejected_messages.c.reason)
    ):
        snapshot.messages_rejected[str(reason)] = int(count)

    labelled = _runs.c.model.is_not(None)
    queries = schema.queries
    for *label_values, items in connection.execute(
        select(*LABEL_COLUMNS, func.sum(queries.c.item_count))
        .join_from(queries, _runs, queries.c.run_id == _runs.c.run_id)
        .where(labelled)
        .group_by(*LABEL_COLUMNS)
    ):
        snapshot.inferences[labels_of(label_values)] = int(items)

    latency = queries.c.end_ns - queries.c.start_ns
    bucket = case(
        *[(latency <= bound, index) for index, bound in enumerate(LATENCY_BUCKETS_NS)],
        else_=len(LATENCY_BUCKETS_NS),
    ).label("bucket")
    for *label_values, index, count, sum_ns in connection.execute(
        select(*LABEL_COLUMNS, bucket, func.count(), func.sum(latency))
        .join_from(queries, _runs, queries.c.run_id == _runs.c.run_id)
        .where(labelled, queries.c.mode == "performance")
        .group_by(*LABEL_COLUMNS, bucket)
    ):
        histogram = snapshot.latency.setdefault(labels_of(label_values), LatencyHistogram())
        histogram.counts[int(index)] += int(count)
        histogram.sum_ns += int(sum_ns)

    for *label_values, finished_at, top1, throughput in connection.execute(
        select(*LABEL_COLUMNS, _runs.c.finished_at, _runs.c.accuracy_top1, _runs.c.throughput_samples_per_s).where(
            labelled, _runs.c.finished_at.is_not(None)
        )
    ):
        labels = labels_of(label_values)
        at = utc(finished_at)
        if top1 is not None:
            _keep_latest(snapshot.accuracy_top1, labels, LatestValue(at, float(top1)))
        if throughput is not None:
            _keep_latest(snapshot.throughput, labels, LatestValue(at, float(throughput)))
    return snapshot


def _keep_latest(values: dict[RunLabels, LatestValue], labels: RunLabels, candidate: LatestValue) -> None:
    current = values.get(labels)
    if current is None or candidate.at >= current.at:
        values[labels] = candidate
