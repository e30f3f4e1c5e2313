"""Which messages may be stored at all: bytes that decode to an envelope, and the rules its schema cannot express.

Checked before any transaction opens (and by the consumer before it stores), so a message that could never be
stored is refused with its reason (``RejectedMessageError``) and dead-lettered, never half-written: the message id
must be its own envelope's, times and sequence numbers must fit the 64-bit columns, spans must belong to the
envelope's run, and text for a text column must hold no NUL.
"""

from __future__ import annotations

from pydantic import ValidationError

from mlmodelscope.collector.errors import RejectedMessageError
from mlmodelscope.collector.storage import span_store
from mlmodelscope.core.messages import (
    INT64_MAX,
    MAX_MESSAGE_BYTES,
    MSG_ID_HEADER,
    Envelope,
    Payload,
    Progress,
    QueryBatch,
    RunFinished,
    RunStarted,
    SpanBatch,
    SpanColumnBatch,
    decode,
    message_id,
)


def decode_message(data: bytes) -> Envelope:
    """Bytes from the wire -> a storable envelope, or RejectedMessageError saying why not."""
    envelope = decode_envelope(data)
    check_storable(envelope)
    return envelope


def decode_envelope(data: bytes) -> Envelope:
    """Bytes from the wire -> a valid envelope (not yet checked against the storage rules)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise RejectedMessageError(
            f"message of {len(data)} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes", reason="too_large"
        )
    try:
        envelope = decode(data)
    except (ValidationError, ValueError) as e:
        raise RejectedMessageError(f"not a valid message envelope: {_summary(e)}", reason="malformed") from e
    return envelope


def check_storable(envelope: Envelope) -> None:
    """Rules the schema cannot express: the message id is the envelope's own ``<run>:<kind>:<sequence>``, spans
    belong to the envelope's run, times fit in a signed 64-bit integer."""
    payload = envelope.payload
    expected_id = message_id(envelope.run_id, payload.kind, envelope.sequence)
    if envelope.message_id != expected_id:
        raise RejectedMessageError(
            f"message id '{envelope.message_id}' does not name this message: a {payload.kind} message of run "
            f"'{envelope.run_id}' with sequence {envelope.sequence} has the id '{expected_id}'",
            reason="misaddressed",
        )
    if isinstance(payload, SpanBatch):
        for span in payload.spans:
            if span.run_id != envelope.run_id:
                raise RejectedMessageError(
                    f"span {span.span_id} names run '{span.run_id}' inside a message of run '{envelope.run_id}'",
                    reason="invalid",
                )
            _check_interval(f"span {span.span_id}", span.start_ns, span.end_ns)
    elif isinstance(payload, SpanColumnBatch):
        span_store.decode_payload(payload)
    elif isinstance(payload, QueryBatch):
        for query in payload.queries:
            _check_interval(f"query {query.mode}/{query.seq}", query.start_ns, query.end_ns)
            if query.seq > INT64_MAX or query.first_item > INT64_MAX:
                raise RejectedMessageError(f"query {query.mode}/{query.seq}: value out of range", reason="invalid")
    elif isinstance(payload, RunStarted) and abs(payload.epoch_offset_ns) > INT64_MAX:
        raise RejectedMessageError("epoch_offset_ns out of the 64-bit range", reason="invalid")
    _check_text_columns(payload)


def _check_text_columns(payload: Payload) -> None:
    """Text that goes into a text column holds no NUL: PostgreSQL refuses it (SQLite would store it), so the same
    message is refused on sight on both backends instead of failing its insert on one."""
    texts: list[tuple[str, str]] = []
    if isinstance(payload, SpanBatch):
        texts = [(f"span {span.span_id} name", span.name) for span in payload.spans]
    elif isinstance(payload, RunStarted | Progress | RunFinished):
        texts = [(name, value) for name, value in payload if isinstance(value, str)]
    for where, text in texts:
        if "\x00" in text:
            raise RejectedMessageError(f"{where} contains a NUL character", reason="invalid")


def _check_interval(what: str, start_ns: int, end_ns: int) -> None:
    if start_ns > INT64_MAX or end_ns > INT64_MAX:
        raise RejectedMessageError(f"{what}: time out of the 64-bit range", reason="invalid")
    if end_ns < start_ns:
        raise RejectedMessageError(f"{what}: end_ns {end_ns} is before start_ns {start_ns}", reason="invalid")


def check_address(envelope: Envelope, subject: str, msg_id_header: str | None) -> None:
    """The subject and the ``Nats-Msg-Id`` a message travelled under must be its own (when known)."""
    if subject and subject != envelope.subject:
        raise RejectedMessageError(
            f"message '{envelope.message_id}' arrived on subject '{subject}', not on its own '{envelope.subject}'",
            reason="misaddressed",
        )
    if msg_id_header is not None and msg_id_header != envelope.message_id:
        raise RejectedMessageError(
            f"message '{envelope.message_id}' was published with {MSG_ID_HEADER} '{msg_id_header}', another "
            "message's id",
            reason="misaddressed",
        )


def _summary(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
