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

RunMode = Literal["accuracy", "performance"]
TOP_K_RECORDED = 5

_SCENARIOS: dict[Scenario, Any] = {
    "single-stream": lg.TestScenario.SingleStream,
    "multi-stream": lg.TestScenario.MultiStream,
    "server": lg.TestScenario.Server,
    "offline": lg.TestScenario.Offline,
}
_UNIT_SCENARIOS = ("single-stream", "server")


@dataclass
class RunProgress:
    """Live state of the driver, read by a UI thread (plain attribute reads; no locking on the hot path)."""

    phase: str = "idle"
    completed_queries: int = 0
    started_monotonic_s: float = 0.0
    min_duration_s: float = 0.0

    def start(self, phase: str, min_duration_s: float) -> None:
        self.completed_queries = 0
        self.min_duration_s = min_duration_s
        self.started_monotonic_s = time.monotonic()
        self.phase = phase


@dataclass
class QueryRecords:
    """One row per predictor call: which LoadGen sample indices, and SUT-side start/end (perf_counter_ns)."""

    first_index: list[int] = field(default_factory=list)
    sample_count: list[int] = field(default_factory=list)
    start_ns: list[int] = field(default_factory=list)
    end_ns: list[int] = field(default_factory=list)

    def latencies_ns(self) -> np.ndarray:
        return np.asarray(self.end_ns, dtype=np.int64) - np.asarray(self.start_ns, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.start_ns)


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
    top_k: np.ndarray | None = None  # accuracy mode: (items, 5) predicted classes, -1 where not issued


