"""The LoadGen driver: our system-under-test (SUT) and query sample library (QSL) for ``mlcommons-loadgen``.

We do not write a load generator. LoadGen decides when queries are issued (SingleStream, MultiStream, Server's
Poisson arrivals, Offline's one big query), measures latencies and gives the VALID/INVALID verdict; this module
answers its queries as fast as the predictor allows and keeps a per-query record (SUT-side start/end times, and
in accuracy mode the top-5 classes of every sample).

Batching. A predictor call processes ``batch_size`` samples. In Offline and MultiStream LoadGen issues many
samples per query, which we cut into batches. In SingleStream and Server LoadGen issues one sample per query, so
with ``batch_size`` B > 1 one LoadGen sample *is* a batch of B consecutive dataset items ("units" below); LoadGen
then counts batches, and throughput in items/s is LoadGen's figure times B.

Hot path. SingleStream, MultiStream and Offline answer synchronously inside LoadGen's ``IssueQuery`` callback
(no thread hop); Server hands queries to worker threads so LoadGen keeps its arrival schedule. Per query the SUT
does: look up pre-built input views, predict, post-process, append one record, complete.
"""

from __future__ import annotations

import gc
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlperf_loadgen as lg
import numpy as np

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.loadgen_report import DETAIL_LOG, LoadGenReport, parse_report, read_detail_log
from mlmodelscope.core.evaluation.samples import SampleLibrary
from mlmodelscope.core.evaluation.settings import EvaluationSettings, Scenario
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.processing import Postprocessor
from mlmodelscope.core.processing.postprocess import Classification
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

RunMode = Literal["accuracy", "performance"]
TOP_K_RECORDED = 5

_SCENARIOS: dict[Scenario, Any] = {
    "single-stream": lg.TestScenario.SingleStream,
    "multi-stream": lg.TestScenario.MultiStream,
    "server": lg.TestScenario.Server,
    "offline": lg.TestScenario.Offline,
}
_UNIT_SCENARIOS = ("single-stream", "server")
_WARMUP_WINDOW = 5
_WARMUP_MAX_CALLS = 1_000
_WARMUP_MAX_S = 30.0


@dataclass
class RunProgress:
    """Live state of the driver, read by a UI thread.

    The SUT never writes to it on the hot path: the count of completed calls is the length of the list the SUT
    appends its records to anyway (reading ``len`` of a list from another thread is safe under the GIL).
    """

    phase: str = "idle"
    started_monotonic_s: float = 0.0
    min_duration_s: float = 0.0
    _rows: list[Any] = field(default_factory=list)

    def start(self, phase: str, min_duration_s: float, rows: list[Any]) -> None:
        self._rows = rows
        self.min_duration_s = min_duration_s
        self.started_monotonic_s = time.monotonic()
        self.phase = phase

    @property
    def completed_queries(self) -> int:
        return len(self._rows)


@dataclass(frozen=True)
class QueryRecords:
    """Per predictor call: its latency (SUT side, perf_counter_ns) and how many dataset items it processed.

    This is the minimum the result needs, recorded with one append of one object per call; per-query
    timestamps and sample indices belong to tracing, which records them only when a trace level asks for them.
    """

    latency_ns: np.ndarray
    item_count: np.ndarray

    def latencies_ns(self) -> np.ndarray:
        return self.latency_ns

    def __len__(self) -> int:
        return len(self.latency_ns)


@dataclass(frozen=True)
class WarmupResult:
    queries: int
    median_latency_ns: int
    min_latency_ns: int


@dataclass
class RunOutcome:
    mode: RunMode
    report: LoadGenReport | None  # None in accuracy mode: LoadGen gives no verdict there
    errors: list[str]
    records: QueryRecords
    duration_s: float
    accuracy: AccuracyRecord | None = None  # accuracy mode: what each dataset item was answered


@dataclass
class AccuracyRecord:
    """The accuracy run's answers per dataset item, kept for scoring and for cross-framework agreement.

    ``top_k`` is (items, 5) int64, -1 where an item was never issued; ``probabilities`` is (items, classes)
    float32 (the post-processed output: softmax when the manifest asks for it), allocated on the first answer.
    """

    top_k: np.ndarray
    probabilities: np.ndarray | None = None

    @classmethod
    def empty(cls, items: int) -> AccuracyRecord:
        return cls(np.full((items, TOP_K_RECORDED), -1, dtype=np.int64))

    def record(self, items: np.ndarray, result: Classification) -> None:
        k = min(TOP_K_RECORDED, result.top_indices.shape[1])
        self.top_k[items, :k] = result.top_indices[:, :k]
        if self.probabilities is None:
            self.probabilities = np.zeros((len(self.top_k), result.probabilities.shape[1]), dtype=np.float32)
        self.probabilities[items] = result.probabilities

    @property
    def answered(self) -> np.ndarray:
        """(items,) bool: which items the run answered."""
        return np.asarray(self.top_k[:, 0] >= 0)


