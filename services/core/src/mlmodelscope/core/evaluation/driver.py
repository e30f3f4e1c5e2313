"""The LoadGen driver: our system-under-test (SUT) and query sample library (QSL) for ``mlcommons-loadgen``.

We do not write a load generator. LoadGen decides when queries are issued (SingleStream, MultiStream, Server's
Poisson arrivals, Offline's one big query), measures latencies and gives the VALID/INVALID verdict; this module
answers its queries as fast as the predictor allows and keeps a per-query record (SUT-side start/end times); in
accuracy mode every batch's outputs go to the task's ``Scorer``.

Sample library. The QSL's load/unload callbacks are the sample library's (LoadGen calls them untimed, before and
after a test): the performance run loads one seeded random set of ``performance_sample_count`` items, the accuracy
run walks the dataset in such sets, so memory is bounded by that count rather than by the dataset.

Batching. A predictor call processes ``batch_size`` samples. In Offline and MultiStream LoadGen issues many
samples per query, which we cut into batches. In SingleStream and Server LoadGen issues one sample per query, so
with ``batch_size`` B > 1 one LoadGen sample *is* a batch of B consecutive dataset items ("units" below); LoadGen
then counts batches, and throughput in items/s is LoadGen's figure times B.

Hot path. SingleStream, MultiStream and Offline answer synchronously inside LoadGen's ``IssueQuery`` callback
(no thread hop); Server hands queries to worker threads so LoadGen keeps its arrival schedule. Per query the SUT
does: look up the input views built when the unit was loaded (or gather), predict, append one record, complete
(the callbacks are in ``sut``); a pump thread moves the records into an exact latency histogram while the test
runs, so a run keeps no object per query however long it runs.

Schedule. LoadGen pre-generates every query of a performance test from a hint (expected latency or QPS), so after
the warm-up a short calibration test through LoadGen measures what a query costs there (``schedule``); the
performance run's hints come from it, and its schedule's size and memory are estimated (and warned about) first.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import mlperf_loadgen as lg
import numpy as np

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.loadgen_report import DETAIL_LOG, LoadGenReport, parse_report, read_detail_log
from mlmodelscope.core.evaluation.loadgen_settings import loadgen_test_settings
from mlmodelscope.core.evaluation.sample_library import QuerySampleLibrary, SampleLibrary
from mlmodelscope.core.evaluation.schedule import (
    SCHEDULE_FILE,
    LoadGenHints,
    QueryCost,
    QueryMeter,
    ScheduleEstimate,
    calibration_hints,
    calibration_settings,
    estimate_schedule,
    loadgen_hints,
    needs_calibration,
    warmup_cost,
)
from mlmodelscope.core.evaluation.scoring import Scorer
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.evaluation.sut import QueryRecords, Sut
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

RunMode = Literal["accuracy", "performance"]

_UNIT_SCENARIOS = ("single-stream", "server")
_WARMUP_WINDOW = 5
_WARMUP_MAX_CALLS = 1_000
_WARMUP_MAX_S = 30.0

log = logging.getLogger(__name__)


@dataclass
class RunProgress:
    """Live state of the driver, read by a UI thread.

    The SUT never writes to it on the hot path: the count of completed calls is the length of the list the SUT
    appends its records to anyway (reading ``len`` of a list from another thread is safe under the GIL), or, for a
    LoadGen test whose rows the pump moves out of that list, what ``count_with`` was given (``Sut.completed``).
    """

    phase: str = "idle"
    started_monotonic_s: float = 0.0
    min_duration_s: float = 0.0
    schedule: ScheduleEstimate | None = None  # the performance run's schedule estimate, set before it starts
    _rows: list[Any] = field(default_factory=list)
    _count: Callable[[], int] | None = None

    def start(self, phase: str, min_duration_s: float, rows: list[Any]) -> None:
        self._rows = rows
        self._count = None
        self.min_duration_s = min_duration_s
        self.started_monotonic_s = time.monotonic()
        self.phase = phase

    def count_with(self, count: Callable[[], int]) -> None:
        """Count completed calls with ``count`` from now on (until the next ``start``)."""
        self._count = count

    @property
    def completed_queries(self) -> int:
        return self._count() if self._count is not None else len(self._rows)


@dataclass(frozen=True)
class WarmupResult:
    queries: int
    median_latency_ns: int
    min_latency_ns: int
    cost: QueryCost | None = None  # a query's cost through LoadGen (the calibration test); None: not measured
    calibration_s: float = 0.0  # wall time of the calibration test, loading its samples included


@dataclass
class RunOutcome:
    mode: RunMode
    report: LoadGenReport | None  # None in accuracy mode: LoadGen gives no verdict there
    errors: list[str]
    records: QueryRecords
    duration_s: float  # the test's wall time, without loading and unloading samples (untimed, as in LoadGen)
    load_s: float = 0.0  # time spent in LoadGen's load/unload callbacks
    schedule: ScheduleEstimate | None = None  # performance runs: LoadGen's schedule, estimated and as logged


class LoadGenDriver:
    """Runs one model (already loaded in ``predictor``) over one sample library under LoadGen."""

    def __init__(
        self,
        predictor: Predictor,
        library: SampleLibrary,
        scorer: Scorer | None,
        settings: EvaluationSettings,
        progress: RunProgress | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.predictor = predictor
        self.tracer = tracer
        self.library = library
        self.scorer = scorer  # None: performance runs only
        self.settings = settings
        self.progress = progress or RunProgress()
        self._uses_units = settings.scenario in _UNIT_SCENARIOS
        # SingleStream/Server: a LoadGen sample is a unit of batch_size consecutive items (see QuerySampleLibrary).
        self.qsl = QuerySampleLibrary(library, settings.batch_size if self._uses_units else None)
        self._units = self.qsl.units
        self._sample_count = self.qsl.total
        self._performance_count = self.qsl.performance_count(settings.performance_samples(library.size))

    # --- warm-up and calibration ---------------------------------------------------------------------------

    def warm_up(self) -> WarmupResult:
        """Untimed predictor calls on a full batch until their latency is steady, then LoadGen's calibration.

        At least ``warmup_queries`` calls, then more until the last few agree within 50% (JIT frameworks such as
        TorchScript's profiling executor are slow for their first calls), bounded by ``_WARMUP_MAX_CALLS`` calls
        and ``_WARMUP_MAX_S`` seconds; the figures come from that steady tail only. Then, for a performance run
        whose hint is not pinned, a short LoadGen test measures what a query costs through LoadGen
        (``_calibrate``): it runs here, before the runner opens a framework profile window, so no profiled call
        and no traced model row belongs to it.
        """
        count = max(self.settings.warmup_queries, _WARMUP_WINDOW)
        batch = min(self.settings.batch_size, self.library.size)
        self.library.load(range(batch))
        try:
            warmup = self._warm_up(self.library.contiguous(0, batch), count)
            if self.settings.runs_performance and needs_calibration(self.settings, warmup.median_latency_ns):
                warmup = self._calibrate(warmup, batch)
        finally:
            self.library.unload(range(batch))
        return warmup

    def _warm_up(self, inputs: list[np.ndarray], count: int) -> WarmupResult:
        window = _WARMUP_WINDOW
        latencies: list[int] = []
        self.progress.start("warm-up", 0.0, latencies)
        deadline_s = time.monotonic() + _WARMUP_MAX_S
        while True:
            start = time.perf_counter_ns()
            self.predictor.predict(inputs)
            latencies.append(time.perf_counter_ns() - start)
            if len(latencies) >= count:
                tail = latencies[-window:]
                steady = max(tail) <= 1.5 * min(tail)
                if steady or len(latencies) >= _WARMUP_MAX_CALLS or time.monotonic() > deadline_s:
                    break
        if self.scorer is not None:
            self.scorer.warm(self.predictor.predict(inputs))  # warm the post-processing path too (untimed)
        ordered = sorted(latencies[-window:])
        return WarmupResult(len(latencies), ordered[len(ordered) // 2], ordered[0])

    def _calibrate(self, warmup: WarmupResult, batch: int) -> WarmupResult:
        """A short PerformanceOnly LoadGen test of the run's scenario (its verdict, logs and rows discarded): the
        wall time per query from the first issue to the last completion, LoadGen's own work included."""
        started = time.perf_counter()
        settings = calibration_settings(self.settings)
        hints = calibration_hints(self.settings, warmup.median_latency_ns)
        meter = QueryMeter()
        # LoadGen sees one sample (unit scenarios: the unit of the warm-up's batch) or the warm-up's batch of items:
        # they are loaded already, so the calibration decodes nothing (a hot cache: a slightly low cost, which
        # errs towards more queries).
        count = 1 if self._uses_units else batch
        test = _Test(settings, hints, count, count, "calibration", meter)
        try:
            with tempfile.TemporaryDirectory(prefix="mlmodelscope-calibration-") as logs:
                self._run_once("performance", test, Path(logs))
        except Exception as e:  # the performance run meets the same failure and reports it in its own words
            log.warning("the LoadGen calibration test failed (%s); the hints come from the warm-up", e)
            return warmup
        cost = meter.cost(self.settings)
        return replace(warmup, cost=cost, calibration_s=time.perf_counter() - started)

    def _test(self, hints: LoadGenHints) -> _Test:
        return _Test(self.settings, hints, self._sample_count, self._performance_count, None, None)

    def _announce(self, hints: LoadGenHints) -> ScheduleEstimate:
        """Estimate the schedule before LoadGen builds it: logged, shown by the progress, a warning if too large."""
        estimate = estimate_schedule(self.settings, hints)
        self.progress.schedule = estimate
        log.info(
            "LoadGen schedule: %s queries pre-generated (%s needed for min_duration), about %.1f MiB",
            f"{estimate.generated_queries:,}",
            f"{estimate.expected_queries:,}",
            estimate.estimated_bytes / 2**20,
        )
        if estimate.warning:
            log.warning("%s", estimate.warning)
        return estimate

    # --- the run ------------------------------------------------------------------------------------------

    def run(self, mode: RunMode, warmup: WarmupResult, log_dir: Path) -> RunOutcome:
        """One LoadGen test; re-run once, recalibrated on its own queries, if LoadGen ran out of queries.

        LoadGen pre-generates its schedule from the hints (``schedule``), which come from the calibration test
        (``warm_up``) unless the user pinned them. When the calibration over-estimated the cost (a loaded machine,
        a cold cache), LoadGen runs out before min_duration and the run is INVALID for a reason that says nothing
        about the model; the cost measured under LoadGen is the better estimate, so the test is repeated with it.
        """
        profiled = self.tracer is not None and self.tracer.enabled(TraceLevel.FRAMEWORK)
        cost = warmup.cost or warmup_cost(self.settings, warmup.median_latency_ns)
        hints = loadgen_hints(self.settings, cost, profiled=profiled)
        if mode == "accuracy":
            return self._run_once(mode, self._test(hints), log_dir)[0]
        estimate = self._announce(hints)
        outcome, sut = self._run_once(mode, self._test(hints), log_dir)
        if not hints.pinned and len(outcome.records) and _ran_out_of_queries(outcome):
            discarded_queries, streamed = len(outcome.records), sut.discard_rows()
            estimate = self._announce(loadgen_hints(self.settings, _run_cost(outcome, self.settings)))
            estimate.discarded_test_queries, estimate.discarded_streamed_spans = discarded_queries, streamed
            outcome, _ = self._run_once(mode, self._test(estimate.hints), log_dir)
        generated = read_detail_log(log_dir / DETAIL_LOG).get("generated_query_count")
        estimate.generated_queries_logged = int(generated) if generated is not None else None
        (log_dir / SCHEDULE_FILE).write_text(estimate.model_dump_json(indent=2))  # beside LoadGen's own logs
        outcome.schedule = estimate
        return outcome

    def _run_once(self, mode: RunMode, test: _Test, log_dir: Path) -> tuple[RunOutcome, Sut]:
        log_dir.mkdir(parents=True, exist_ok=True)
        if mode == "accuracy" and self.scorer is None:
            raise EvaluationError("an accuracy run needs a scorer (the driver was built for performance only).")
        sut = Sut(self, self.scorer if mode == "accuracy" else None, test.meter)
        settings = loadgen_test_settings(
            test.settings, accuracy=mode == "accuracy", performance_count=test.performance_count, hints=test.hints
        )
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False  # hundreds of MB per minute; our own records carry per-query times
        qsl = self.qsl
        qsl.reset()
        sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
        qsl_handle = lg.ConstructQSL(test.sample_count, test.performance_count, qsl.load, qsl.unload)
        min_duration_s = test.settings.min_duration_s if mode == "performance" else 0.0
        self.progress.start(test.phase or mode, min_duration_s, sut.rows)
        self.progress.count_with(sut.completed)
        started = time.perf_counter()
        # The cyclic GC would pause the hot path to scan the record tuples it allocates; nothing on that path
        # creates reference cycles, so it is off for the duration of the test (as pyperf does for benchmarks).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            sut.start_workers()
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, "")
        finally:
            if gc_was_enabled:
                gc.enable()
            sut.stop_workers()
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
            qsl.release()
            self.progress.phase = "done"
        duration_s = time.perf_counter() - started - qsl.load_s
        _raise_failures(mode, qsl.error, sut.failures)
        records = sut.records()
        if mode == "accuracy":
            errors = read_detail_log(log_dir / DETAIL_LOG)["_errors"]
            return RunOutcome(mode, None, errors, records, duration_s, qsl.load_s), sut
        report = parse_report(log_dir)
        return RunOutcome(mode, report, report.errors, records, duration_s, qsl.load_s), sut


