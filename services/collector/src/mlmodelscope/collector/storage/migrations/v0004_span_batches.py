"""Schema version 4: ``span_batches``, one row per columnar span message (frozen as it was at this version).

A run's spans arrive as ``span_columns`` messages of thousands of spans each; each is stored as one row holding
its compressed column blob (``mlmodelscope.core.span_columns``) plus what listings and reads need without
decoding it: span and query counts, the items and latency histogram of its performance-mode query records (for
the metrics), its time range and the levels it holds (a read of one window or level skips the other rows), and
its query parents. (run_id, sequence) is the primary key: the batch's per-run sequence number, the same as in
its message id. (run_id, content_sha256) is unique, so the same spans re-sent under a new sequence add nothing.
The ``spans`` and ``queries`` tables stay: older agents' and spool files' row-wise messages still land there,
and reads combine both.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Connection, Index, Integer, LargeBinary, MetaData, String, Table


def apply(connection: Connection) -> None:
    metadata = MetaData()
    table = Table(
        "span_batches",
        metadata,
        Column("run_id", String(128), primary_key=True),
        Column("sequence", BigInteger, primary_key=True, autoincrement=False),
        Column("span_count", Integer, nullable=False),
        Column("query_count", Integer, nullable=False),
        Column("query_items", BigInteger, nullable=False),
        Column("latency_histogram", JSON, nullable=True),
        Column("min_start_ns", BigInteger, nullable=False),
        Column("max_end_ns", BigInteger, nullable=False),
        Column("level_mask", Integer, nullable=False),
        Column("query_parents", JSON, nullable=False),
        Column("content_sha256", String(64), nullable=False),
        Column("columns", LargeBinary, nullable=False),
    )
    Index("ux_span_batches_content", table.c.run_id, table.c.content_sha256, unique=True)
    metadata.create_all(connection)
