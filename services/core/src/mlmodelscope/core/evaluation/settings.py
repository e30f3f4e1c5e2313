"""What the user asks an evaluation to do: scenario, mode, batch size, duration and query bounds, seeds.

The semantics are MLPerf LoadGen's (the driver hands these to ``mlcommons-loadgen``); the names are ours and carry
their units. The result records these *requested* settings beside the *effective* ones LoadGen reports, so a
reader can tell what was asked from what ran.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scenario = Literal["single-stream", "multi-stream", "server", "offline"]
Mode = Literal["accuracy", "performance", "both"]
SCENARIOS: tuple[Scenario, ...] = ("single-stream", "multi-stream", "server", "offline")
MODES: tuple[Mode, ...] = ("accuracy", "performance", "both")

# MLPerf's official seeds (loadgen mlperf.conf, v5.x); fixed defaults make runs repeatable.
DEFAULT_QSL_SEED = 2376919268182438552
DEFAULT_SAMPLE_INDEX_SEED = 11176391829184272374
DEFAULT_SCHEDULE_SEED = 3911940905271271337

DEFAULT_PERFORMANCE_SAMPLE_COUNT = 1024
"""LoadGen's performance sample count when none is given: MLPerf fixes it per benchmark as the number of samples
guaranteed to fit in RAM (ResNet-50 1024, SSD-ResNet34 64, 3D-UNet 16: mlperf.conf's performance_sample_count);
1024 is the image classification figure, and never more than the dataset has."""

DEFAULT_FRAMEWORK_TRACE_MAX_CALLS = 1000
"""Enough calls for stable per-operator statistics, few enough that every framework's profile stays small (ONNX
Runtime keeps at most a million events per session) and that parsing it takes seconds, not minutes."""


class Seeds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    qsl: int = Field(default=DEFAULT_QSL_SEED, ge=0, lt=2**64, description="Which samples are loaded.")
    sample_index: int = Field(default=DEFAULT_SAMPLE_INDEX_SEED, ge=0, lt=2**64, description="Sample order.")
    schedule: int = Field(default=DEFAULT_SCHEDULE_SEED, ge=0, lt=2**64, description="Server arrival times.")

    @classmethod
    def from_single(cls, seed: int) -> Seeds:
        """Derive the three LoadGen seeds from one user seed, deterministically."""
        mask = 2**64 - 1
        return cls(
            qsl=(seed * 0x9E3779B97F4A7C15 + 1) & mask,
            sample_index=(seed * 0xC2B2AE3D27D4EB4F + 2) & mask,
            schedule=(seed * 0x165667B19E3779F9 + 3) & mask,
        )


class EvaluationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: Scenario = "single-stream"
    mode: Mode = "both"
    batch_size: int = Field(default=1, ge=1, le=65536, description="Samples per predictor call.")
    warmup_queries: int = Field(
        default=10, ge=0, description="Untimed predictor calls before the test (at least 5, more until steady)."
    )
    min_duration_s: float = Field(default=10.0, ge=0, description="LoadGen min_duration.")
    max_duration_s: float | None = Field(default=None, gt=0, description="LoadGen max_duration; None: unbounded.")
    min_query_count: int = Field(default=100, ge=1, description="LoadGen min_query_count.")
    max_query_count: int | None = Field(default=None, ge=1, description="LoadGen max_query_count.")
    target_qps: float | None = Field(default=None, gt=0, description="Server: Poisson arrival rate (queries/s).")
    latency_bound_ms: float | None = Field(
        default=None, gt=0, description="Server: latency bound at the target percentile (default 100 ms)."
    )
    target_latency_percentile: float | None = Field(
        default=None, gt=0, lt=1, description="Default: LoadGen's (0.90 single-stream, 0.99 multi-stream/server)."
    )
    samples_per_query: int = Field(default=8, ge=1, description="Multi-stream: samples in one query.")
    expected_latency_ms: float | None = Field(
        default=None, gt=0, description="Single/multi-stream hint to LoadGen; default: measured during warm-up."
    )
    expected_qps: float | None = Field(
        default=None, gt=0, description="Offline hint to LoadGen; default: measured during warm-up."
    )
    seeds: Seeds = Field(default_factory=Seeds)
    performance_sample_count: int | None = Field(
        default=None,
        ge=1,
        description="Dataset items LoadGen keeps pre-processed in RAM (its loaded set): the performance run "
        "queries a seeded random set of this many, the accuracy run walks the dataset in sets of this many. "
        f"None: min(dataset size, {DEFAULT_PERFORMANCE_SAMPLE_COUNT}), as MLPerf's image classification.",
    )
    sample_cache: bool = Field(
        default=True,
        description="Keep pre-processed image samples on disk (artifact cache, samples/) so later runs do not "
        "decode them again; only the loading time changes, never the results.",
    )
    framework_trace_max_calls: int = Field(
        default=DEFAULT_FRAMEWORK_TRACE_MAX_CALLS,
        ge=1,
        le=10_000_000,
        description="FRAMEWORK tracing profiles the first this-many calls of the performance run, then stops.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSettings:
        if self.scenario == "server" and self.target_qps is None and self.mode != "accuracy":
            raise ValueError("the server scenario needs target_qps (--target-qps), the Poisson arrival rate")
        if self.max_duration_s is not None and self.max_duration_s < self.min_duration_s:
            raise ValueError(
                f"max_duration_s ({self.max_duration_s}) is shorter than min_duration_s ({self.min_duration_s})"
            )
        if self.max_query_count is not None and self.max_query_count < self.min_query_count:
            raise ValueError(
                f"max_query_count ({self.max_query_count}) is lower than min_query_count ({self.min_query_count})"
            )
        return self

    def performance_samples(self, dataset_size: int) -> int:
        """The loaded set's size in dataset items: the requested count, or the default, at most the dataset."""
        requested = self.performance_sample_count or DEFAULT_PERFORMANCE_SAMPLE_COUNT
        return max(1, min(dataset_size, requested))

    @property
    def effective_latency_bound_ms(self) -> float:
        return self.latency_bound_ms if self.latency_bound_ms is not None else 100.0

    @property
    def runs_accuracy(self) -> bool:
        return self.mode in ("accuracy", "both")

    @property
    def runs_performance(self) -> bool:
        return self.mode in ("performance", "both")
