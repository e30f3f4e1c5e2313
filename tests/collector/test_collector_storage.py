"""Collector storage on both backends (a SQLite file and a real PostgreSQL): migrations and idempotent ingestion."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, func, inspect, select, text

from mlmodelscope.collector.analysis import layer_groups
from mlmodelscope.collector.errors import (
    DatabaseUnavailableError,
    MigrationError,
    RejectedMessageError,
    StoredDataError,
)
from mlmodelscope.collector.metrics import RunLabels
from mlmodelscope.collector.storage import schema
from mlmodelscope.collector.storage.aggregates import load_snapshot
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor, IngestOutcome, Rejection
from mlmodelscope.collector.storage.migrations import MIGRATIONS, Migration, current_version, migrate
from mlmodelscope.collector.storage.timeutil import utc
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.messages import MAX_MESSAGE_BYTES, Envelope, RunFinished, SpanBatch, encode
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support.collector import (
    LABELS,
    full_run,
    make_span,
    progress,
    query_batch,
    run_finished,
    run_started,
    span_batch,
)
from tests.support.run_results import BIG_SEED, classification_result

TABLES = {"runs", "spans", "queries", "ingested_messages", "progress", "dead_letters", "counters"}


def count(connection: Connection, table_name: str) -> int:
    table = schema.metadata.tables[table_name]
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# --- migrations ------------------------------------------------------------------------------------------------


def test_empty_database_is_migrated_and_a_second_start_is_a_no_op(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert migrate(db) == [1, 2, 3, 4]
        with db.read() as connection:
            assert TABLES | {"schema_version"} <= set(inspect(connection).get_table_names())
            assert current_version(connection) == 4
        assert migrate(db) == []
        with db.read() as connection:
            versions = connection.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert versions == [1, 2, 3, 4]
    finally:
        db.dispose()


def test_migrations_apply_only_the_missing_versions_in_order(database_url: str) -> None:
    applied: list[str] = []

    def add_notes(connection: Connection) -> None:
        applied.append("v4")
        connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))

    db = Database(database_url)
    try:
        assert migrate(db, MIGRATIONS) == [1, 2, 3, 4]
        later = (*MIGRATIONS, Migration(5, "notes", add_notes))
        assert migrate(db, later) == [5]
        assert migrate(db, later) == []
        assert applied == ["v4"]
        # The database is now newer than the code that only knows version 1: refused, not guessed at.
        with pytest.raises(MigrationError, match="newer than this collector"):
            migrate(db, MIGRATIONS)
    finally:
        db.dispose()


def test_a_failing_migration_leaves_nothing_behind(database_url: str) -> None:
    def broken(connection: Connection) -> None:
        connection.execute(text("CREATE TABLE half_done (id INTEGER PRIMARY KEY)"))
        raise RuntimeError("boom")

    db = Database(database_url)
    try:
        with pytest.raises(MigrationError, match="boom") as caught:
            migrate(db, (*MIGRATIONS, Migration(5, "broken", broken)))
        assert isinstance(caught.value.__cause__, RuntimeError)
        with db.read() as connection:
            names = set(inspect(connection).get_table_names())
        assert "half_done" not in names
        assert "runs" not in names  # one transaction: version 1 was rolled back with it
    finally:
        db.dispose()


def test_misnumbered_migrations_are_refused(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with pytest.raises(MigrationError, match="numbered"):
            migrate(db, (Migration(2, "skips one", lambda _c: None),))
    finally:
        db.dispose()


def test_unsupported_or_in_memory_urls_are_clear_errors() -> None:
    from mlmodelscope.collector.errors import CollectorError

    with pytest.raises(CollectorError, match="unsupported database 'mysql'"):
        Database("mysql://localhost/x")
    with pytest.raises(CollectorError, match="SQLite file"):
        Database("sqlite://")
    with pytest.raises(CollectorError, match="invalid database URL"):
        Database("not a url")


def test_an_unreachable_database_is_a_transient_error_with_its_cause() -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(DatabaseUnavailableError, match="unavailable") as caught:
            db.ping()
        assert caught.value.__cause__ is not None
        assert "127.0.0.1:1" in str(caught.value)
    finally:
        db.dispose()


# --- ingestion -------------------------------------------------------------------------------------------------


def test_the_same_message_twice_is_stored_once(database: Database, ingestor: Ingestor) -> None:
    envelope = span_batch("run-a", range(1, 4))
    assert ingestor.ingest(envelope) is IngestOutcome.INSERTED
    assert ingestor.ingest(envelope) is IngestOutcome.DUPLICATE
    assert ingestor.ingest_bytes(encode(envelope), subject=envelope.subject) is IngestOutcome.DUPLICATE
    with database.read() as connection:
        assert count(connection, "spans") == 3
        assert count(connection, "ingested_messages") == 1
        assert count(connection, "runs") == 1
    snapshot = ingestor.metrics.snapshot() if ingestor.metrics else None
    assert snapshot is not None
    assert snapshot.spans_ingested == 3
    assert snapshot.messages_duplicate == 2


def test_spans_resent_under_a_new_message_id_are_not_duplicated(database: Database, ingestor: Ingestor) -> None:
    assert ingestor.ingest(span_batch("run-a", range(1, 4), sequence=0)) is IngestOutcome.INSERTED
    # A retried publish with a new id, overlapping the first batch and adding two spans.
    assert ingestor.ingest(span_batch("run-a", range(2, 6), sequence=1)) is IngestOutcome.INSERTED
    with database.read() as connection:
        span_ids = connection.execute(select(schema.spans.c.span_id).order_by(schema.spans.c.span_id)).scalars().all()
    assert span_ids == [1, 2, 3, 4, 5]
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().spans_ingested == 5


def test_queries_resent_under_a_new_message_id_are_not_duplicated(database: Database, ingestor: Ingestor) -> None:
    ingestor.ingest(run_started("run-a"))
    ingestor.ingest(query_batch("run-a", range(4), sequence=0))
    ingestor.ingest(query_batch("run-a", range(2, 6), sequence=1))
    with database.read() as connection:
        assert count(connection, "queries") == 6
    assert ingestor.metrics is not None
    snapshot = ingestor.metrics.snapshot()
    labels = RunLabels(**LABELS)
    assert snapshot.inferences[labels] == 6
    assert snapshot.latency[labels].count == 6


def test_messages_before_run_started_create_a_placeholder_that_run_started_fills(
    database: Database, ingestor: Ingestor
) -> None:
    ingestor.ingest(span_batch("run-b", range(1, 3)))
    ingestor.ingest(query_batch("run-b", range(3)))
    with database.read() as connection:
        placeholder = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-b")).one()
    assert placeholder.status == "pending"
    assert placeholder.model is None
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().inferences == {}  # no labels yet: counted when they arrive

    ingestor.ingest(run_started("run-b"))
    with database.read() as connection:
        started = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-b")).one()
        assert count(connection, "spans") == 2
    assert started.status == "running"
    assert started.model == "digits-cnn"
    assert started.epoch_offset_ns == 1_700_000_000_000_000_000
    snapshot = ingestor.metrics.snapshot()
    assert snapshot.inferences == {RunLabels(**LABELS): 3}
    assert snapshot.latency[RunLabels(**LABELS)].count == 3


def test_run_started_again_under_a_new_id_keeps_the_first_labels(database: Database, ingestor: Ingestor) -> None:
    ingestor.ingest(run_started("run-c"))
    again = run_started("run-c", model="other-model", sequence=1)
    assert ingestor.ingest(again) is IngestOutcome.INSERTED
    with database.read() as connection:
        assert connection.execute(select(schema.runs.c.model)).scalar_one() == "digits-cnn"


def test_run_finished_before_run_started_keeps_the_final_status(database: Database, ingestor: Ingestor) -> None:
    ingestor.ingest(run_finished("run-d", span_count=0, query_count=0))
    ingestor.ingest(run_started("run-d"))
    with database.read() as connection:
        row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-d")).one()
    assert row.status == "succeeded"
    assert row.model == "digits-cnn"
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().accuracy_top1[RunLabels(**LABELS)].value == pytest.approx(0.98)


def test_a_full_run_is_stored_with_its_result(database: Database, ingestor: Ingestor) -> None:
    for envelope in full_run("run-e", spans=4, queries=6):
        assert ingestor.ingest(envelope) is IngestOutcome.INSERTED
    with database.read() as connection:
        row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-e")).one()
    assert row.status == "succeeded"
    assert row.expected_span_count == 4
    assert row.expected_query_count == 6
    assert row.accuracy_top1 == pytest.approx(0.98)
    assert row.throughput_samples_per_s == pytest.approx(1234.5)
    # A seed above 2**63 survives the JSON column on both backends.
    result = row.result if isinstance(row.result, dict) else json.loads(row.result)
    assert result["requested_settings"]["seeds"]["sample_index"] == BIG_SEED


def test_a_result_that_is_no_run_result_is_dead_lettered_naming_the_field(
    database: Database, ingestor: Ingestor
) -> None:
    """RunFinished.result is the core's RunResult: an agent that sends another document (an incompatible version)
    gets its message dead-lettered with pydantic's path to the field, and the run is not marked finished."""
    ingestor.ingest(run_started("run-v"))
    document = classification_result().model_dump(mode="json")
    del document["load_time"]
    payload = {"status": "succeeded", "result": document, "span_count": 0, "query_count": 0}
    outcome = ingestor.ingest_bytes(_raw_envelope("run-v", "run_finished", payload))
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "malformed"
    assert "result.load_time" in outcome.detail
    with database.read() as connection:
        row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-v")).one()
        assert connection.execute(select(schema.dead_letters.c.reason)).scalar_one() == "malformed"
    assert (row.status, row.finished_at, row.result) == ("running", None, None)


