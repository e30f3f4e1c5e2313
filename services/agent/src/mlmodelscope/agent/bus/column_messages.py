"""Span columns cut into ``span_columns`` messages that each fit the bus's size limit.

The agent's streamer and the publisher's ``publish_span_columns`` both send spans this way: batches of
``SPANS_PER_COLUMN_MESSAGE`` spans, halved until each encoded envelope fits ``MAX_MESSAGE_BYTES``, each taking the
next ``span_columns`` sequence number (its message id, so its de-duplication key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mlmodelscope.agent.bus.errors import PublishError
from mlmodelscope.core.messages import MAX_MESSAGE_BYTES, SUBJECT_PREFIX, QueryMode, envelope_json, message_id
from mlmodelscope.core.span_blob import span_columns_payload
from mlmodelscope.core.span_columns import SpanColumns

COLUMN_KIND = "span_columns"
SPANS_PER_COLUMN_MESSAGE = 8_192  # ~10-40 bytes a span compressed: well under MAX_MESSAGE_BYTES, halved if not


def column_messages(
    run_id: str,
    columns: SpanColumns,
    query_parents: Sequence[tuple[int, QueryMode]],
    reserve_sequence: Callable[[str], int],
    per_message: int = SPANS_PER_COLUMN_MESSAGE,
) -> list[tuple[str, str, bytes]]:
    """(subject, message id, envelope bytes) of ``span_columns`` messages of at most ``per_message`` spans, halved
    until each fits ``MAX_MESSAGE_BYTES``; each takes the next ``span_columns`` sequence number (its dedup key)."""
    subject = f"{SUBJECT_PREFIX}.{run_id}.{COLUMN_KIND}"
    pending = [(i, min(i + per_message, len(columns))) for i in range(0, len(columns), per_message)]
    messages = []
    while pending:
        start, stop = pending.pop(0)
        payload = span_columns_payload(columns.select(np.arange(start, stop)), query_parents)
        if len(payload) + 512 > MAX_MESSAGE_BYTES:
            if stop - start == 1:
                raise PublishError(f"one span of run {run_id} encodes to {len(payload)} bytes, over the limit.")
            middle = (start + stop) // 2
            pending[:0] = [(start, middle), (middle, stop)]
            continue
        sequence = reserve_sequence(COLUMN_KIND)
        messages.append(
            (subject, message_id(run_id, COLUMN_KIND, sequence), envelope_json(run_id, COLUMN_KIND, sequence, payload))
        )
    return messages
