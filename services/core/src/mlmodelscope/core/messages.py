"""The messages agents publish and the collector ingests: one envelope, a few payload kinds, JSON on the wire.

Transport is NATS JetStream, at-least-once: every envelope has a ``message_id`` that is unique per (run, kind,
sequence) and is sent as the ``Nats-Msg-Id`` header, so JetStream drops a re-published duplicate within its
de-duplication window and the collector drops any later redelivery by the same id. Payloads are batched so each
message stays well under NATS's 1 MiB default ``max_payload`` (``MAX_MESSAGE_BYTES`` leaves headroom).

Spans travel as ``span_columns`` (``SpanColumnBatch``: compressed numpy columns, built and read by
``core.span_columns``, which this module does not import: it needs pydantic only), whose
MODEL spans are also the run's query records; ``spans`` and ``queries`` (a JSON object per row) are what older
agents sent and stay valid. Subjects: ``mlmodelscope.runs.<run_id>.<kind>`` in the stream ``MLMODELSCOPE``
(``mlmodelscope.runs.>``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.tracing.spans import Span

SCHEMA_VERSION = 1
STREAM_NAME = "MLMODELSCOPE"
SUBJECT_PREFIX = "mlmodelscope.runs"
STREAM_SUBJECTS = f"{SUBJECT_PREFIX}.>"
MAX_MESSAGE_BYTES = 512 * 1024
MSG_ID_HEADER = "Nats-Msg-Id"
# What the collector's integer columns hold (INTEGER / BIGINT on PostgreSQL): a value beyond is refused at decode.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

RunId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


def run_id_for(evaluation_id: str, framework: str, batch_size: int | None = None) -> str:
    """The run id of one framework (and batch size, in a sweep) of an evaluation: safe in NATS subjects."""
    suffix = f"-b{batch_size}" if batch_size is not None else ""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{evaluation_id}-{framework}{suffix}")[:128]


class _Frozen(BaseModel):
    # As in the result document: a NaN or an infinity travels as "NaN"/"Infinity" (JSON has no literal for it).
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class RunStarted(_Frozen):
    """Published once when an agent starts a run: what is evaluated where (the labels of every metric)."""

    kind: Literal["run_started"] = "run_started"
    evaluation_id: str = Field(min_length=1, max_length=128)
    model: str = Field(max_length=256)
    framework: str = Field(max_length=256)
    dataset: str = Field(max_length=256)
    scenario: str = Field(max_length=64)
    mode: str = Field(max_length=64)
    batch_size: int = Field(ge=1, le=INT32_MAX)
    arch: str = Field(max_length=64)
    accelerator: str = Field(max_length=256)
    trace_level: str = Field(max_length=64)
    epoch_offset_ns: int = Field(
        ge=-INT64_MAX, le=INT64_MAX, description="Wall-clock ns minus monotonic ns in the agent: aligns its spans."
    )
    started_at: datetime


class SpanBatch(_Frozen):
    kind: Literal["spans"] = "spans"
    spans: list[Span] = Field(min_length=1)


QueryMode = Literal["accuracy", "performance"]
MAX_COLUMN_SPANS = 65_536


class SpanColumnBatch(_Frozen):
    """Spans as compressed columns (``mlmodelscope.core.span_columns``): the agent's format since the columnar
    storage; ``SpanBatch`` stays readable for older agents and spool files.

    The MODEL ``predict`` spans whose parent is one of ``query_parents`` are the run's query records in that mode
    (``seq``, ``first_item``, ``item_count`` attributes plus the span's interval): no separate query message."""

    kind: Literal["span_columns"] = "span_columns"
    span_count: int = Field(ge=1, le=MAX_COLUMN_SPANS)
    query_parents: list[tuple[int, QueryMode]] = Field(
        default_factory=list, max_length=64, description="(phase span id, mode) pairs."
    )
    columns: str = Field(min_length=1, description="Base64 of the zlib-compressed column blob.")


class QueryRecord(_Frozen):
    """One predictor call as the SUT saw it."""

    seq: int = Field(ge=0, le=INT64_MAX, description="Order of the call within the run and mode.")
    mode: Literal["accuracy", "performance"]
    first_item: int = Field(ge=0, le=INT64_MAX)
    item_count: int = Field(ge=1, le=INT32_MAX)
    start_ns: int = Field(ge=0, le=INT64_MAX)
    end_ns: int = Field(ge=0, le=INT64_MAX)


class QueryBatch(_Frozen):
    kind: Literal["queries"] = "queries"
    queries: list[QueryRecord] = Field(min_length=1)


class Progress(_Frozen):
    kind: Literal["progress"] = "progress"
    phase: str = Field(max_length=64)
    completed_queries: int = Field(ge=0, le=INT64_MAX)
    elapsed_s: float = Field(ge=0, allow_inf_nan=False)


class RunFinished(_Frozen):
    """The last message of a run: its ``RunResult`` (the same document as the run's result.json), or the error that
    ended it. The collector validates the result as it decodes the envelope; one that does not validate (an agent
    of an incompatible version) is dead-lettered with pydantic's message, never half-stored."""

    kind: Literal["run_finished"] = "run_finished"
    status: Literal["succeeded", "failed", "cancelled"] = Field(description="cancelled: the agent got SIGTERM.")
    result: RunResult | None = Field(default=None, description="The run's result (None when it failed).")
    error: str = ""
    span_count: int = Field(
        ge=0, le=INT32_MAX, description="Spans published for the run: the collector checks completeness."
    )
    query_count: int = Field(ge=0, le=INT32_MAX, description="Query records published for the run.")
    finished_at: datetime | None = Field(
        default=None, description="The agent's wall-clock finish time; absent from older agents (ingest time then)."
    )


Payload = Annotated[
    RunStarted | SpanBatch | SpanColumnBatch | QueryBatch | Progress | RunFinished,
    Field(discriminator="kind"),
]


class Envelope(_Frozen):
    schema_version: Literal[1] = 1
    message_id: str = Field(min_length=1, max_length=256, description="Unique per (run, kind, sequence).")
    run_id: RunId
    sequence: int = Field(ge=0, le=INT64_MAX, description="Per (run, kind) publish order, starting at 0.")
    payload: Payload

    @property
    def subject(self) -> str:
        return f"{SUBJECT_PREFIX}.{self.run_id}.{self.payload.kind}"


ENVELOPE = TypeAdapter(Envelope)


def message_id(run_id: str, kind: str, sequence: int) -> str:
    return f"{run_id}:{kind}:{sequence}"


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


def envelope_json(run_id: str, kind: str, sequence: int, payload_json: str) -> bytes:
    """Envelope bytes around a payload formatted elsewhere (``span_columns.span_columns_payload``); ``decode``
    validates them."""
    msg_id = json.dumps(message_id(run_id, kind, sequence))
    return (
        f'{{"schema_version":{SCHEMA_VERSION},"message_id":{msg_id},"run_id":{json.dumps(run_id)},'
        f'"sequence":{sequence},"payload":{payload_json}}}'
    ).encode()


def decode(data: bytes) -> Envelope:
    """Parse and validate one message; raises pydantic.ValidationError (a malformed message) on bad input."""
    return ENVELOPE.validate_json(data)
