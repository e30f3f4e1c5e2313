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
does: look up the input views built when the unit was loaded (or gather), predict, append one record, complete.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlperf_loadgen as lg
import numpy as np

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.loadgen_report import DETAIL_LOG, LoadGenReport, parse_report, read_detail_log
from mlmodelscope.core.evaluation.loadgen_settings import loadgen_test_settings
from mlmodelscope.core.evaluation.samples import QuerySampleLibrary, SampleLibrary
from mlmodelscope.core.evaluation.scoring import Scorer
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

RunMode = Literal["accuracy", "performance"]

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
    duration_s: float  # the test's wall time, without loading and unloading samples (untimed, as in LoadGen)
    load_s: float = 0.0  # time spent in LoadGen's load/unload callbacks


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
        """Untimed predictor calls on a full batch until their latency is steady; it calibrates LoadGen.

        At least ``warmup_queries`` calls, then more until the last few agree within 50% (JIT frameworks such as
        TorchScript's profiling executor are slow for their first calls), bounded by ``_WARMUP_MAX_CALLS`` calls
        and ``_WARMUP_MAX_S`` seconds. The calibration figures come from that steady tail only.
        """
        count = max(self.settings.warmup_queries, _WARMUP_WINDOW)
        batch = min(self.settings.batch_size, self.library.size)
        self.library.load(range(batch))
        try:
            return self._warm_up(self.library.contiguous(0, batch), count)
        finally:
            self.library.unload(range(batch))

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

    def _test_settings(self, mode: RunMode, warmup: WarmupResult) -> Any:
        return loadgen_test_settings(
            self.settings,
            accuracy=mode == "accuracy",
            performance_count=self._performance_count,
            min_latency_ns=warmup.min_latency_ns,
        )

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
        if mode == "accuracy" and self.scorer is None:
            raise EvaluationError("an accuracy run needs a scorer (the driver was built for performance only).")
        sut = _Sut(self, self.scorer if mode == "accuracy" else None)
        settings = self._test_settings(mode, warmup)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False  # hundreds of MB per minute; our own records carry per-query times
        qsl = self.qsl
        qsl.reset()
        sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
        qsl_handle = lg.ConstructQSL(self._sample_count, self._performance_count, qsl.load, qsl.unload)
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
            qsl.release()
            self.progress.phase = "done"
        duration_s = time.perf_counter() - started - qsl.load_s
        if qsl.error is not None:
            raise qsl.error  # a sample that cannot be read or pre-processed: the error names it
        if sut.failures:
            failure = sut.failures[0]
            raise EvaluationError(
                f"the predictor failed during the {mode} run ({len(sut.failures)} failed calls): {failure}",
                hint="Check the model's inputs against the manifest, or try a smaller batch size.",
            ) from failure
        records = sut.records()
        if mode == "accuracy":
            errors = read_detail_log(log_dir / DETAIL_LOG)["_errors"]
            return RunOutcome(mode, None, errors, records, duration_s, qsl.load_s), sut
        report = parse_report(log_dir)
        return RunOutcome(mode, report, report.errors, records, duration_s, qsl.load_s), sut


def _ran_out_of_queries(outcome: RunOutcome) -> bool:
    return any("Ran out of generated queries" in error for error in outcome.errors)


class _Sut:
    """The callbacks LoadGen calls, built as closures over locals so the hot path does no attribute lookups.

    Performance mode times ``predict`` only: LoadGen never looks at responses there (as in MLPerf, where accuracy
    is scored from the accuracy run). Accuracy mode also hands every batch's outputs to the scorer.
    Every call appends one row (see ``__init__``); a failing call is remembered and still completed, so LoadGen
    never waits for an answer that will not come.
    """

    def __init__(self, driver: LoadGenDriver, accuracy: Scorer | None) -> None:
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

    def _answer_units(self, driver: LoadGenDriver, accuracy: Scorer | None) -> Callable[[list[Any]], None]:
        """SingleStream / Server: each LoadGen sample is one pre-built unit (a batch of consecutive items)."""
        predict, units, batch = driver.predictor.predict, driver._units, driver.settings.batch_size
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
        record, items_of = accuracy.record, driver.qsl.items_of

        def answer_accuracy(query_samples: list[Any]) -> None:
            for sample in query_samples:
                index = sample.index
                start = clock()
                try:
                    record(items_of(index), predict(units[index]))
                except Exception as e:
                    failures.append(e)
                append((index * batch, batch, start, clock()))
            complete([response(sample.id, 0, 0) for sample in query_samples])

        return answer_accuracy

    def _answer_batches(self, driver: LoadGenDriver, accuracy: Scorer | None) -> Callable[[list[Any]], None]:
        """MultiStream / Offline: many samples per query, answered in batches of batch_size."""
        predict, gather, batch = driver.predictor.predict, driver.library.gather, driver.settings.batch_size
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
                        record(np.asarray(indices), outputs)
                except Exception as e:
                    failures.append(e)
                append((indices[0], len(indices), start, clock()))
                complete([response(sample.id, 0, 0) for sample in chunk])

        return answer
