"""The API's response and query models (pydantic): what the OpenAPI document promises."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mlmodelscope.collector.storage.reads import RunFilters
from mlmodelscope.collector.storage.timeutil import utc

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
QueryMode = Literal["accuracy", "performance"]
# Free-text filters: any printable text (NUL and other control characters are refused, PostgreSQL rejects NUL).
FilterText = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
MAX_OFFSET = 2**31 - 1
# SQLite returns naive datetimes; every instant the API shows is UTC with its offset.
UtcDatetime = Annotated[datetime, AfterValidator(utc)]


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Response):
    status: Literal["ok"] = "ok"


class Readiness(_Response):
    ready: bool
    database: str = Field(description="'ok' or why the database is not usable.")
    nats: str = Field(description="'ok', 'not configured', or 'not connected'.")


class RunListQuery(BaseModel):
    """Filters of GET /api/v1/runs; an unknown parameter is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    model: FilterText | None = None
    framework: FilterText | None = None
    scenario: FilterText | None = None
    status: RunStatus | None = None
    evaluation_id: FilterText | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)

    def filters(self) -> RunFilters:
        """The storage's filters of this query (the API's list and the web UI's runs page read the same)."""
        return RunFilters(
            model=self.model,
            framework=self.framework,
            scenario=self.scenario,
            status=self.status,
            evaluation_id=self.evaluation_id,
        )


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class RunSummary(_Response):
    run_id: str
    status: RunStatus
    evaluation_id: str | None = Field(description="None while only a placeholder (run_started not received).")
    model: str | None
    framework: str | None
    dataset: str | None
    scenario: str | None
    mode: str | None
    batch_size: int | None
    arch: str | None
    accelerator: str | None
    trace_level: str | None
    error: str
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    accuracy_top1: float | None = Field(description="Classification runs: top-1 accuracy (None for other tasks).")
    accuracy_metric: str | None = Field(
        default=None, description="The task's primary accuracy figure: 'top1', 'mAP' (detection) or 'mIoU'."
    )
    accuracy_value: float | None = Field(default=None, description="Its value (a fraction in [0, 1]).")
    throughput_samples_per_s: float | None
    created_at: UtcDatetime


class RunList(_Response):
    items: list[RunSummary]
    total: int
    limit: int
    offset: int


class ProgressView(_Response):
    phase: str
    completed_queries: int
    elapsed_s: float
    sequence: int
    updated_at: UtcDatetime


class RunDetail(RunSummary):
    epoch_offset_ns: int | None
    expected_span_count: int | None = Field(description="From run_finished: spans the agent published.")
    expected_query_count: int | None
    received_span_count: int
    received_query_count: int
    complete: bool | None = Field(description="Every published span and query received; None until finished.")
    progress: ProgressView | None


class QueryView(_Response):
    mode: QueryMode
    seq: int
    first_item: int
    item_count: int
    start_ns: int
    end_ns: int
    latency_ns: int


class QueryList(_Response):
    run_id: str
    queries: list[QueryView]


class EvaluationListItem(_Response):
    evaluation_id: str
    run_count: int
    statuses: dict[str, int]
    models: list[str | None]
    run_ids: list[str]
    first_started_at: UtcDatetime | None
    last_finished_at: UtcDatetime | None


class EvaluationList(_Response):
    items: list[EvaluationListItem]
    total: int
    limit: int
    offset: int
