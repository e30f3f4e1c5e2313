"""The system under test LoadGen calls: the driver's hot path, one closure per scenario and mode.

Split from ``driver`` (which builds it per LoadGen test) so each module keeps one concern: here is only what runs
inside LoadGen's ``IssueQuery`` callback (or its Server worker thread) and the per-call records it keeps.

Constant memory (issue 16). The hot path still appends one Python object per call (a tuple or an int, ~100-200
bytes with its ints), the cheapest thing it can do. A pump thread (``RowPump``) moves those rows every
``PUMP_INTERVAL_S`` into a ``LatencyCounts`` (every distinct latency in ns with its count: exact percentiles,
means and trimmed mean) and the count of items, and deletes them from the list (for the tracer's list:
``Tracer.pump_model_rows``, which keeps the rows a span stream has not taken yet). A run then holds no object
per call: its memory is bounded by the spread of its latencies in ns (tens of thousands of distinct values for
a fast model) plus ``PENDING_LATENCIES`` waiting to be merged, however long it runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mlperf_loadgen as lg
import numpy as np

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.results import LatencyStats
from mlmodelscope.core.evaluation.schedule import QueryMeter
from mlmodelscope.core.evaluation.scoring import Scorer
from mlmodelscope.core.evaluation.statistics import histogram_stats
from mlmodelscope.core.tracing.spans import TraceLevel

if TYPE_CHECKING:
    from mlmodelscope.core.evaluation.driver import LoadGenDriver


PUMP_INTERVAL_S = 0.2
"""How often the pump moves the SUT's rows into the latency histogram (a 15 us model appends ~13,000 rows meanwhile)."""

PENDING_LATENCIES = 1 << 19
"""Latencies added since the last merge into the histogram are kept as they come up to this many (4 MiB)."""


@dataclass(frozen=True)
class QueryRecords:
    """The per-call latencies (SUT side, perf_counter_ns) of a LoadGen test as a histogram, exact: each distinct
    value and how many calls took it; and how many dataset items the calls processed.

    This is the minimum the result needs; per-query timestamps and sample indices belong to tracing, which
    records them only when a trace level asks for them.
    """

    values_ns: np.ndarray  # int64, sorted, distinct
    counts: np.ndarray  # int64, calls per value
    samples: int  # dataset items over all calls

    def __len__(self) -> int:
        return int(self.counts.sum())

    def stats(self) -> LatencyStats:
        return histogram_stats(self.values_ns, self.counts)

    def median_ns(self) -> int:
        return self.stats().p50_ns

    def latencies_ns(self) -> np.ndarray:
        """Every call's latency, sorted (8 bytes a call: for tests and small runs)."""
        return np.repeat(self.values_ns, self.counts)


class LatencyCounts:
    """Exact per-call latencies with memory bounded by their spread, not their number: distinct values (int64,
    sorted) with counts, plus at most ``PENDING_LATENCIES`` new ones not merged yet."""

    def __init__(self) -> None:
        self.values_ns = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self.count = 0
        self.samples = 0

    def add(self, latency_ns: np.ndarray, samples: int) -> None:
        if len(latency_ns):
            self._pending.append(np.asarray(latency_ns, dtype=np.int64))
            self._pending_count += len(latency_ns)
            self.count += len(latency_ns)
            if self._pending_count >= PENDING_LATENCIES:
                self._merge()
        self.samples += samples

    def _merge(self) -> None:
        if not self._pending:
            return
        new_values, new_counts = np.unique(np.concatenate(self._pending), return_counts=True)
        self._pending, self._pending_count = [], 0
        values = np.concatenate([self.values_ns, new_values])
        counts = np.concatenate([self.counts, new_counts.astype(np.int64)])
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
        self.values_ns, self.counts = values[starts], np.add.reduceat(counts, starts)

    @property
    def nbytes(self) -> int:
        return self.values_ns.nbytes + self.counts.nbytes + sum(chunk.nbytes for chunk in self._pending)

    def records(self) -> QueryRecords:
        self._merge()
        return QueryRecords(self.values_ns, self.counts, self.samples)