def test_non_finite_figures_of_a_result_cross_the_bus_and_are_stored(database: Database, ingestor: Ingestor) -> None:
    """JSON has no NaN: the result's NaN/Infinity travel as strings, validate back to floats and are stored."""
    base = classification_result()
    assert base.performance is not None and base.accuracy is not None
    throughput = base.performance.throughput.model_copy(update={"samples_per_s": float("nan")})
    odd = base.model_copy(
        update={
            "performance": base.performance.model_copy(update={"throughput": throughput}),
            "accuracy": base.accuracy.model_copy(update={"top5": float("inf")}),
        }
    )
    ingestor.ingest(run_started("run-n"))
    wire = encode(run_finished("run-n", span_count=0, query_count=0, result=odd))
    assert ingestor.ingest_bytes(wire) is IngestOutcome.INSERTED
    with database.read() as connection:
        row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-n")).one()
    assert row.status == "succeeded"
    # A float column keeps NaN on PostgreSQL; SQLite stores it as NULL.
    assert row.throughput_samples_per_s is None or math.isnan(row.throughput_samples_per_s)
    assert row.accuracy_top1 == pytest.approx(0.98)
    stored = row.result if isinstance(row.result, dict) else json.loads(row.result)
    assert (stored["performance"]["throughput"]["samples_per_s"], stored["accuracy"]["top5"]) == ("NaN", "Infinity")
    again = RunResult.model_validate(stored)  # the stored document is the run's result.json: it reads back
    assert again.performance is not None and math.isnan(again.performance.throughput.samples_per_s)