class LoadGenDriver:
    """Runs one model (already loaded in ``predictor``) over one sample library under LoadGen."""

    def __init__(
        self,
        predictor: Predictor,
        library: SampleLibrary,
        postprocessor: Postprocessor,
        settings: EvaluationSettings,
        progress: RunProgress | None = None,
    ) -> None:
        self.predictor = predictor
        self.library = library
        self.postprocessor = postprocessor
        self.settings = settings
        self.progress = progress or RunProgress()
        batch = settings.batch_size
        self._uses_units = settings.scenario in _UNIT_SCENARIOS
        if self._uses_units:
            unit_count = math.ceil(library.size / batch)
            self._units = [library.contiguous(u * batch, min((u + 1) * batch, library.size)) for u in range(unit_count)]
            self._sample_count = unit_count
        else:
            self._units = []
            self._sample_count = library.size

    # --- warm-up and calibration ---------------------------------------------------------------------------

    def warm_up(self) -> WarmupResult:
        """Untimed predictor calls on a full batch; their latency calibrates LoadGen's expectations."""
        count = max(self.settings.warmup_queries, 1)
        batch = min(self.settings.batch_size, self.library.size)
        inputs = self.library.contiguous(0, batch)
        latencies = []
        self.progress.start("warm-up", 0.0)
        for _ in range(count):
            start = time.perf_counter_ns()
            self.postprocessor(self.predictor.predict(inputs)[0])
            latencies.append(time.perf_counter_ns() - start)
            self.progress.completed_queries += 1
        ordered = sorted(latencies)
        return WarmupResult(count, ordered[len(ordered) // 2], ordered[0])

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
        log_dir.mkdir(parents=True, exist_ok=True)
        records = QueryRecords()
        top_k = np.full((self.library.size, TOP_K_RECORDED), -1, dtype=np.int64) if mode == "accuracy" else None
        sut = _Sut(self, records, top_k)
        settings = self._test_settings(mode, warmup)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
        qsl_handle = lg.ConstructQSL(self._sample_count, self._sample_count, _load_nothing, _load_nothing)
        self.progress.start(mode, self.settings.min_duration_s if mode == "performance" else 0.0)
        started = time.perf_counter()
        try:
            sut.start_workers()
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, "")
        finally:
            sut.stop_workers()
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
            self.progress.phase = "done"
        duration_s = time.perf_counter() - started
        if sut.failure is not None:
            raise EvaluationError(
                f"the predictor failed during the {mode} run: {sut.failure}",
                hint="Run with a smaller batch size or check the model's inputs.",
            ) from sut.failure
        if mode == "accuracy":
            errors = read_detail_log(log_dir / DETAIL_LOG)["_errors"]
            return RunOutcome(mode, None, errors, records, duration_s, top_k)
        report = parse_report(log_dir)
        return RunOutcome(mode, report, report.errors, records, duration_s, None)


def _load_nothing(_samples: Sequence[int]) -> None:
    """The sample library is already in RAM (pre-processed at start-up), so LoadGen's load/unload are no-ops."""


class _Sut:
    """The callbacks LoadGen calls. Kept separate so the driver's public surface stays small."""

    def __init__(self, driver: LoadGenDriver, records: QueryRecords, top_k: np.ndarray | None) -> None:
        self.predict = driver.predictor.predict
        self.postprocess = driver.postprocessor
        self.library = driver.library
        self.units = driver._units
        self.batch_size = driver.settings.batch_size
        self.progress = driver.progress
        self.records = records
        self.top_k = top_k
        self.failure: Exception | None = None
        self._queue: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        scenario = driver.settings.scenario
        self.issue: Callable[[list[Any]], None]
        if scenario == "server":
            self.issue = self._enqueue
            self._worker_count = 1
        else:
            self.issue = self._answer_units if scenario == "single-stream" else self._answer_batches
            self._worker_count = 0

    def flush(self) -> None:
        """Nothing is held back: every query is answered as soon as it is computed."""

    # Server: LoadGen's issue thread must not block, so queries go to workers.
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

    def _enqueue(self, query_samples: list[Any]) -> None:
        self._queue.put(query_samples)

    def _work(self) -> None:
        while True:
            query_samples = self._queue.get()
            if query_samples is None:
                return
            self._answer_units(query_samples)

    # SingleStream / Server: each LoadGen sample is one pre-built unit (a batch of consecutive items).
    def _answer_units(self, query_samples: list[Any]) -> None:
        responses = []
        for sample in query_samples:
            index = sample.index
            start = time.perf_counter_ns()
            try:
                result = self.postprocess(self.predict(self.units[index])[0])
            except Exception as e:  # reported after LoadGen returns; the query must still complete
                self.failure = self.failure or e
                result = None
            end = time.perf_counter_ns()
            records = self.records
            records.first_index.append(index * self.batch_size)
            records.sample_count.append(len(self.units[index][0]))
            records.start_ns.append(start)
            records.end_ns.append(end)
            if self.top_k is not None and result is not None:
                first = index * self.batch_size
                self._record_top_k(np.arange(first, first + len(result.top_indices)), result.top_indices)
            responses.append(lg.QuerySampleResponse(sample.id, 0, 0))
        lg.QuerySamplesComplete(responses)
        self.progress.completed_queries += 1

    # MultiStream / Offline: many samples per query, answered in batches of batch_size.
    def _answer_batches(self, query_samples: list[Any]) -> None:
        batch = self.batch_size
        for offset in range(0, len(query_samples), batch):
            chunk = query_samples[offset : offset + batch]
            indices = [s.index for s in chunk]
            start = time.perf_counter_ns()
            try:
                result = self.postprocess(self.predict(self.library.gather(indices))[0])
            except Exception as e:  # reported after LoadGen returns; the query must still complete
                self.failure = self.failure or e
                result = None
            end = time.perf_counter_ns()
            records = self.records
            records.first_index.append(indices[0])
            records.sample_count.append(len(indices))
            records.start_ns.append(start)
            records.end_ns.append(end)
            if self.top_k is not None and result is not None:
                self._record_top_k(np.asarray(indices), result.top_indices)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in chunk])
        self.progress.completed_queries += 1

    def _record_top_k(self, items: np.ndarray, top_indices: np.ndarray) -> None:
        assert self.top_k is not None
        k = min(TOP_K_RECORDED, top_indices.shape[1])
        self.top_k[items, :k] = top_indices[:, :k]