class LoadGenDriver:
    """Runs one model (already loaded in ``predictor``) over one sample library under LoadGen."""

    def __init__(
        self,
        predictor: Predictor,
        library: SampleLibrary,
        postprocessor: Postprocessor,
        settings: EvaluationSettings,
        progress: RunProgress | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.predictor = predictor
        self.tracer = tracer
        self.library = library
        self.postprocessor = postprocessor
        self.settings = settings
        self.progress = progress or RunProgress()
        batch = settings.batch_size
        self._uses_units = settings.scenario in _UNIT_SCENARIOS
        if self._uses_units:
            unit_count = math.ceil(library.size / batch)
            # Every unit is a full batch: the last one wraps around to the first items, so the predictor always
            # sees one input shape (and accuracy simply re-answers a few items identically).
            self._units = [
                library.contiguous(u * batch, (u + 1) * batch)
                if (u + 1) * batch <= library.size
                else library.gather(np.arange(u * batch, (u + 1) * batch) % library.size)
                for u in range(unit_count)
            ]
            self._sample_count = unit_count
        else:
            self._units = []
            self._sample_count = library.size

    # --- warm-up and calibration ---------------------------------------------------------------------------

    def warm_up(self) -> WarmupResult:
        """Untimed predictor calls on a full batch until their latency is steady; it calibrates LoadGen.

        At least ``warmup_queries`` calls, then more until the last few agree within 50% (JIT frameworks such as
        TorchScript's profiling executor are slow for their first calls), bounded by ``_WARMUP_MAX_CALLS`` calls
        and ``_WARMUP_MAX_S`` seconds. The calibration figures come from that steady tail only.
        """
        window = _WARMUP_WINDOW
        count = max(self.settings.warmup_queries, window)
        batch = min(self.settings.batch_size, self.library.size)
        inputs = self.library.contiguous(0, batch)
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
        self.postprocessor(self.predictor.predict(inputs)[0])  # warm the post-processing path too (untimed)
        ordered = sorted(latencies[-window:])
        return WarmupResult(len(latencies), ordered[len(ordered) // 2], ordered[0])

    def _test_settings(self, mode: RunMode, warmup: WarmupResult) -> Any:
        s = self.settings
        ts = lg.TestSettings()
        ts.scenario = _SCENARIOS[s.scenario]
        ts.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
        ts.min_duration_ms = round(s.min_duration_s * 1000)
        ts.max_duration_ms = round(s.max_duration_s * 1000) if s.max_duration_s else 0
        ts.min_query_count = s.min_query_count
        ts.max_query_count = s.max_query_count or 0
        ts.qsl_rng_seed = s.seeds.qsl
        ts.sample_index_rng_seed = s.seeds.sample_index
        ts.schedule_rng_seed = s.seeds.schedule
        ts.performance_sample_count_override = self._sample_count
        # LoadGen pre-generates queries from these hints: a latency hint that is too high (or a QPS hint too low)
        # makes it run out of queries before min_duration, so calibrate on the fast side of the warm-up.
        batch_latency_ns = max(warmup.min_latency_ns, 1_000)
        if s.scenario == "single-stream":
            expected_ns = s.expected_latency_ms * 1e6 if s.expected_latency_ms else batch_latency_ns * 0.5
            ts.single_stream_expected_latency_ns = max(round(expected_ns), 1_000)
        elif s.scenario == "multi-stream":
            ts.multi_stream_samples_per_query = s.samples_per_query
            calls = math.ceil(s.samples_per_query / s.batch_size)
            expected_ns = s.expected_latency_ms * 1e6 if s.expected_latency_ms else batch_latency_ns * calls * 0.5
            ts.multi_stream_expected_latency_ns = max(round(expected_ns), 1_000)
        elif s.scenario == "offline":
            measured_qps = s.batch_size / (batch_latency_ns / 1e9)
            ts.offline_expected_qps = s.expected_qps if s.expected_qps else measured_qps * 1.5
        else:
            measured_qps = 1e9 / batch_latency_ns
            ts.server_target_qps = s.target_qps if s.target_qps else measured_qps * 0.5
            ts.server_target_latency_ns = round(s.effective_latency_bound_ms * 1e6)
        if s.target_latency_percentile is not None:
            if s.scenario == "single-stream":
                ts.single_stream_target_latency_percentile = s.target_latency_percentile
            elif s.scenario == "multi-stream":
                ts.multi_stream_target_latency_percentile = s.target_latency_percentile
            elif s.scenario == "server":
                ts.server_target_latency_percentile = s.target_latency_percentile
        return ts

    # --- the run ------------------------------------------------------------------------------------------

    def run(self, mode: RunMode, warmup: WarmupResult, log_dir: Path) -> RunOutcome:
        """One LoadGen test; re-run once, recalibrated on its own latencies, if LoadGen ran out of queries.

        LoadGen pre-generates queries from the expected latency (or Offline QPS) it is given. When the warm-up
        over-estimated the latency (a loaded machine, a cold cache), LoadGen runs out before min_duration and
        the run is INVALID for a reason that says nothing about the model; the latencies measured under LoadGen
        are the better estimate, so the test is repeated with them (unless the user pinned the hints).
        """
        outcome, sut = self._run_once(mode, warmup, log_dir)
        pinned = self.settings.expected_latency_ms is not None or self.settings.expected_qps is not None
        if mode == "performance" and not pinned and len(outcome.records) and _ran_out_of_queries(outcome):
            sut.discard_rows()
            latencies = outcome.records.latencies_ns()
            measured = WarmupResult(len(latencies), int(np.median(latencies)), int(latencies.min()))
            outcome, _ = self._run_once(mode, measured, log_dir)
        return outcome

    def _run_once(self, mode: RunMode, warmup: WarmupResult, log_dir: Path) -> tuple[RunOutcome, _Sut]:
        log_dir.mkdir(parents=True, exist_ok=True)
        accuracy = AccuracyRecord.empty(self.library.size) if mode == "accuracy" else None
        sut = _Sut(self, accuracy)
        settings = self._test_settings(mode, warmup)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False  # hundreds of MB per minute; our own records carry per-query times
        sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
        qsl_handle = lg.ConstructQSL(self._sample_count, self._sample_count, _load_nothing, _load_nothing)
        self.progress.start(mode, self.settings.min_duration_s if mode == "performance" else 0.0, sut.rows)
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
            self.progress.phase = "done"
        duration_s = time.perf_counter() - started
        if sut.failures:
            failure = sut.failures[0]
            raise EvaluationError(
                f"the predictor failed during the {mode} run ({len(sut.failures)} failed calls): {failure}",
                hint="Check the model's inputs against the manifest, or try a smaller batch size.",
            ) from failure
        records = sut.records()
        if mode == "accuracy":
            errors = read_detail_log(log_dir / DETAIL_LOG)["_errors"]
            return RunOutcome(mode, None, errors, records, duration_s, accuracy), sut
        report = parse_report(log_dir)
        return RunOutcome(mode, report, report.errors, records, duration_s, None), sut


def _ran_out_of_queries(outcome: RunOutcome) -> bool:
    return any("Ran out of generated queries" in error for error in outcome.errors)


def _load_nothing(_samples: Sequence[int]) -> None:
    """The sample library is already in RAM (pre-processed at start-up), so LoadGen's load/unload are no-ops."""


class _Sut:
    """The callbacks LoadGen calls, built as closures over locals so the hot path does no attribute lookups.

    Performance mode times ``predict`` only: LoadGen never looks at responses there (as in MLPerf, where accuracy
    is scored from the accuracy run). Accuracy mode also post-processes every output and records its top-5.
    Every call appends one row (see ``__init__``); a failing call is remembered and still completed, so LoadGen
    never waits for an answer that will not come.
    """

    def __init__(self, driver: LoadGenDriver, accuracy: AccuracyRecord | None) -> None:
        # A row per call: a bare latency (int, ns) on the performance fast path of unit scenarios when MODEL
        # tracing is off; otherwise (first item, item count, start ns, end ns), which is also what the tracer's
        # model_rows hold, so with MODEL tracing on the SUT appends straight into them.
        tracer = driver.tracer
        tracing = tracer is not None and tracer.enabled(TraceLevel.MODEL)
        self.full_rows = tracing or accuracy is not None or not driver._uses_units
        self.rows: list[Any] = tracer.model_rows if tracer is not None and tracing else []
        self._rows_before = len(self.rows)
        self._unit_batch = driver.settings.batch_size if driver._uses_units else 0
        self._queue: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self.failures: list[Exception] = []
        scenario = driver.settings.scenario
        answer = self._answer_units(driver, accuracy) if driver._uses_units else self._answer_batches(driver, accuracy)
        self._answer = answer
        self.issue: Callable[[list[Any]], None] = self._queue.put if scenario == "server" else answer
        self._worker_count = 1 if scenario == "server" else 0

    def flush(self) -> None:
        """Nothing is held back: every query is answered as soon as it is computed."""

    def discard_rows(self) -> None:
        """Forget this run's rows (the list may be the tracer's, shared with earlier runs)."""
        del self.rows[self._rows_before :]

    def records(self) -> QueryRecords:
        rows = self.rows[self._rows_before :]
        if not self.full_rows:
            latency = np.asarray(rows, dtype=np.int64)
            return QueryRecords(latency, np.full(len(latency), self._unit_batch, dtype=np.int64))
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        return QueryRecords(table[:, 3] - table[:, 2], table[:, 1])

    # Server: LoadGen's issue thread must not block on inference, so queries go to a worker.
    def start_workers(self) -> None:
        for n in range(self._worker_count):
            worker = threading.Thread(target=self._work, name=f"mlmodelscope-sut-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop_workers(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=60)

    def _work(self) -> None:
        answer, get = self._answer, self._queue.get
        while (query_samples := get()) is not None:
            answer(query_samples)

    def _answer_units(self, driver: LoadGenDriver, accuracy: AccuracyRecord | None) -> Callable[[list[Any]], None]:
        """SingleStream / Server: each LoadGen sample is one pre-built unit (a batch of consecutive items)."""
        predict, units, batch = driver.predictor.predict, driver._units, driver.settings.batch_size
        size = driver.library.size
        append, failures, clock = self.rows.append, self.failures, time.perf_counter_ns
        response, complete = lg.QuerySampleResponse, lg.QuerySamplesComplete
        if accuracy is None and not self.full_rows:

            def answer_performance(query_samples: list[Any]) -> None:
                # SingleStream and Server issue exactly one sample per query.
                sample = query_samples[0]
                index = sample.index
                start = clock()
                try:
                    predict(units[index])
                except Exception as e:
                    failures.append(e)
                append(clock() - start)
                complete([response(sample.id, 0, 0)])

            return answer_performance
        if accuracy is None:

            def answer_performance_traced(query_samples: list[Any]) -> None:
                sample = query_samples[0]
                index = sample.index
                start = clock()
                try:
                    predict(units[index])
                except Exception as e:
                    failures.append(e)
                append((index * batch, batch, start, clock()))
                complete([response(sample.id, 0, 0)])

            return answer_performance_traced
        postprocess, record = driver.postprocessor, accuracy.record

        def answer_accuracy(query_samples: list[Any]) -> None:
            for sample in query_samples:
                index = sample.index
                start = clock()
                try:
                    result = postprocess(predict(units[index])[0])
                    items = np.arange(index * batch, (index + 1) * batch) % size
                    record(items, result)
                except Exception as e:
                    failures.append(e)
                append((index * batch, batch, start, clock()))
            complete([response(sample.id, 0, 0) for sample in query_samples])

        return answer_accuracy

    def _answer_batches(self, driver: LoadGenDriver, accuracy: AccuracyRecord | None) -> Callable[[list[Any]], None]:
        """MultiStream / Offline: many samples per query, answered in batches of batch_size."""
        predict, gather, batch = driver.predictor.predict, driver.library.gather, driver.settings.batch_size
        postprocess = driver.postprocessor
        record = accuracy.record if accuracy is not None else None
        append, failures, clock = self.rows.append, self.failures, time.perf_counter_ns
        response, complete = lg.QuerySampleResponse, lg.QuerySamplesComplete

        def answer(query_samples: list[Any]) -> None:
            for offset in range(0, len(query_samples), batch):
                chunk = query_samples[offset : offset + batch]
                indices = [sample.index for sample in chunk]
                start = clock()
                try:
                    outputs = predict(gather(indices))
                    if record is not None:
                        record(np.asarray(indices), postprocess(outputs[0]))
                except Exception as e:
                    failures.append(e)
                append((indices[0], len(indices), start, clock()))
                complete([response(sample.id, 0, 0) for sample in chunk])

        return answer
