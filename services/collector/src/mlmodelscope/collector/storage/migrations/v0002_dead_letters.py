"""Schema version 2: ``dead_letters`` replaces ``rejected_messages`` (frozen as it was at this version).

A dead letter is any message the collector terminated without storing: refused on sight (as before), or a poison
message whose storing failed on each of its bounded deliveries (new). It keeps the message id, run and stream
sequence where known, so a redelivery of a message already dead-lettered is recognised and a human can find the
message in the stream. The rows of ``rejected_messages`` are copied over (one delivery, ids unknown) before that
table is dropped, so the counter seeded from this table is unchanged by the upgrade.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal,
    null,
    select,
)


def apply(connection: Connection) -> None:
    metadata = MetaData()
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
    Index("ux_dead_letters_delivery", dead_letters.c.stream_sequence, dead_letters.c.payload_sha256, unique=True)
    metadata.create_all(connection, checkfirst=False)

    old = Table("rejected_messages", MetaData(), autoload_with=connection)
    connection.execute(
        dead_letters.insert().from_select(
            [
                "reason",
                "subject",
                "message_id",
                "run_id",
                "stream_sequence",
                "payload_sha256",
                "deliveries",
                "size_bytes",
                "detail",
                "payload_head",
                "received_at",
            ],
            select(
                old.c.reason,
                old.c.subject,
                null(),
                null(),
                null(),
                null(),
                literal(1),
                old.c.size_bytes,
                old.c.detail,
                old.c.payload_head,
                old.c.received_at,
            ).order_by(old.c.id),
        )
    )
    old.drop(connection)
