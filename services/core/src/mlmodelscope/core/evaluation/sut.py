"""The system under test LoadGen calls: the driver's hot path, one closure per scenario and mode.

Split from ``driver`` (which builds it per LoadGen test) so each module keeps one concern: here is only what runs
inside LoadGen's ``IssueQuery`` callback (or its Server worker thread) and the per-call records it keeps.
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

from mlmodelscope.core.evaluation.schedule import QueryMeter
from mlmodelscope.core.evaluation.scoring import Scorer
from mlmodelscope.core.tracing.spans import TraceLevel

if TYPE_CHECKING:
    from mlmodelscope.core.evaluation.driver import LoadGenDriver


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
        self.rows: list[Any] = tracer.model_rows if tracer is not None and shared else []
        self._rows_before = len(self.rows)
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