class Sut:
    """The callbacks LoadGen calls, built as closures over locals so the hot path does no attribute lookups.

    Performance mode times ``predict`` only: LoadGen never looks at responses there (as in MLPerf, where accuracy
    is scored from the accuracy run). Accuracy mode also hands every batch's outputs to the scorer.
    Every call appends one row (see ``__init__``); a failing call is remembered and still completed, so LoadGen
    never waits for an answer that will not come.
    """

    def __init__(self, driver: LoadGenDriver, accuracy: Scorer | None, meter: QueryMeter | None = None) -> None:
        # A row per call: a bare latency (int, ns) on the performance fast path of unit scenarios when MODEL
        # tracing is off; otherwise (first item, item count, start ns, end ns), which is also what the tracer's
        # model_rows hold, so with MODEL tracing on the SUT appends straight into them.
        tracer = driver.tracer
        tracing = tracer is not None and tracer.enabled(TraceLevel.MODEL)
        self.full_rows = tracing or accuracy is not None or not driver._uses_units
        # A calibration test (metered) keeps its rows to itself: they are no model spans of the result.
        shared = tracer is not None and tracing and meter is None
        self._tracer = tracer if shared else None
        self.rows: list[Any] = tracer.model_rows if tracer is not None and shared else []
        self._start = tracer.model_row_count if tracer is not None and shared else 0  # absolute row position
        self._seen = self._start
        self.latencies = LatencyCounts()
        self._pump: RowPump | None = None
        self._pump_failure: Exception | None = None
        self._unit_batch = driver.settings.batch_size if driver._uses_units else 0
        self._queue: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self.failures: list[Exception] = []
        scenario = driver.settings.scenario
        answer = self._answer_units(driver, accuracy) if driver._uses_units else self._answer_batches(driver, accuracy)
        if meter is not None:
            answer = meter.wrap(answer)
        self._answer = answer
        self.issue: Callable[[list[Any]], None] = self._queue.put if scenario == "server" else answer
        self._worker_count = 1 if scenario == "server" else 0

    def flush(self) -> None:
        """Nothing is held back: every query is answered as soon as it is computed."""

    def discard_rows(self) -> int:
        """Forget this run's rows still held (the list may be the tracer's, shared with earlier runs); returns how
        many of them were streamed already (published MODEL spans that stay in the trace)."""
        streamed = 0
        if self._tracer is not None:
            streamed = self._tracer.truncate_model_rows(self._start)
        else:
            del self.rows[:]
        self.latencies = LatencyCounts()
        return streamed

    def pump(self) -> None:
        """Move the rows appended since the last pump into ``latencies`` (and out of the list, where nothing else
        needs them). Runs on the pump thread during the test, and once more after it."""
        if self._tracer is not None:
            rows = self._tracer.pump_model_rows(self._seen)
            self._seen += len(rows)
        else:
            rows = self.rows[: len(self.rows)]
            del self.rows[: len(rows)]  # one C call each: an append meanwhile stays for the next pump
        if not rows:
            return
        if not self.full_rows:
            self.latencies.add(np.asarray(rows, dtype=np.int64), len(rows) * self._unit_batch)
            return
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        self.latencies.add(table[:, 3] - table[:, 2], int(table[:, 1].sum()))

    def completed(self) -> int:
        """Calls completed so far (for the progress display)."""
        if self._tracer is not None:
            return self._tracer.model_row_count - self._start
        return self.latencies.count + len(self.rows)

    def records(self) -> QueryRecords:
        """Every call's record, once the test is over (the rows the pump has not moved yet are moved now)."""
        if self._pump_failure is not None:
            raise EvaluationError(
                f"moving the SUT's per-call rows into the latency histogram failed: {self._pump_failure}",
                hint="This is a bug in mlmodelscope; please report it with the run's log.",
            ) from self._pump_failure
        self.pump()
        return self.latencies.records()

    # Server: LoadGen's issue thread must not block on inference, so queries go to a worker.
    def start_workers(self) -> None:
        self._pump = RowPump(self)
        self._pump.start()
        for n in range(self._worker_count):
            worker = threading.Thread(target=self._work, name=f"mlmodelscope-sut-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop_workers(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=60)
        if self._pump is not None:
            self._pump.stop()
            self._pump_failure = self._pump.failure
            self._pump = None

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


class RowPump:
    """The thread that calls ``Sut.pump`` every ``PUMP_INTERVAL_S`` while a LoadGen test runs.

    It shares the GIL with the SUT: each pump is a slice, a delete and one numpy conversion of some thousand rows
    (about a millisecond for a 15 us model), never on the SUT's own thread.
    """

    def __init__(self, sut: Sut, interval_s: float = PUMP_INTERVAL_S) -> None:
        self._sut = sut
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlmodelscope-row-pump", daemon=True)
        self.failure: Exception | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self._interval_s):
                self._sut.pump()
        except Exception as e:  # reported by Sut.records() on the driver's thread
            self.failure = e
