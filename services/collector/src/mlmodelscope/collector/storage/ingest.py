"""Idempotent ingestion: one message, one transaction, stored exactly once however often it is delivered.

``Ingestor.ingest`` first inserts the envelope's ``message_id`` into ``ingested_messages``; when that row already
exists the message is a redelivery and nothing else happens (``DUPLICATE``). Otherwise the payload's rows are
inserted in the same transaction with ``INSERT ... ON CONFLICT DO NOTHING`` on their natural keys, so a batch
re-sent under a *new* message id adds nothing either. Messages for a run whose ``run_started`` has not arrived
create a placeholder run (status ``pending``) so nothing accepted is lost; ``run_started`` later fills it in.

Metric changes are computed from what was actually inserted and applied only after the commit. A message that is
not storable is refused with a reason, written to ``dead_letters`` once (a redelivery of the same stream message
adds nothing) and counted: never raised by ``ingest_bytes``. Refused on sight: bytes that are not an envelope,
values beyond what the columns hold, a message id that is not ``<run>:<kind>:<sequence>`` of its own envelope (or a
subject / ``Nats-Msg-Id`` naming another), and a second ``run_finished`` of a finished run (a finished run is
never rewritten). The consumer dead-letters a poison message (storing it failed on each of its deliveries) here too.

The rules of what is storable are in ``message_checks``; the rows each kind of payload adds, in ``payload_writes``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection

from mlmodelscope.collector.errors import RejectedMessageError, RejectReason
from mlmodelscope.collector.metrics import CollectorMetrics, MetricEffects
from mlmodelscope.collector.storage import schema
from mlmodelscope.collector.storage.aggregates import DUPLICATE_COUNTER
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.dialects import conflict_insert
from mlmodelscope.collector.storage.message_checks import check_address, check_storable, decode_envelope
from mlmodelscope.collector.storage.payload_writes import write_payload
from mlmodelscope.collector.storage.timeutil import now
from mlmodelscope.core.messages import Envelope

log = logging.getLogger(__name__)

PAYLOAD_HEAD_CHARS = 1024


class IngestOutcome(StrEnum):
    INSERTED = "inserted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str


class Ingestor:
    """Stores envelopes in the database and keeps the metrics in step; safe to call from several threads."""

    def __init__(self, database: Database, metrics: CollectorMetrics | None = None) -> None:
        self.database = database
        self.metrics = metrics

    def ingest(self, envelope: Envelope, *, checked: bool = False) -> IngestOutcome:
        """Store one envelope in one transaction. Raises RejectedMessageError (not storable) or
        DatabaseUnavailableError (try again later; nothing was committed). ``checked``: ``check_storable``
        already ran (``decode_message`` runs it)."""
        if not checked:
            check_storable(envelope)
        with self.database.write() as connection:
            outcome, effects = _ingest(connection, envelope)
        if self.metrics is not None:
            self.metrics.apply(effects)
        return outcome

    def ingest_bytes(
        self,
        data: bytes,
        *,
        subject: str = "",
        msg_id_header: str | None = None,
        stream_sequence: int | None = None,
        deliveries: int = 1,
    ) -> IngestOutcome | Rejection:
        """Decode and store one message from the wire; a message that is not storable is dead-lettered.

        ``subject`` and ``msg_id_header`` (the ``Nats-Msg-Id`` it was published with), when given, must name the
        envelope; ``stream_sequence`` and ``deliveries`` come from the JetStream metadata (None and 1 for a message
        read from elsewhere) and identify the dead letter."""
        envelope: Envelope | None = None
        try:
            envelope = decode_envelope(data)
            check_storable(envelope)
            check_address(envelope, subject, msg_id_header)
            return self.ingest(envelope, checked=True)
        except RejectedMessageError as e:
            return self.reject(
                e.reason,
                str(e),
                subject=subject,
                data=data,
                envelope=envelope,
                stream_sequence=stream_sequence,
                deliveries=deliveries,
            )

    def reject(
        self,
        reason: RejectReason,
        detail: str,
        *,
        subject: str,
        data: bytes,
        envelope: Envelope | None = None,
        stream_sequence: int | None = None,
        deliveries: int = 1,
        error: BaseException | None = None,
    ) -> Rejection:
        """Record a dead letter (once per stream message: a redelivery of one already recorded adds nothing),
        count it and log it once (an ``error`` that storing it raised: as an error, with its traceback)."""
        dead_letters = schema.dead_letters
        digest = hashlib.sha256(data).hexdigest() if stream_sequence is not None else None
        with self.database.write() as connection:
            recorded = connection.execute(
                conflict_insert(connection, dead_letters)
                .values(
                    reason=reason,
                    subject=_text(subject, 512),
                    message_id=None if envelope is None else _text(envelope.message_id, 256),
                    run_id=None if envelope is None else envelope.run_id,
                    stream_sequence=stream_sequence,
                    payload_sha256=digest,
                    deliveries=min(max(deliveries, 1), 2**31 - 1),
                    size_bytes=len(data),
                    detail=_text(detail, 4000),
                    payload_head=_text(data[:PAYLOAD_HEAD_CHARS].decode("utf-8", errors="replace"), PAYLOAD_HEAD_CHARS),
                    received_at=now(),
                )
                .on_conflict_do_nothing(index_elements=[dead_letters.c.stream_sequence, dead_letters.c.payload_sha256])
                .returning(dead_letters.c.id)
            ).first()
        if recorded is None:
            log.debug("stream message %s was dead-lettered before; terminated again", stream_sequence)
            return Rejection(reason, detail)
        log.log(
            logging.WARNING if error is None else logging.ERROR,
            "dead-lettered a message on '%s' (%d bytes, stream sequence %s, delivery %d, %s): %s",
            subject,
            len(data),
            stream_sequence,
            deliveries,
            reason,
            detail,
            exc_info=error,
        )
        if self.metrics is not None:
            self.metrics.record_rejection(reason)
        return Rejection(reason, detail)


def _text(value: str, max_chars: int) -> str:
    """Text a dead letter can always store: cut to its column, NUL (which PostgreSQL refuses) replaced."""
    return value[:max_chars].replace("\x00", "\ufffd")


def _ingest(connection: Connection, envelope: Envelope) -> tuple[IngestOutcome, MetricEffects]:
    payload = envelope.payload
    messages = schema.ingested_messages
    first_time = connection.execute(
        conflict_insert(connection, messages)
        .values(
            message_id=envelope.message_id,
            run_id=envelope.run_id,
            kind=payload.kind,
            sequence=envelope.sequence,
            received_at=now(),
        )
        .on_conflict_do_nothing(index_elements=[messages.c.message_id])
        .returning(messages.c.message_id)
    ).first()
    if first_time is None:
        _increment_counter(connection, DUPLICATE_COUNTER)
        return IngestOutcome.DUPLICATE, MetricEffects(duplicate=True)
    return IngestOutcome.INSERTED, write_payload(connection, envelope)


def _increment_counter(connection: Connection, name: str) -> None:
    counters = schema.counters
    statement = conflict_insert(connection, counters).values(name=name, value=1)
    connection.execute(
        statement.on_conflict_do_update(index_elements=[counters.c.name], set_={"value": counters.c.value + 1})
    )
