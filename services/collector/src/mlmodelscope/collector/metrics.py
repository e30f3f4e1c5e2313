"""Prometheus metrics of the collector, in base units, labelled by what was evaluated and never by a run id.

The collector keeps the metric values itself (one lock-protected state) and exports them through a custom
``prometheus_client`` collector, rather than using ``Counter``/``Histogram`` objects, for one reason: after a
restart every counter must equal the true count, so the state is *seeded from database aggregates at startup*
(histogram buckets included, which ``Histogram`` cannot be given) and then advanced only by what each ingesting
transaction actually inserted, after it committed. Scrapes therefore never touch the database and cost the same
however many runs are stored. (Reading aggregates on every scrape would be exact too, but scans every query record
each 15 s; one scan at startup is enough.)

Run labels (model, framework, arch, accelerator, scenario, batch_size) are known only once a run's
``run_started`` arrived; data of a run seen before that is counted when its labels arrive, so a series never
goes down. Regression gauges (``mlmodelscope_regression_detected``, ``..._p99_ratio``,
``..._throughput_ratio``) show the latest regression check of each label set against its baseline; they are
seeded from the ``regression_checks`` table and advanced by the regression monitor after it stores a check.
Definitions: ``mlmodelscope_inferences_total`` counts dataset items predicted (sum of ``item_count``
over query records of every mode); ``mlmodelscope_inference_latency_seconds`` observes each performance-mode
predictor call; the gauges show the latest finished run of each label set (``mlmodelscope_accuracy_ratio``: the
task's primary figure, named by its ``metric`` label: top1, mAP or mIoU; ``..._accuracy_top1_ratio``:
classification only); ``mlmodelscope_dead_letters_total``
counts the messages terminated without being stored, by reason (the ``dead_letters`` table; every reason is
exported, 0 included, so an alert can watch ``insert_failed``), and ``mlmodelscope_messages_rejected_total`` is
the same count under its older name, kept for existing dashboards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple, get_args

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mlmodelscope.collector.errors import RejectReason

LATENCY_BUCKETS_S: tuple[float, ...] = (
    50e-6, 100e-6, 200e-6, 500e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
LATENCY_BUCKETS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in LATENCY_BUCKETS_S)
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)
LABEL_NAMES = ("model", "framework", "arch", "accelerator", "scenario", "batch_size")


class RunLabels(NamedTuple):
    model: str
    framework: str
    arch: str
    accelerator: str
    scenario: str
    batch_size: str


def bucket_index(latency_ns: int) -> int:
    """Index of the first bucket whose upper bound (inclusive, as Prometheus's ``le``) holds the latency."""
    for index, bound in enumerate(LATENCY_BUCKETS_NS):
        if latency_ns <= bound:
            return index
    return len(LATENCY_BUCKETS_NS)


@dataclass
class LatencyHistogram:
    """Non-cumulative counts per bucket (the last one is +Inf), and the sum in ns (exact integers)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_NS) + 1))
    sum_ns: int = 0

    def observe(self, latency_ns: int) -> None:
        self.counts[bucket_index(latency_ns)] += 1
        self.sum_ns += latency_ns

    def merge(self, counts_and_sum: list[int]) -> None:
        """Add a stored histogram: its bucket counts, then its sum in ns."""
        *counts, sum_ns = counts_and_sum
        self.counts = [a + int(b) for a, b in zip(self.counts, counts, strict=True)]
        self.sum_ns += int(sum_ns)

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class LatestValue:
    at: datetime
    value: float
    metric: str = ""  # accuracy: which figure (top1, mAP, mIoU)


@dataclass(frozen=True)
class RegressionState:
    """The latest regression check of a label set: when, whether it regressed, and the two ratios."""

    at: datetime
    regressed: bool
    p99_ratio: float
    throughput_ratio: float


@dataclass
class MetricsSnapshot:
    """Everything the metrics show, as aggregated from the database (``storage.aggregates.load_snapshot``)."""

    spans_ingested: int = 0
    messages_ingested: dict[str, int] = field(default_factory=dict)
    messages_duplicate: int = 0
    messages_rejected: dict[str, int] = field(default_factory=dict)
    inferences: dict[RunLabels, int] = field(default_factory=dict)
    latency: dict[RunLabels, LatencyHistogram] = field(default_factory=dict)
    accuracy_top1: dict[RunLabels, LatestValue] = field(default_factory=dict)
    accuracy: dict[RunLabels, LatestValue] = field(default_factory=dict)
    throughput: dict[RunLabels, LatestValue] = field(default_factory=dict)
    regressions: dict[RunLabels, RegressionState] = field(default_factory=dict)


@dataclass
class MetricEffects:
    """What one committed ingest changed, as the metrics see it (built inside the transaction, applied after)."""

    kind: str | None = None
    duplicate: bool = False
    spans_inserted: int = 0
    labels: RunLabels | None = None
    items: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    # Histograms of columnar batches ([count per bucket..., sum_ns], ``span_store.latency_histogram``; None: empty)
    latency_histograms: list[list[int] | None] = field(default_factory=list)
    accuracy_top1: LatestValue | None = None
    accuracy: LatestValue | None = None
    throughput: LatestValue | None = None


def _newer(current: LatestValue | None, candidate: LatestValue) -> bool:
    return current is None or candidate.at >= current.at


class CollectorMetrics(Collector):
    """The metric state plus its Prometheus exposition; thread-safe (ingestion runs in worker threads)."""

    def __init__(self, *, build_version: str | None = None) -> None:
        self._lock = threading.Lock()
        self._state = MetricsSnapshot()
        self._consumer_lag: int | None = None
        self._build_version = build_version or distribution_version()

    def load(self, snapshot: MetricsSnapshot) -> None:
        """Replace the state with aggregates read from the database (at startup)."""
        with self._lock:
            self._state = snapshot

    def apply(self, effects: MetricEffects) -> None:
        with self._lock:
            state = self._state
            if effects.duplicate:
                state.messages_duplicate += 1
                return
            if effects.kind is not None:
                state.messages_ingested[effects.kind] = state.messages_ingested.get(effects.kind, 0) + 1
            state.spans_ingested += effects.spans_inserted
            labels = effects.labels
            if labels is None:
                return
            if effects.items:
                state.inferences[labels] = state.inferences.get(labels, 0) + effects.items
            if effects.latencies_ns:
                histogram = state.latency.setdefault(labels, LatencyHistogram())
                for latency_ns in effects.latencies_ns:
                    histogram.observe(latency_ns)
            for counts in effects.latency_histograms:
                if counts is not None:
                    state.latency.setdefault(labels, LatencyHistogram()).merge(counts)
            if effects.accuracy_top1 is not None and _newer(state.accuracy_top1.get(labels), effects.accuracy_top1):
                state.accuracy_top1[labels] = effects.accuracy_top1
            if effects.accuracy is not None and _newer(state.accuracy.get(labels), effects.accuracy):
                state.accuracy[labels] = effects.accuracy
            if effects.throughput is not None and _newer(state.throughput.get(labels), effects.throughput):
                state.throughput[labels] = effects.throughput

    def apply_regression(self, labels: RunLabels, state: RegressionState) -> None:
        """A regression check was stored (or loaded at startup): the gauges show the latest one per label set."""
        with self._lock:
            current = self._state.regressions.get(labels)
            if current is None or state.at >= current.at:
                self._state.regressions[labels] = state

    def record_rejection(self, reason: RejectReason) -> None:
        with self._lock:
            self._state.messages_rejected[reason] = self._state.messages_rejected.get(reason, 0) + 1

    def set_consumer_lag(self, messages: int | None) -> None:
        with self._lock:
            self._consumer_lag = messages

    def snapshot(self) -> MetricsSnapshot:
        """A copy of the state (for tests and diagnostics)."""
        with self._lock:
            state = self._state
            return MetricsSnapshot(
                spans_ingested=state.spans_ingested,
                messages_ingested=dict(state.messages_ingested),
                messages_duplicate=state.messages_duplicate,
                messages_rejected=dict(state.messages_rejected),
                inferences=dict(state.inferences),
                latency={k: LatencyHistogram(list(v.counts), v.sum_ns) for k, v in state.latency.items()},
                accuracy_top1=dict(state.accuracy_top1),
                accuracy=dict(state.accuracy),
                throughput=dict(state.throughput),
                regressions=dict(state.regressions),
            )

    def describe(self) -> Iterable[Metric]:
        return []  # the metrics are dynamic; an empty describe() keeps registration from calling collect()

    def collect(self) -> Iterator[Metric]:
        state = self.snapshot()
        with self._lock:
            lag = self._consumer_lag

        build = GaugeMetricFamily("mlmodelscope_build_info", "Collector build; the value is 1.", labels=["version"])
        build.add_metric([self._build_version], 1.0)
        yield build
        yield from _ingestion_families(state)
        yield from _inference_families(state)
        yield from _regression_gauges(state.regressions)

        if lag is not None:
            lag_gauge = GaugeMetricFamily(
                "mlmodelscope_consumer_lag_messages", "Messages in the stream not yet delivered to this collector."
            )
            lag_gauge.add_metric([], float(lag))
            yield lag_gauge


def _ingestion_families(state: MetricsSnapshot) -> Iterator[Metric]:
    """What the collector stored and refused: spans, messages by kind, duplicates, dead letters by reason."""
    spans = CounterMetricFamily("mlmodelscope_spans_ingested", "Spans stored (each (run, span id) once).")
    spans.add_metric([], float(state.spans_ingested))
    yield spans

    ingested = CounterMetricFamily(
        "mlmodelscope_messages_ingested",
        "Messages stored, by payload kind (redeliveries excluded).",
        labels=["kind"],
    )
    for kind, count in sorted(state.messages_ingested.items()):
        ingested.add_metric([kind], float(count))
    yield ingested

    duplicate = CounterMetricFamily(
        "mlmodelscope_messages_duplicate", "Messages dropped because their message id was already ingested."
    )
    duplicate.add_metric([], float(state.messages_duplicate))
    yield duplicate

    for name, documentation in (
        ("mlmodelscope_dead_letters", "Messages dead-lettered (terminated, never stored), by reason."),
        ("mlmodelscope_messages_rejected", "Messages refused and never stored, by reason (= dead letters)."),
    ):
        rejected = CounterMetricFamily(name, documentation, labels=["reason"])
        for reason in sorted(set(REJECT_REASONS) | set(state.messages_rejected)):
            rejected.add_metric([reason], float(state.messages_rejected.get(reason, 0)))
        yield rejected


def _inference_families(state: MetricsSnapshot) -> Iterator[Metric]:
    """What the runs measured, by run labels: inferences, latency, and the latest accuracy and throughput."""
    inferences = CounterMetricFamily(
        "mlmodelscope_inferences", "Dataset items predicted (query records of every mode).", labels=LABEL_NAMES
    )
    for labels, items in sorted(state.inferences.items()):
        inferences.add_metric(list(labels), float(items))
    yield inferences

    latency = HistogramMetricFamily(
        "mlmodelscope_inference_latency_seconds",
        "Latency of each performance-mode predictor call, as the agent's SUT measured it.",
        labels=LABEL_NAMES,
    )
    for labels, histogram in sorted(state.latency.items()):
        latency.add_metric(list(labels), _cumulative_buckets(histogram), histogram.sum_ns / 1e9)
    yield latency

    yield _latest_gauge(
        "mlmodelscope_accuracy_top1_ratio", "Top-1 accuracy (0..1) of the latest finished run.", state.accuracy_top1
    )
    yield _accuracy_gauge(state.accuracy)
    yield _latest_gauge(
        "mlmodelscope_throughput_samples_per_second",
        "Throughput in dataset items per second of the latest finished run (LoadGen's figure).",
        state.throughput,
    )


def _accuracy_gauge(values: Mapping[RunLabels, LatestValue]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "mlmodelscope_accuracy_ratio",
        "The task's primary accuracy (0..1) of the latest finished run: top1, mAP or mIoU (label metric).",
        labels=[*LABEL_NAMES, "metric"],
    )
    for labels, latest in sorted(values.items()):
        gauge.add_metric([*labels, latest.metric], latest.value)
    return gauge


def _regression_gauges(regressions: Mapping[RunLabels, RegressionState]) -> Iterator[Metric]:
    detected = GaugeMetricFamily(
        "mlmodelscope_regression_detected",
        "1 when the latest checked run of these labels regressed against its baseline (p99 or throughput), else 0.",
        labels=LABEL_NAMES,
    )
    p99 = GaugeMetricFamily(
        "mlmodelscope_regression_p99_ratio", "Latest checked run's p99 / its baseline's p99.", labels=LABEL_NAMES
    )
    throughput = GaugeMetricFamily(
        "mlmodelscope_regression_throughput_ratio",
        "Latest checked run's throughput / its baseline's throughput.",
        labels=LABEL_NAMES,
    )
    for labels, state in sorted(regressions.items()):
        detected.add_metric(list(labels), 1.0 if state.regressed else 0.0)
        p99.add_metric(list(labels), state.p99_ratio)
        throughput.add_metric(list(labels), state.throughput_ratio)
    yield detected
    yield p99
    yield throughput


def create_registry(metrics: CollectorMetrics) -> CollectorRegistry:
    """A registry of its own per app (no global state shared between apps or tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return registry


def _cumulative_buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), histogram.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return buckets


def _latest_gauge(name: str, documentation: str, values: Mapping[RunLabels, LatestValue]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=LABEL_NAMES)
    for labels, latest in sorted(values.items()):
        gauge.add_metric(list(labels), latest.value)
    return gauge


def distribution_version() -> str:
    try:
        return version("mlmodelscope-collector")
    except PackageNotFoundError:
        return "unknown"
