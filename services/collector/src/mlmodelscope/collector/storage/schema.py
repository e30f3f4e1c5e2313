"""The collector's tables, as SQLAlchemy Core ``Table`` objects: the one description both dialects are built from.

Times the agent measured (``start_ns``/``end_ns``) are its monotonic nanoseconds (``BIGINT``); wall-clock instants
are ``started_at``/``finished_at`` in UTC. Every payload table has a natural primary key, so an ``INSERT ... ON
CONFLICT DO NOTHING`` makes re-sent rows harmless even under a new message id.

This module is the one description of the ingest tables: ``make generate`` turns a change here into the next
migration file of ``migrations/ingest/`` (``migrations/autogenerate.py``); ``scripts/generate.py --check`` fails
while one is missing, and ``tests/collector/test_schema_migrations.py`` migrates an empty SQLite (and PostgreSQL)
database and fails unless its tables, columns, keys, indexes and constraints equal these.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

RUN_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    # The labels come from run_started; they are NULL while the run is a placeholder (status 'pending').
    Column("evaluation_id", String(128), nullable=True, index=True),
    Column("model", String(256), nullable=True),
    Column("framework", String(256), nullable=True),
    Column("dataset", String(256), nullable=True),
    Column("scenario", String(64), nullable=True),
    Column("mode", String(64), nullable=True),
    Column("batch_size", Integer, nullable=True),
    Column("arch", String(64), nullable=True),
    Column("accelerator", String(256), nullable=True),
    Column("trace_level", String(64), nullable=True),
    Column("epoch_offset_ns", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("result", JSON, nullable=True),
    Column("accuracy_top1", Float, nullable=True),
    Column("throughput_samples_per_s", Float, nullable=True),
    Column("expected_span_count", Integer, nullable=True),
    Column("expected_query_count", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The task's primary accuracy figure: ('top1', x), ('mAP', x) or ('mIoU', x) (AccuracyResult.primary).
    Column("accuracy_metric", String(32), nullable=True),
    Column("accuracy_value", Float, nullable=True),
)

spans = Table(
    "spans",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("span_id", BigInteger, primary_key=True, autoincrement=False),
    Column("parent_id", BigInteger, nullable=False),
    Column("name", String(256), nullable=False),
    Column("level", Integer, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("attributes", JSON, nullable=False),
)

# Columnar spans (schema version 4): one row per span_columns message, its compressed columns in ``columns``
# (``mlmodelscope.core.span_columns``); the query records are the MODEL spans under ``query_parents``.
span_batches = Table(
    "span_batches",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("span_count", Integer, nullable=False),
    Column("query_count", Integer, nullable=False),
    Column("query_items", BigInteger, nullable=False),
    Column("latency_histogram", JSON, nullable=True),  # [counts per LATENCY_BUCKETS_NS bucket..., sum_ns]
    Column("min_start_ns", BigInteger, nullable=False),
    Column("max_end_ns", BigInteger, nullable=False),
    Column("level_mask", Integer, nullable=False),  # bit L set: the batch holds spans of level L
    Column("query_parents", JSON, nullable=False),  # [[phase span id, mode], ...]
    Column("content_sha256", String(64), nullable=False),
    Column("columns", LargeBinary, nullable=False),
)

queries = Table(
    "queries",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("mode", String(16), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("first_item", BigInteger, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
)

ingested_messages = Table(
    "ingested_messages",
    metadata,
    Column("message_id", String(256), primary_key=True),
    Column("run_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

progress = Table(
    "progress",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("phase", String(64), nullable=False),
    Column("completed_queries", BigInteger, nullable=False),
    Column("elapsed_s", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Dead letters: every message the collector terminated without storing it (refused on sight, or a poison message
# whose storing failed on each of its bounded deliveries), with the reason; kept for a human to look at (and for
# the dead-letter counter to survive a restart). (stream_sequence, payload_sha256) is unique: a redelivery of a
# message already dead-lettered adds nothing; both are NULL for messages that did not come from the stream.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reason", String(32), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("message_id", String(256), nullable=True),
    Column("run_id", String(128), nullable=True),
    Column("stream_sequence", BigInteger, nullable=True),
    Column("payload_sha256", String(64), nullable=True),
    Column("deliveries", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("detail", Text, nullable=False),
    Column("payload_head", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# Counters that no table's row count gives (duplicate deliveries): incremented in the ingesting transaction.
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

Index("ix_runs_labels", runs.c.model, runs.c.framework, runs.c.scenario)
Index("ux_span_batches_content", span_batches.c.run_id, span_batches.c.content_sha256, unique=True)
Index("ix_ingested_messages_run", ingested_messages.c.run_id)
Index("ux_dead_letters_delivery", dead_letters.c.stream_sequence, dead_letters.c.payload_sha256, unique=True)
