"""``GET /api/v1/dead-letters``: the messages the collector terminated without storing them, and why.

A dead letter is a message refused on sight (malformed, too large, invalid, misaddressed, a rewrite of a finished
run) or a poison message whose storing failed on each of its bounded deliveries (``insert_failed``). Each is
recorded once, newest first here; ``stream_sequence`` finds the message in the JetStream stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, get_args

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mlmodelscope.collector.api.dependencies import RuntimeDep
from mlmodelscope.collector.errors import RejectReason
from mlmodelscope.collector.storage import dead_letter_reads
from mlmodelscope.collector.storage.timeutil import utc

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])

MAX_OFFSET = 2**31 - 1


class DeadLetterQuery(BaseModel):
    """Filters of GET /api/v1/dead-letters; an unknown parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    reason: RejectReason | None = Field(default=None, description=f"One of: {', '.join(get_args(RejectReason))}.")
    run_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    reason: str = Field(description="Why it was not stored (the label of mlmodelscope_dead_letters_total).")
    detail: str = Field(description="What was wrong, precisely (or the error that storing it raised).")
    subject: str
    message_id: str | None = Field(description="The envelope's message id; None when it did not decode.")
    run_id: str | None = Field(description="The envelope's run id; None when it did not decode.")
    stream_sequence: int | None = Field(description="Its sequence in the JetStream stream; None if not from it.")
    deliveries: int = Field(description="Deliveries of the message when it was dead-lettered.")
    size_bytes: int
    payload_head: str = Field(description="The first 1024 characters of the message (UTF-8, replaced).")
    received_at: Annotated[datetime, AfterValidator(utc)]


class DeadLetterList(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[DeadLetter]
    total: int
    limit: int
    offset: int


@router.get("", response_model=DeadLetterList)
def list_dead_letters(runtime: RuntimeDep, query: Annotated[DeadLetterQuery, Query()]) -> DeadLetterList:
    with runtime.database.read() as connection:
        total, rows = dead_letter_reads.list_dead_letters(
            connection, reason=query.reason, run_id=query.run_id, limit=query.limit, offset=query.offset
        )
    return DeadLetterList(
        items=[DeadLetter.model_validate(row) for row in rows], total=total, limit=query.limit, offset=query.offset
    )
