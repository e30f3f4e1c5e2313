"""A run holds a bounded amount per query however long it is, and the CLI warns before a schedule that won't fit.

Issue 16: the SUT appends one Python row per call; the driver's pump moves them into an exact latency histogram
(each distinct latency with its count: bounded by the spread of latencies, not the run's length) and the tracer
releases every row nobody needs any more (streamed, or no reader of MODEL spans at all), so a long run no longer
keeps a tuple per query. The tracer's cursors are absolute, so takes, pumps and the phase's end each see every
row exactly once whatever was released between them. Before a run, ``mlmodelscope evaluate`` estimates LoadGen's
schedule for the fastest model LoadGen can drive and warns, naming the ways to bound it, when it would not fit
(here: a tiny injected memory figure, nothing timed).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mlmodelscope.cli.main import main
from mlmodelscope.cli.prechecks import check_schedule, fitting_query_ns
from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.evaluation.driver import LoadGenDriver
from mlmodelscope.core.evaluation.sample_library import SampleLibrary
from mlmodelscope.core.evaluation.schedule import FASTEST_QUERY_NS, worst_case_schedule
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.evaluation.statistics import histogram_stats, latency_stats
from mlmodelscope.core.evaluation.sut import LatencyCounts
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.manifests.model_tensors import ModelInput
from mlmodelscope.core.predictor import Predictor, PredictorOptions
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import ModelRow, Tracer
from tests.support.paths import ASSETS

MIB = 2**20


def _row(n: int) -> ModelRow:
    return (n, 1, 1_000 + 10 * n, 1_003 + 10 * n + n % 7)


def test_the_pump_releases_only_rows_both_streamed_and_read() -> None:
    tracer = Tracer("pump", TraceLevel.MODEL)
    phase = tracer.new_span_id()
    rows = tracer.model_rows
    tracer.open_model_stream(rows, "performance")
    rows.extend(_row(n) for n in range(100))
    assert tracer.pump_model_rows(0) == [_row(n) for n in range(100)]
    assert len(rows) == 100  # read, but nothing streamed yet: every row stays for the stream
    first = tracer.take_model_rows(60)
    assert first is not None and first.rows == [_row(n) for n in range(60)]
    assert tracer.pump_model_rows(100) == []
    assert len(rows) == 40 and tracer.model_row_count == 100
    rows.extend(_row(n) for n in range(100, 110))
    second = tracer.take_model_rows(1_000)
    assert second is not None and second.first_seq == 60 and second.rows == [_row(n) for n in range(60, 110)]
    assert tracer.pump_model_rows(100) == [_row(n) for n in range(100, 110)]
    assert rows == []
    rows.extend(_row(n) for n in range(110, 113))  # neither streamed nor read when the phase ends
    rest = tracer.materialize_model_spans(parent_id=phase)
    assert [s.attributes["seq"] for s in rest] == [110, 111, 112]
    assert [s.attributes["first_item"] for s in rest] == [110, 111, 112]


def test_without_a_reader_of_model_spans_read_rows_go_and_the_window_keeps_its_first_calls() -> None:
    tracer = Tracer("pump", TraceLevel.FRAMEWORK)
    tracer.keep_model_spans = False  # the agent without NATS
    tracer.retain_model_spans = 3
    phase = tracer.new_span_id()
    rows = tracer.model_rows
    rows.extend(_row(n) for n in range(5))
    assert len(tracer.pump_model_rows(0)) == 5
    assert rows == []
    rows.extend(_row(n) for n in range(5, 7))
    spans = tracer.materialize_model_spans(parent_id=phase)
    assert [s.attributes["first_item"] for s in spans] == [0, 1, 2, 5, 6]
    assert [s.attributes["seq"] for s in spans] == [0, 1, 2, 5, 6]
    assert {s.parent_id for s in spans} == {phase}
    assert [(s.start_ns, s.end_ns) for s in spans[:3]] == [(r[2], r[3]) for r in map(_row, range(3))]
    # The next phase starts counting again, with its own retained head.
    rows.append(_row(7))
    tracer.pump_model_rows(tracer.model_row_count - 1)
    assert [s.attributes["seq"] for s in tracer.materialize_model_spans()] == [0]


def test_by_default_every_row_is_kept_for_the_phase_end() -> None:
    tracer = Tracer("pump", TraceLevel.MODEL)
    tracer.model_rows.extend(_row(n) for n in range(10))
    assert len(tracer.pump_model_rows(0)) == 10
    assert len(tracer.model_rows) == 10
    assert [s.attributes["seq"] for s in tracer.materialize_model_spans()] == list(range(10))


def test_pumps_and_takes_see_every_row_once_while_the_sut_appends() -> None:
    tracer = Tracer("pump", TraceLevel.MODEL)
    tracer.new_span_id()
    rows = tracer.model_rows
    tracer.open_model_stream(rows, "performance")
    append, total = rows.append, 30_000

    def sut() -> None:
        for n in range(total):
            append(_row(n))

    thread = threading.Thread(target=sut)
    thread.start()
    pumped: list[ModelRow] = []
    taken: list[ModelRow] = []
    while thread.is_alive() or len(pumped) < total or len(taken) < total:
        pumped += tracer.pump_model_rows(len(pumped))
        take = tracer.take_model_rows(700)
        if take is not None:
            assert take.first_seq == len(taken)
            taken += take.rows
    thread.join()
    tracer.pump_model_rows(len(pumped))
    assert pumped == taken == [_row(n) for n in range(total)]
    assert rows == []  # everything streamed and read has gone


def test_the_latency_histogram_is_exact_and_bounded_by_distinct_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mlmodelscope.core.evaluation.sut.PENDING_LATENCIES", 1_000)  # merge often
    rng = np.random.default_rng(16)
    latencies = np.concatenate([rng.integers(14_000, 16_000, 20_000), [5_000_000_000, 2**40, 1]])
    histogram = LatencyCounts()
    for chunk in np.array_split(latencies, 37):
        histogram.add(chunk.astype(np.int64), len(chunk))
    assert histogram.nbytes <= 16 * 2_003 + 8 * 1_000  # distinct values and counts, plus what waits to merge
    records = histogram.records()
    assert (len(records), records.samples) == (len(latencies), len(latencies))
    assert records.latencies_ns().tolist() == sorted(latencies.tolist())
    exact, counted = latency_stats(latencies), records.stats()
    assert counted.model_dump(exclude={"mean_ns", "trimmed_mean_20_ns"}) == exact.model_dump(
        exclude={"mean_ns", "trimmed_mean_20_ns"}
    )
    assert counted.mean_ns == pytest.approx(exact.mean_ns, rel=1e-12)
    assert counted.trimmed_mean_20_ns == pytest.approx(exact.trimmed_mean_20_ns, rel=1e-12)


@pytest.mark.parametrize("values", [[7], [1, 2], [3, 3, 3, 9], list(range(1, 1001)), [5, 1, 5, 1, 5, 100, 2]])
def test_histogram_statistics_equal_the_per_query_ones(values: list[int]) -> None:
    distinct, counts = np.unique(np.array(values, dtype=np.int64), return_counts=True)
    by_count, by_query = histogram_stats(distinct, counts), latency_stats(np.array(values, dtype=np.int64))
    assert by_count.model_dump(exclude={"mean_ns", "trimmed_mean_20_ns"}) == by_query.model_dump(
        exclude={"mean_ns", "trimmed_mean_20_ns"}
    )
    assert by_count.mean_ns == pytest.approx(by_query.mean_ns, rel=1e-12)
    assert by_count.trimmed_mean_20_ns == pytest.approx(by_query.trimmed_mean_20_ns, rel=1e-12)


class _Zeros(Predictor):
    name = "zeros"

    @classmethod
    def library_version(cls) -> str:
        return "0"

    def load(self, artifact_path: Path) -> None:
        return None

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        return [np.zeros((len(inputs[0]), 10), np.float32)]


class _ZerosReader:
    def __init__(self, size: int) -> None:
        self.size = size
        self.truth = ClassLabels(np.zeros(size, np.int64))
        self.fingerprint = "zeros"

    def read(self, index: int) -> np.ndarray:
        return np.zeros((1, 8, 8), np.float32)

    def name(self, index: int) -> ItemName:
        return ItemName(index)


@pytest.mark.slow
def test_a_traced_run_without_a_span_reader_ends_holding_no_row(tmp_path: Path) -> None:
    """The driver's records come from the pump's histogram (every call, in order), and the tracer holds no row."""
    spec = load_registry([ASSETS]).model("digits-cnn").spec
    predictor = _Zeros(spec, PredictorOptions())
    library = SampleLibrary(
        _ZerosReader(20), spec.model_copy(update={"inputs": [ModelInput(name="i", shape=[1, 8, 8], dtype="float32")]})
    )
    tracer = Tracer("pump", TraceLevel.MODEL)
    tracer.keep_model_spans = False
    settings = EvaluationSettings(
        scenario="single-stream", mode="performance", min_duration_s=0.5, min_query_count=64, warmup_queries=2
    )
    driver = LoadGenDriver(predictor, library, None, settings, tracer=tracer)
    outcome = driver.run("performance", driver.warm_up(), tmp_path / "logs")
    assert outcome.report is not None and outcome.report.valid, outcome.report
    assert len(outcome.records) == driver.progress.completed_queries >= 64
    assert outcome.records.samples == len(outcome.records)
    assert (outcome.records.values_ns > 0).all() and outcome.records.stats().count == len(outcome.records)
    assert tracer.model_rows == []
    assert tracer.materialize_model_spans() == []


def _fast_long_run(**update: object) -> EvaluationSettings:
    fields: dict[str, object] = {"scenario": "single-stream", "mode": "performance", "min_duration_s": 600.0}
    return EvaluationSettings(**{**fields, **update})


def test_the_check_before_the_run_assumes_the_fastest_model_or_the_pinned_hint() -> None:
    plenty = (2**50, "plenty")
    assert worst_case_schedule(_fast_long_run(), plenty).hints.expected_latency_ns == round(0.8 * FASTEST_QUERY_NS)
    assert worst_case_schedule(_fast_long_run(expected_latency_ms=2.0), plenty).hints.expected_latency_ns == 2_000_000
    assert check_schedule([_fast_long_run()], plenty) is None
    assert check_schedule([_fast_long_run(mode="accuracy")], (MIB, "tiny")) is None  # no schedule to pre-generate
    warning = check_schedule([_fast_long_run()], (MIB, "a tiny test figure"))
    assert warning is not None
    for words in ("a tiny test figure", "--max-queries", "--expected-latency-ms", "--min-duration", "fastest model"):
        assert words in warning
    # Unpinned, the warning names the speed below which the schedule would not fit: with 1 GiB, a model that
    # slow fits and one twice as fast does not.
    gib = (2**30, "one GiB")
    warning = check_schedule([_fast_long_run()], gib)
    assert warning is not None and warning.startswith("if the model answers a query in less than about ")
    threshold_ns = fitting_query_ns(_fast_long_run(), gib)
    assert worst_case_schedule(_fast_long_run(), gib, per_query_ns=threshold_ns).warning is None
    assert worst_case_schedule(_fast_long_run(), gib, per_query_ns=threshold_ns / 2).warning is not None


def test_evaluate_warns_before_anything_starts(
    scratch_assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning comes before every other step: here the run then fails on a later check (--direct with two batch
    sizes), so nothing is evaluated."""
    monkeypatch.setattr("mlmodelscope.cli.prechecks.available_memory", lambda: (MIB, "a tiny test figure"))
    monkeypatch.setenv("MLMODELSCOPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(scratch_assets.parent)
    code = main(
        [
            *("--cache-dir", str(tmp_path / "cache"), "evaluate", "-m", "digits-cnn", "-f", "onnxruntime"),
            *("--mode", "performance", "--min-duration", "600s", "--direct", "--batch-size", "1,2"),
        ]
    )
    stderr = " ".join(capsys.readouterr().err.split())
    assert code == 1, stderr
    assert stderr.startswith("warning: if the model answers a query in less than about"), stderr
    assert "LoadGen will pre-generate" in stderr, stderr
    assert "a tiny test figure" in stderr and "--max-queries" in stderr and "--expected-latency-ms" in stderr
    assert stderr.index("warning:") < stderr.index("error: --direct evaluates one framework")