def test_a_failed_run_keeps_its_error(database: Database, ingestor: Ingestor) -> None:
    ingestor.ingest(run_started("run-f"))
    ingestor.ingest(run_finished("run-f", status="failed", error="model load failed", span_count=0, query_count=0))
    with database.read() as connection:
        row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-f")).one()
    assert (row.status, row.error, row.result) == ("failed", "model load failed", None)


def test_progress_keeps_the_latest_even_out_of_order(database: Database, ingestor: Ingestor) -> None:
    ingestor.ingest(progress("run-g", 2, 20))
    ingestor.ingest(progress("run-g", 1, 10))  # late arrival of an older update
    with database.read() as connection:
        row = connection.execute(select(schema.progress)).one()
    assert (row.sequence, row.completed_queries) == (2, 20)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json at all", "malformed"),
        (b'{"schema_version": 1}', "malformed"),
        (b"\xff\xfe\x00garbage", "malformed"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "too_large"),
    ],
)
def test_malformed_or_oversized_bytes_are_rejected_and_counted(
    database: Database, ingestor: Ingestor, data: bytes, reason: str
) -> None:
    outcome = ingestor.ingest_bytes(data, subject="mlmodelscope.runs.x.spans")
    assert isinstance(outcome, Rejection)
    assert outcome.reason == reason
    with database.read() as connection:
        rejected = connection.execute(select(schema.dead_letters)).one()
        assert count(connection, "ingested_messages") == 0
    assert rejected.reason == reason
    assert rejected.size_bytes == len(data)
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().messages_rejected == {reason: 1}


