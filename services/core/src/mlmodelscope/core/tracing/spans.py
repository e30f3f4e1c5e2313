"""The span model: one timed interval of one evaluation, at one level of the stack.

Levels are MLModelScope's (``NO`` < ``APPLICATION`` < ``MODEL`` < ``FRAMEWORK`` < ``LIBRARY`` < ``SYSTEM`` <
``HARDWARE`` < ``FULL``): a tracer configured at level L records every span whose level is <= L. Times are
monotonic nanoseconds of the process that recorded them, plus the wall-clock epoch of that monotonic origin, so
spans of several processes can be put on one timeline. This model is the wire format between agents and the
collector (inside ``mlmodelscope.core.messages``), so it changes only with a schema version bump.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AttributeValue = str | int | float | bool
TraceLevelName = Literal["no", "application", "model", "framework", "library", "system", "hardware", "full"]
"""The trace levels as users write them (CLI options, the Evaluation CR, API query parameters)."""


class TraceLevel(IntEnum):
    NO = 0
    APPLICATION = 1
    MODEL = 2
    FRAMEWORK = 3
    LIBRARY = 4
    SYSTEM = 5
    HARDWARE = 6
    FULL = 7

    @classmethod
    def parse(cls, text: str) -> TraceLevel:
        """'framework' / 'FRAMEWORK' / '3' -> TraceLevel.FRAMEWORK; ValueError naming the choices otherwise."""
        key = text.strip().upper()
        if key.isdigit() and int(key) in cls._value2member_map_:
            return cls(int(key))
        if key in cls.__members__:
            return cls[key]
        choices = ", ".join(m.name.lower() for m in cls)
        raise ValueError(f"unknown trace level '{text}' (choose from {choices})")


class Span(BaseModel):
    """One interval. ``parent_id`` 0 means a root span of its run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=128)
    span_id: int = Field(ge=1, lt=2**63)
    parent_id: int = Field(default=0, ge=0, lt=2**63)
    name: str = Field(min_length=1, max_length=256)
    level: TraceLevel
    start_ns: int = Field(ge=0, description="Monotonic ns of the recording process.")
    end_ns: int = Field(ge=0)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns
