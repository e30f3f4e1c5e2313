"""LoadGen's query schedule: the hints that size it, what it will cost in memory, and a warning when it will not fit.

LoadGen pre-generates every query of a performance test before issuing the first one (mlcommons-loadgen 6.0,
``GenerateQueries``): SingleStream and MultiStream generate the queries of *twice* ``min_duration`` at the expected
latency they are told (Server: once, at the target QPS), at least ``min_query_count``; Offline generates one query
of 1.1 x ``min_duration`` x expected QPS samples. Neither ``max_query_count`` nor ``max_duration`` shortens that
schedule (they only stop the issuing early), so the schedule's memory is set by the hint and ``min_duration``.

A hint from the bare predictor call is too small for a fast model: a query through LoadGen also costs LoadGen's
own issue/complete path and our SUT callback (digits-cnn on ONNX Runtime: ~4 us predict, ~16 us per query), so
LoadGen would generate (and hold) four times the queries it issues. The driver therefore calibrates on a short
LoadGen test (``QueryCost`` from ``source="loadgen"``) and derives the hints here; hints the user pinned win.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mlmodelscope.core.evaluation.settings import EvaluationSettings, Scenario

CGROUP_ROOT = Path("/sys/fs/cgroup")
SCHEDULE_FILE = "schedule.json"
"""The performance run's ``ScheduleEstimate``, written beside LoadGen's logs (the result's ``log_dir``)."""

LOADGEN_BYTES_PER_QUERY = 274
"""Bytes per query slot of LoadGen's schedule. The schedule is a ``std::vector<QueryMetadata>`` grown by doubling,
so its peak (while it moves into a buffer twice as large) is this many bytes per slot of the next power of two at
or above the generated count. Measured with ``benchmarks/run_memory.py --bytes-per-query`` (bare LoadGen 6.0.17,
null SUT, SingleStream, 2 CPUs, Python 3.11), peak RSS: 591.9 MiB for 1,159,691 generated queries (hint 8,624 ns,
5 s: 2^21 slots), 1,139.8 MiB for 2,319,649 (4,312 ns, 5 s: 2^22), 2,235.9 MiB for 6,958,944 (4,312 ns, 15 s:
2^23); (1,139.8 - 591.9) MiB / 2^21 = 274 B = (2,235.9 - 1,139.8) MiB / 2^22, over a base of ~46 MB. The queries
issued (1.0 to 3.9 million there) add no measurable memory: the schedule is what grows."""

LOADGEN_BYTES_PER_SAMPLE = 16
"""Bytes per sample beyond a query's first (MultiStream queries, Offline's one query): a sample index in the query's
vector plus its latency slot; small next to a query, an estimate rather than a measurement."""

MEMORY_WARNING_FRACTION = 0.5
"""Warn when the schedule's estimate exceeds this fraction of the memory available to the process."""

CALIBRATION_MIN_DURATION_S = 0.3
"""The calibration test's min_duration: some ten thousand queries of a fast model, 300 of a 1 ms one."""

CALIBRATION_MIN_QUERIES = 16
CALIBRATION_MAX_SAMPLES = 4_096
"""Offline's calibration query holds at most this many samples (digits-cnn: 0.1 s at 34,000 samples/s)."""
CALIBRATION_SKIP_LATENCY_NS = 1_000_000
"""A predictor call this slow (1 ms) makes LoadGen's few microseconds per query negligible (<1%), so the warm-up's
figure is the cost and the calibration test is skipped."""

STREAM_HINT_FRACTION = 0.8
"""SingleStream/MultiStream hint = this x the measured cost per query. LoadGen already generates twice the queries
min_duration needs at the hint, so the schedule holds 2 / 0.8 = 2.5 x the queries a run at the measured cost
issues: a run up to 2.5 x faster than its calibration still does not run out of queries."""

OFFLINE_QPS_FACTOR = 1.5
"""Offline hint = this x the measured samples/s. LoadGen's Offline ends when its one query (1.1 x min_duration x
the hint's samples) is answered: a hint below the real rate makes the run shorter than min_duration (INVALID, and
the driver re-runs it), one above makes it longer; at the measured rate it lasts 1.65 x min_duration."""

FASTEST_QUERY_NS = 8_000
"""The least a query can cost through LoadGen: what ``worst_case_schedule`` assumes before the model is known.
A null SUT (answers at once, holds nothing) takes 12.6 us per SingleStream query through LoadGen's Python
bindings on the 2-vCPU VM the benchmarks ran on (``benchmarks/run_memory.py``: 158,725 queries in 2 s); 8 us
leaves room for a CPU ~1.5x faster. A model is never faster than this through LoadGen, so a schedule that fits at
this cost fits for every model."""

PROFILED_COST_FRACTION = 0.25
"""At FRAMEWORK trace level a calibrated cost is taken as this fraction of what was measured. A framework profiler
may be on before the profile window opens (ONNX Runtime profiles a session from its creation until
``end_profiling``), so the warm-up and the calibration test measure profiled calls, while most of the run's calls
come after the window and are not profiled: digits-cnn on ONNX Runtime calibrated at ~178 us per query and ran at
~43 us, ran out of queries and had to be repeated, and a repeated test leaves the framework trace partial (the
profiler cannot restart). The schedule then holds 10x the queries at the calibrated cost; a cost measured on a
previous test of the run (``source="run"``) is used as it is."""
SERVER_QPS_FRACTION = 0.5
"""Server without --target-qps (accuracy runs only: performance runs must give it): half the measured rate."""


class QueryCost(BaseModel):
    """What one LoadGen query costs in wall time, and where the figure comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a calibration test / bare predictor calls / a previous test / the fastest any query can be (before the run)
    source: Literal["loadgen", "warm-up", "run", "floor"]
    per_query_ns: float  # wall time per LoadGen query (Offline: per predictor call), LoadGen's own work included
    samples_per_s: float  # dataset samples (LoadGen samples) answered per second
    queries: int = 0  # how many queries (Offline: calls) the figures are measured over


class LoadGenHints(BaseModel):
    """The figures LoadGen sizes its schedule from (only the scenario's own is used)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expected_latency_ns: int  # SingleStream / MultiStream
    offline_expected_qps: float
    server_target_qps: float
    pinned: bool  # the user gave the scenario's hint: no calibration, no re-run
    cost: QueryCost | None = None  # what the unpinned hints were derived from


class ScheduleEstimate(BaseModel):
    """LoadGen's schedule for one performance test, estimated before it starts (and checked after, from its log)."""

    model_config = ConfigDict(extra="forbid")

    scenario: Scenario
    hints: LoadGenHints
    expected_queries: int  # queries min_duration needs at the hint (at least min_query_count)
    generated_queries: int  # queries LoadGen pre-generates (and holds for the whole test)
    samples_per_query: int
    estimated_bytes: int
    available_bytes: int
    available_source: str
    warning: str | None = None
    generated_queries_logged: int | None = None  # LoadGen's own count (its detail log), after the test
    # A first test that ran out of queries and was repeated with a recalibrated hint: its queries, and how many of
    # its MODEL spans had been streamed already (they stay in the trace, under the same phase span, all before the
    # repeated test's first query; the result's figures are the repeated test's alone).
    discarded_test_queries: int = 0
    discarded_streamed_spans: int = 0


def is_pinned(settings: EvaluationSettings) -> bool:
    """Did the user give the hint the scenario uses? (Server's target QPS is the test itself, never calibrated.)"""
    if settings.scenario == "offline":
        return settings.expected_qps is not None
    if settings.scenario == "server":
        return settings.target_qps is not None
    return settings.expected_latency_ms is not None


def needs_calibration(settings: EvaluationSettings, predict_latency_ns: int) -> bool:
    """A calibration test is worth it when the hint is not pinned and LoadGen's overhead is not negligible."""
    return not is_pinned(settings) and predict_latency_ns < CALIBRATION_SKIP_LATENCY_NS


def loadgen_hints(settings: EvaluationSettings, cost: QueryCost, *, profiled: bool = False) -> LoadGenHints:
    """The scenario's hints: the user's where given, else derived from ``cost`` (see the fractions above);
    ``profiled``: the run is traced at FRAMEWORK level (``PROFILED_COST_FRACTION``)."""
    fraction = PROFILED_COST_FRACTION if profiled and cost.source != "run" else 1.0
    per_query_ns = max(cost.per_query_ns * fraction, 1_000.0)
    if settings.expected_latency_ms is not None:
        latency_ns = settings.expected_latency_ms * 1e6
    else:
        latency_ns = per_query_ns * STREAM_HINT_FRACTION
    offline_qps = settings.expected_qps or cost.samples_per_s / fraction * OFFLINE_QPS_FACTOR
    server_qps = settings.target_qps or SERVER_QPS_FRACTION * 1e9 / per_query_ns
    return LoadGenHints(
        expected_latency_ns=max(round(latency_ns), 1_000),
        offline_expected_qps=offline_qps,
        server_target_qps=server_qps,
        pinned=is_pinned(settings),
        cost=cost,
    )


def generated_queries(settings: EvaluationSettings, hints: LoadGenHints) -> tuple[int, int, int]:
    """(queries min_duration needs, queries LoadGen generates, samples per query), as LoadGen's GenerateQueries."""
    duration_s, floor = settings.min_duration_s, settings.min_query_count
    if settings.scenario == "offline":
        samples = max(floor, int(1.1 * duration_s * hints.offline_expected_qps))
        return 1, 1, samples
    if settings.scenario == "server":
        needed = max(floor, math.ceil(duration_s * hints.server_target_qps))
        return needed, needed, 1
    period_ns = hints.expected_latency_ns
    needed = max(floor, math.ceil(duration_s * 1e9 / period_ns))
    generated = max(floor, math.floor(2 * duration_s * 1e9 / period_ns) + 1)
    return needed, generated, settings.samples_per_query if settings.scenario == "multi-stream" else 1


def schedule_bytes(generated: int, samples_per_query: int) -> int:
    """LoadGen's peak memory for a schedule of ``generated`` queries: slots of the next power of two (see above)."""
    slots = 1 << max(0, generated - 1).bit_length()
    return slots * LOADGEN_BYTES_PER_QUERY + generated * (samples_per_query - 1) * LOADGEN_BYTES_PER_SAMPLE


def estimate_schedule(
    settings: EvaluationSettings, hints: LoadGenHints, available: tuple[int, str] | None = None
) -> ScheduleEstimate:
    """The schedule's size and memory, and a warning when it exceeds ``MEMORY_WARNING_FRACTION`` of ``available``
    (bytes, where the figure comes from; default: this process's, see ``available_memory``)."""
    needed, generated, samples = generated_queries(settings, hints)
    estimated = schedule_bytes(generated, samples)
    available_bytes, source = available if available is not None else available_memory()
    estimate = ScheduleEstimate(
        scenario=settings.scenario,
        hints=hints,
        expected_queries=needed,
        generated_queries=generated,
        samples_per_query=samples,
        estimated_bytes=estimated,
        available_bytes=available_bytes,
        available_source=source,
    )
    if estimated > MEMORY_WARNING_FRACTION * available_bytes:
        estimate.warning = schedule_warning(settings, estimate)
    return estimate


def worst_case_schedule(
    settings: EvaluationSettings, available: tuple[int, str] | None = None, *, per_query_ns: float = FASTEST_QUERY_NS
) -> ScheduleEstimate:
    """The schedule of the fastest possible model (``FASTEST_QUERY_NS`` per query, or ``per_query_ns``), for a
    check before the run (the CLI, before it starts anything): the user's pinned hints where given. The driver
    estimates the real schedule again after its calibration test; this one only errs towards a larger schedule."""
    cost = QueryCost(
        source="floor",
        per_query_ns=per_query_ns,
        samples_per_s=settings.batch_size * 1e9 / per_query_ns,
        queries=0,
    )
    return estimate_schedule(settings, loadgen_hints(settings, cost), available)


def schedule_warning(settings: EvaluationSettings, estimate: ScheduleEstimate) -> str:
    """What the warning says: the figures, and the two ways to bound the schedule with what each does."""
    if settings.scenario == "offline":
        hint = f"an expected {estimate.hints.offline_expected_qps:,.0f} samples/s"
    elif settings.scenario == "server":
        hint = f"a target {estimate.hints.server_target_qps:,.0f} queries/s"
    else:
        hint = f"an expected latency of {estimate.hints.expected_latency_ns:,} ns per query"
    return (
        f"LoadGen will pre-generate {estimate.generated_queries:,} queries for this {settings.min_duration_s:g} s "
        f"{settings.scenario} run at {hint}: about {estimate.estimated_bytes / 2**30:.1f} GiB, more than "
        f"{MEMORY_WARNING_FRACTION:.0%} of the {estimate.available_bytes / 2**30:.1f} GiB available "
        f"({estimate.available_source}); the run may be killed for memory. To bound the schedule, shorten "
        "--min-duration, or pin a larger hint (--expected-latency-ms, or --expected-qps for offline: "
        "expected_latency_ms / expected_qps in the settings): LoadGen then "
        "generates fewer queries, and if the model is faster than the hint it runs out of them before "
        "min_duration and the verdict is INVALID. --max-queries and --max-duration stop the run sooner but do not "
        "shrink the schedule (LoadGen generates it whole first), and a run stopped before min_duration is "
        "INVALID too."
    )


def available_memory(cgroup_root: Path = CGROUP_ROOT) -> tuple[int, str]:
    """Memory this process may still use: the system's available memory, or the cgroup's headroom if lower."""
    import psutil  # here, not at the top: the result document that holds a ScheduleEstimate needs pydantic only

    available = int(psutil.virtual_memory().available)
    headroom = _cgroup_headroom(cgroup_root)
    if headroom is not None and headroom[0] < available:
        return headroom
    return available, "system available memory"


def _cgroup_headroom(root: Path) -> tuple[int, str] | None:
    """cgroup v2 memory.max - memory.current, else v1 memory.limit_in_bytes - memory.usage_in_bytes."""
    for limit_file, usage_file, name in (
        (root / "memory.max", root / "memory.current", "cgroup v2 memory.max"),
        (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes", "cgroup v1 limit"),
    ):
        try:
            limit_text, usage_text = limit_file.read_text().strip(), usage_file.read_text().strip()
        except OSError:
            continue
        if limit_text == "max" or not limit_text.isdigit() or not usage_text.isdigit():
            return None
        limit = int(limit_text)
        if limit >= 2**60:  # v1 writes "no limit" as a huge page-rounded number
            return None
        return max(0, limit - int(usage_text)), f"{name} {limit} bytes"
    return None


def warmup_cost(settings: EvaluationSettings, median_latency_ns: int) -> QueryCost:
    """A query's cost from the warm-up's bare predictor calls (a full batch each): LoadGen's own work left out."""
    call_ns = float(max(median_latency_ns, 1_000))
    calls = math.ceil(settings.samples_per_query / settings.batch_size) if settings.scenario == "multi-stream" else 1
    return QueryCost(
        source="warm-up", per_query_ns=call_ns * calls, samples_per_s=settings.batch_size * 1e9 / call_ns, queries=1
    )


def calibration_hints(settings: EvaluationSettings, median_latency_ns: int) -> LoadGenHints:
    """The calibration test's own hints, from the warm-up. Offline's one query ends only when all its samples are
    answered, and the bare call can be many times faster than a sample through LoadGen, so its size is capped."""
    hints = loadgen_hints(calibration_settings(settings), warmup_cost(settings, median_latency_ns))
    capped_qps = CALIBRATION_MAX_SAMPLES / (1.1 * CALIBRATION_MIN_DURATION_S)
    return hints.model_copy(update={"offline_expected_qps": min(hints.offline_expected_qps, capped_qps)})


def calibration_settings(settings: EvaluationSettings) -> EvaluationSettings:
    """The calibration test's settings: the run's own, but short and unbounded (LoadGen's verdict is discarded)."""
    return settings.model_copy(
        update={
            "min_duration_s": CALIBRATION_MIN_DURATION_S,
            "max_duration_s": None,
            "min_query_count": CALIBRATION_MIN_QUERIES,
            "max_query_count": None,
        }
    )


class QueryMeter:
    """Wraps the SUT's answer callback for a calibration test: the first query's start, the last one's end, counts.

    From the first start to the last end the wall clock covers every answer and every gap LoadGen leaves between
    them (its issue and completion path), which is what a query costs in a LoadGen test.
    """

    def __init__(self) -> None:
        self.first_ns = 0
        self.last_ns = 0
        self.queries = 0
        self.samples = 0

    def wrap(self, answer: Callable[[list[Any]], None]) -> Callable[[list[Any]], None]:
        clock = time.perf_counter_ns

        def metered(query_samples: list[Any]) -> None:
            start = clock()
            if not self.queries:
                self.first_ns = start
            answer(query_samples)
            self.queries += 1
            self.samples += len(query_samples)
            self.last_ns = clock()

        return metered

    def cost(self, settings: EvaluationSettings) -> QueryCost | None:
        """The measured cost (Offline: per predictor call of ``batch_size`` samples); None without a query."""
        span_ns = self.last_ns - self.first_ns
        if not self.queries or span_ns <= 0:
            return None
        calls = math.ceil(self.samples / settings.batch_size) if settings.scenario == "offline" else self.queries
        return QueryCost(
            source="loadgen", per_query_ns=span_ns / calls, samples_per_s=self.samples * 1e9 / span_ns, queries=calls
        )