def test_envelopes_that_violate_storage_rules_are_rejected(database: Database, ingestor: Ingestor) -> None:
    foreign = Envelope(
        message_id="run-h:spans:0", run_id="run-h", sequence=0, payload=SpanBatch(spans=[make_span("another-run", 1)])
    )
    backwards = Envelope(
        message_id="run-h:spans:1",
        run_id="run-h",
        sequence=1,
        payload=SpanBatch(
            spans=[Span(run_id="run-h", span_id=1, name="s", level=TraceLevel.MODEL, start_ns=10, end_ns=5)]
        ),
    )
    huge = Envelope(
        message_id="run-h:spans:2",
        run_id="run-h",
        sequence=2,
        payload=SpanBatch(
            spans=[Span(run_id="run-h", span_id=1, name="s", level=TraceLevel.MODEL, start_ns=0, end_ns=2**64)]
        ),
    )
    for envelope, needle in ((foreign, "names run"), (backwards, "before start_ns"), (huge, "64-bit")):
        with pytest.raises(RejectedMessageError, match=needle):
            ingestor.ingest(envelope)
        outcome = ingestor.ingest_bytes(encode(envelope))
        assert isinstance(outcome, Rejection)
        assert outcome.reason == "invalid"
    with database.read() as connection:
        assert count(connection, "runs") == 0
        assert count(connection, "dead_letters") == 3


def test_metrics_kept_in_memory_equal_a_fresh_load_from_the_database(database: Database, ingestor: Ingestor) -> None:
    """What a restarted collector computes from the tables equals what the running one counted."""
    for envelope in full_run("run-i", spans=3, queries=7):
        ingestor.ingest(envelope)
    ingestor.ingest(span_batch("run-j", range(1, 3)))  # placeholder run: spans counted, no labels
    ingestor.ingest(query_batch("run-j", range(2), mode="accuracy"))
    ingestor.ingest(full_run("run-i")[1])  # duplicate
    ingestor.ingest_bytes(b"{}")
    assert ingestor.metrics is not None
    live = ingestor.metrics.snapshot()
    with database.read() as connection:
        reloaded = load_snapshot(connection)
    assert reloaded == live
    assert live.spans_ingested == 5
    assert live.messages_duplicate == 1
    assert live.messages_rejected == {"malformed": 1}


# --- hostile but schema-valid input (issue 11: items 13, 17, 20) -----------------------------------------------


def _raw_envelope(run_id: str, kind: str, payload: dict[str, Any], *, sequence: int = 0) -> bytes:
    """An envelope as a hostile publisher would write it: plain JSON, not built through our models."""
    envelope = {
        "schema_version": 1,
        "message_id": f"{run_id}:{kind}:{sequence}",
        "run_id": run_id,
        "sequence": sequence,
        "payload": {"kind": kind, **payload},
    }
    return json.dumps(envelope).encode()


def _query(seq: int, *, start_ns: int, end_ns: int, item_count: int = 1) -> dict[str, Any]:
    return {
        "seq": seq,
        "mode": "performance",
        "first_item": seq,
        "item_count": item_count,
        "start_ns": start_ns,
        "end_ns": end_ns,
    }


def test_huge_query_durations_do_not_overflow_the_startup_aggregates(database: Database, ingestor: Ingestor) -> None:
    """Two valid records of ~2**62 ns each: their sum is past 2**63, which SQLite's SUM refuses ("integer overflow",
    which used to surface as "database unavailable" and stop the collector from starting)."""
    ingestor.ingest(run_started("run-long"))
    durations = [2**62 + 12345, 2**62 + 67890]
    records = [_query(i, start_ns=0, end_ns=duration) for i, duration in enumerate(durations)]
    outcome = ingestor.ingest_bytes(_raw_envelope("run-long", "queries", {"queries": records}))
    assert outcome is IngestOutcome.INSERTED
    with database.read() as connection:
        reloaded = load_snapshot(connection)
    histogram = reloaded.latency[RunLabels(**LABELS)]
    assert histogram.sum_ns == sum(durations)  # exact, past 2**63
    assert histogram.count == 2
    assert reloaded.inferences[RunLabels(**LABELS)] == 2
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().latency[RunLabels(**LABELS)].sum_ns == sum(durations)