@dataclass(frozen=True)
class _Test:
    """One LoadGen test: its settings and hints, the QSL's and the loaded set's sizes in LoadGen samples, and for
    a calibration test its progress phase and the meter around the SUT (whose rows stay out of the tracer's)."""

    settings: EvaluationSettings
    hints: LoadGenHints
    sample_count: int
    performance_count: int
    phase: str | None
    meter: QueryMeter | None


def _raise_failures(mode: RunMode, qsl_error: Exception | None, failures: list[Exception]) -> None:
    if qsl_error is not None:
        raise qsl_error  # a sample that cannot be read or pre-processed: the error names it
    if failures:
        raise EvaluationError(
            f"the predictor failed during the {mode} run ({len(failures)} failed calls): {failures[0]}",
            hint="Check the model's inputs against the manifest, or try a smaller batch size.",
        ) from failures[0]


def _run_cost(outcome: RunOutcome, settings: EvaluationSettings) -> QueryCost:
    """A test's own cost per query, for its re-run: LoadGen's rate with its overhead (SingleStream's QPS), else
    (MultiStream reports none) the SUT's median call, which leaves LoadGen out and so errs towards more queries."""
    records, report = outcome.records, outcome.report
    rate = report.throughput_samples_per_s if report is not None else 0.0
    if rate > 0:
        per_query_ns = 1e9 / rate * (settings.batch_size if settings.scenario == "offline" else 1)
        return QueryCost(source="run", per_query_ns=per_query_ns, samples_per_s=rate, queries=len(records))
    call_ns = max(float(records.median_ns()), 1_000.0)
    per_query = warmup_cost(settings, round(call_ns))
    return per_query.model_copy(update={"source": "run", "queries": len(records)})


def _ran_out_of_queries(outcome: RunOutcome) -> bool:
    """LoadGen's schedule ended before min_duration: queries (SingleStream, MultiStream) or Offline's one query."""
    recommendations = outcome.report.recommendations if outcome.report is not None else []
    return any("Ran out of generated queries" in error for error in outcome.errors) or any(
        "Increase expected QPS" in advice for advice in recommendations
    )