def test_a_data_error_of_the_database_is_not_reported_as_unavailable(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with pytest.raises(StoredDataError, match="integer overflow") as caught, db.read() as connection:
            connection.execute(text("SELECT SUM(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1)"))
        assert not isinstance(caught.value, DatabaseUnavailableError)
        assert "unavailable" not in str(caught.value)
        assert caught.value.__cause__ is not None
    finally:
        db.dispose()


INT32_LIMIT = 2**31
INT64_LIMIT = 2**63


@pytest.mark.parametrize(
    ("kind", "payload", "sequence", "field"),
    [
        ("queries", {"queries": [_query(0, start_ns=0, end_ns=1, item_count=INT32_LIMIT)]}, 0, "item_count"),
        ("queries", {"queries": [_query(INT64_LIMIT, start_ns=0, end_ns=1)]}, 0, "seq"),
        ("queries", {"queries": [_query(0, start_ns=0, end_ns=INT64_LIMIT)]}, 0, "end_ns"),
        ("run_finished", {"status": "succeeded", "span_count": INT32_LIMIT, "query_count": 0}, 0, "span_count"),
        ("run_finished", {"status": "succeeded", "span_count": 0, "query_count": INT32_LIMIT}, 0, "query_count"),
        ("progress", {"phase": "p", "completed_queries": INT64_LIMIT, "elapsed_s": 1.0}, 0, "completed_queries"),
        ("progress", {"phase": "p", "completed_queries": 1, "elapsed_s": 1.0}, INT64_LIMIT, "sequence"),
    ],
)
def test_integers_beyond_their_columns_are_refused_at_ingest(
    database: Database, ingestor: Ingestor, kind: str, payload: dict[str, Any], sequence: int, field: str
) -> None:
    outcome = ingestor.ingest_bytes(_raw_envelope("run-bounds", kind, payload, sequence=sequence))
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "malformed"
    assert field in outcome.detail
    with database.read() as connection:
        assert count(connection, "ingested_messages") == 0
        assert count(connection, "queries") == 0
        assert connection.execute(select(schema.dead_letters.c.reason)).scalar_one() == "malformed"


def test_values_at_the_bounds_are_stored(database: Database, ingestor: Ingestor) -> None:
    records = [_query(2**63 - 1, start_ns=2**63 - 1, end_ns=2**63 - 1, item_count=2**31 - 1)]
    assert ingestor.ingest_bytes(_raw_envelope("run-edge", "queries", {"queries": records})) is IngestOutcome.INSERTED
    with database.read() as connection:
        row = connection.execute(select(schema.queries)).one()
    assert (row.seq, row.item_count, row.end_ns) == (2**63 - 1, 2**31 - 1, 2**63 - 1)


def test_a_message_whose_id_names_another_run_is_refused(database: Database, ingestor: Ingestor) -> None:
    """A message for run A carrying B's run_finished id used to take B's id, so B's real result was dropped as a
    duplicate."""
    spoof = run_finished("run-a", span_count=0, query_count=0)
    spoof = spoof.model_copy(update={"message_id": "run-b:run_finished:0"})
    outcome = ingestor.ingest_bytes(encode(spoof), subject=spoof.subject)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "misaddressed"
    assert "run-b:run_finished:0" in outcome.detail and "run-a:run_finished:0" in outcome.detail
    real = run_finished("run-b", span_count=0, query_count=0)
    assert ingestor.ingest_bytes(encode(real), subject=real.subject) is IngestOutcome.INSERTED
    with database.read() as connection:
        runs = dict(connection.execute(select(schema.runs.c.run_id, schema.runs.c.status)).all())
        dead = connection.execute(select(schema.dead_letters)).one()
    assert runs == {"run-b": "succeeded"}
    assert (dead.reason, dead.message_id, dead.run_id) == ("misaddressed", "run-b:run_finished:0", "run-a")


def test_a_message_on_another_runs_subject_or_under_another_msg_id_is_refused(
    database: Database, ingestor: Ingestor
) -> None:
    envelope = span_batch("run-a", range(1, 3))
    wrong_subject = ingestor.ingest_bytes(encode(envelope), subject="mlmodelscope.runs.run-b.spans")
    wrong_header = ingestor.ingest_bytes(encode(envelope), subject=envelope.subject, msg_id_header="run-b:spans:0")
    for outcome in (wrong_subject, wrong_header):
        assert isinstance(outcome, Rejection)
        assert outcome.reason == "misaddressed"
    assert ingestor.ingest_bytes(encode(envelope), subject=envelope.subject, msg_id_header=envelope.message_id) == (
        IngestOutcome.INSERTED
    )
    with database.read() as connection:
        assert count(connection, "spans") == 2
        assert count(connection, "dead_letters") == 2


def test_a_finished_run_is_not_rewritten_by_a_later_run_finished(database: Database, ingestor: Ingestor) -> None:
    for envelope in full_run("run-k", spans=2, queries=3):
        ingestor.ingest(envelope)
    rewrite = Envelope(
        message_id="run-k:run_finished:1",
        run_id="run-k",
        sequence=1,
        payload=RunFinished(status="failed", error="rewritten", span_count=0, query_count=0),
    )
    outcome = ingestor.ingest_bytes(encode(rewrite), subject=rewrite.subject)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "run_already_finished"
    with database.read() as connection:
        row = connection.execute(select(schema.runs).where(schema.runs.c.run_id == "run-k")).one()
        assert count(connection, "ingested_messages") == 5
    assert (row.status, row.error, row.expected_span_count) == ("succeeded", "", 2)
    assert row.accuracy_top1 == pytest.approx(0.98)


def test_finished_at_is_the_agents_finish_time_and_older_messages_fall_back_to_ingest_time(
    database: Database, ingestor: Ingestor
) -> None:
    agent_finished = datetime(2026, 1, 2, 3, 9, 0, tzinfo=UTC)
    with_time = run_finished("run-l", span_count=0, query_count=0)
    with_time = with_time.model_copy(
        update={"payload": with_time.payload.model_copy(update={"finished_at": agent_finished})}
    )
    ingestor.ingest(with_time)
    before = datetime.now(UTC)
    older = json.loads(encode(run_finished("run-m", span_count=0, query_count=0)))
    older["payload"].pop("finished_at")  # what an agent from before the field sends
    assert ingestor.ingest_bytes(json.dumps(older).encode()) is IngestOutcome.INSERTED
    after = datetime.now(UTC)
    with database.read() as connection:
        finished = dict(connection.execute(select(schema.runs.c.run_id, schema.runs.c.finished_at)).all())
    assert utc(finished["run-l"]) == agent_finished
    assert before <= utc(finished["run-m"]) <= after


def test_a_redelivered_dead_letter_is_recorded_and_counted_once(database: Database, ingestor: Ingestor) -> None:
    for deliveries in (1, 2, 3):
        outcome = ingestor.ingest_bytes(
            b"{not json", subject="mlmodelscope.runs.x.spans", stream_sequence=7, deliveries=deliveries
        )
        assert isinstance(outcome, Rejection)
    ingestor.ingest_bytes(b"{other", subject="mlmodelscope.runs.x.spans", stream_sequence=8)
    with database.read() as connection:
        rows = connection.execute(select(schema.dead_letters.c.stream_sequence, schema.dead_letters.c.deliveries))
        assert sorted(rows.all()) == [(7, 1), (8, 1)]
        assert load_snapshot(connection).messages_rejected == {"malformed": 2}
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().messages_rejected == {"malformed": 2}


def test_the_dead_letter_migration_keeps_the_rejected_messages(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate(db, MIGRATIONS[:1])
        with db.write() as connection:
            connection.execute(
                text(
                    "INSERT INTO rejected_messages (reason, subject, size_bytes, detail, payload_head, received_at) "
                    "VALUES ('malformed', 'mlmodelscope.runs.x.spans', 9, 'not json', '{not json', :at)"
                ),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
        assert migrate(db) == [2, 3, 4]
        with db.read() as connection:
            assert "rejected_messages" not in inspect(connection).get_table_names()
            row = connection.execute(select(schema.dead_letters)).one()
            assert load_snapshot(connection).messages_rejected == {"malformed": 1}
        assert (row.reason, row.detail, row.deliveries, row.stream_sequence) == ("malformed", "not json", 1, None)
    finally:
        db.dispose()


def test_the_layer_breakdown_sums_huge_operator_durations_exactly(database: Database, ingestor: Ingestor) -> None:
    """Two FRAMEWORK spans of ~2**63 ns of one operator: their sum overflowed SQLite's SUM (a 500 on /analysis)."""
    spans = [
        Span(
            run_id="run-ops",
            span_id=span_id,
            parent_id=0,
            name="conv",
            level=TraceLevel.FRAMEWORK,
            start_ns=0,
            end_ns=2**63 - span_id,
            attributes={"node": "conv1", "op_type": "Conv2D"},
        )
        for span_id in (1, 2)
    ]
    envelope = Envelope(message_id="run-ops:spans:0", run_id="run-ops", sequence=0, payload=SpanBatch(spans=spans))
    assert ingestor.ingest(envelope) is IngestOutcome.INSERTED
    with database.read() as connection:
        groups = layer_groups(connection, "run-ops")
    assert [(group.calls, group.total_ns) for group in groups] == [(2, 2**64 - 3)]


def test_nul_in_text_is_refused_on_sight_and_a_dead_letter_can_always_be_stored(
    database: Database, ingestor: Ingestor
) -> None:
    """PostgreSQL refuses NUL in text (SQLite stores it): refused on both, instead of failing one's insert; a
    dead letter whose message id holds NUL is stored all the same."""
    named = span_batch("run-nul", range(1, 2))
    assert isinstance(named.payload, SpanBatch)
    bad_span = named.payload.spans[0].model_copy(update={"name": "conv\x00"})
    named = named.model_copy(update={"payload": SpanBatch(spans=[bad_span])})
    labelled = run_started("run-nul")
    labelled = labelled.model_copy(update={"payload": labelled.payload.model_copy(update={"model": "m\x00"})})
    for envelope in (named, labelled):
        outcome = ingestor.ingest_bytes(encode(envelope), subject=envelope.subject)
        assert isinstance(outcome, Rejection)
        assert (outcome.reason, "NUL" in outcome.detail) == ("invalid", True)
    spoof = span_batch("run-nul", range(1, 2)).model_copy(update={"message_id": "run-x:spans:0\x00"})
    outcome = ingestor.ingest_bytes(encode(spoof), subject=spoof.subject)
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "misaddressed"
    with database.read() as connection:
        assert count(connection, "runs") == 0
        reasons = connection.execute(select(schema.dead_letters.c.reason).order_by(schema.dead_letters.c.id))
        assert reasons.scalars().all() == ["invalid", "invalid", "misaddressed"]
        stored_id = connection.execute(
            select(schema.dead_letters.c.message_id).where(schema.dead_letters.c.reason == "misaddressed")
        ).scalar_one()
    assert stored_id == "run-x:spans:0\ufffd"


def test_the_accuracy_metric_migration_fills_in_the_top1_of_older_runs(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate(db, MIGRATIONS[:2])
        at = datetime(2026, 1, 1, tzinfo=UTC)
        with db.write() as connection:
            for run_id, top1 in (("old-classifier", 0.97), ("old-detector", None)):
                connection.execute(
                    text(
                        "INSERT INTO runs (run_id, status, error, accuracy_top1, created_at) "
                        "VALUES (:run_id, 'succeeded', '', :top1, :at)"
                    ),
                    {"run_id": run_id, "top1": top1, "at": at},
                )
        assert migrate(db) == [3, 4]
        with db.read() as connection:
            rows = connection.execute(
                select(schema.runs.c.run_id, schema.runs.c.accuracy_metric, schema.runs.c.accuracy_value).order_by(
                    schema.runs.c.run_id
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("old-classifier", "top1", pytest.approx(0.97)),
            ("old-detector", None, None),
        ]
    finally:
        db.dispose()
