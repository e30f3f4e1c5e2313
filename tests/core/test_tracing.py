"""Across-stack tracing: the tracer's levels and costs, Chrome trace export, hardware sampling, and ONNX Runtime's
profiler turned into FRAMEWORK spans under real model spans (real ORT, the committed digits model)."""

from __future__ import annotations

import itertools
import json
import threading
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlmodelscope.agent.profilers.onnxruntime import OnnxRuntimeProfiler, profile_spans
from mlmodelscope.agent.profilers.onnxruntime_json import read_profile
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.chrome import to_chrome_trace, validate_chrome_trace, write_chrome_trace
from mlmodelscope.core.tracing.framework import FrameworkProfiler, clip_into, model_span_times, shift_into
from mlmodelscope.core.tracing.hardware import HardwareSampler
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.timed_span import DISABLED_SPAN
from mlmodelscope.core.tracing.tracer import Tracer
from tests.support.paths import ASSETS

ONNX = ASSETS / "artifacts" / "digits" / "digits_cnn.onnx"
L = TraceLevel


# --- tracer ---------------------------------------------------------------------------------------------------


def test_levels_filter() -> None:
    tracer = Tracer("run-1", L.MODEL)
    assert [lvl for lvl in L if tracer.enabled(lvl)] == [L.APPLICATION, L.MODEL]
    assert tracer.record("op", L.FRAMEWORK, 1, 2) == 0
    assert tracer.record("hw", L.HARDWARE, 1, 2) == 0
    model_id = tracer.record("predict", L.MODEL, 10, 20, attributes={"items": 4})
    app_id = tracer.record("run", L.APPLICATION, 0, 30)
    assert model_id > 0 and app_id > model_id
    assert [(s.name, s.level) for s in tracer.spans] == [("predict", L.MODEL), ("run", L.APPLICATION)]
    assert tracer.spans[0].attributes == {"items": 4}

    nothing = Tracer("run-2", L.NO)
    assert not any(nothing.enabled(lvl) for lvl in L)
    assert nothing.record("run", L.APPLICATION, 0, 1) == 0
    assert nothing.spans == []

    everything = Tracer("run-3", L.FULL)
    assert all(everything.enabled(lvl) for lvl in L if lvl is not L.NO)


def test_span_ids_are_unique_across_threads_and_tracers() -> None:
    tracers = [Tracer("a", L.FULL), Tracer("b", L.FULL)]
    ids: list[list[int]] = [[] for _ in range(8)]

    def allocate(out: list[int], tracer: Tracer) -> None:
        for _ in range(5000):
            out.append(tracer.new_span_id())

    threads = [threading.Thread(target=allocate, args=(ids[n], tracers[n % 2])) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for chunk in ids for i in chunk]
    assert len(set(flat)) == len(flat) == 40000
    assert min(flat) >= 1
    assert all(chunk == sorted(chunk) for chunk in ids)  # monotonic within each thread


def test_disabled_level_returns_the_shared_no_op_and_allocates_nothing() -> None:
    tracer = Tracer("run", L.MODEL)
    assert tracer.span("op", L.FRAMEWORK) is DISABLED_SPAN
    assert tracer.span("op", L.HARDWARE, parent_id=3, size=4) is DISABLED_SPAN
    assert Tracer("off", L.NO).span("run", L.APPLICATION) is DISABLED_SPAN
    with tracer.span("op", L.FRAMEWORK) as span_id:
        assert span_id == 0

    def hot_loop(count: int) -> None:
        span, record, framework = tracer.span, tracer.record, L.FRAMEWORK
        for _ in range(count):
            with span("op", framework):
                pass
            record("op", framework, 1, 2)

    hot_loop(100)  # warm any lazy interpreter caches first
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        hot_loop(20_000)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Nothing that grows with the number of calls: a Span is ~1 KiB, so 40k of them would be ~40 MB. The bounds
    # leave room for allocations of other threads that tracemalloc also sees (earlier tests' daemons).
    assert after - before < 64 * 1024
    assert peak - before < 256 * 1024
    assert tracer.spans == []


def test_span_context_manager_nests_and_records_errors() -> None:
    tracer = Tracer("run", L.FRAMEWORK)
    with (
        tracer.span("evaluate", L.APPLICATION, model="digits") as outer,
        tracer.span("predict", L.MODEL, parent_id=outer) as middle,
    ):
        with tracer.span("Conv", L.FRAMEWORK, parent_id=middle, op_type="Conv") as inner:
            time.sleep(0.001)
        with tracer.span("memcpy", L.LIBRARY, parent_id=middle) as skipped:
            pass
    assert 0 < outer < middle < inner
    assert skipped == 0
    by_id = {s.span_id: s for s in tracer.spans}
    assert set(by_id) == {outer, middle, inner}
    assert by_id[outer].attributes == {"model": "digits"}
    assert by_id[inner].attributes == {"op_type": "Conv"}
    for child, parent in ((inner, middle), (middle, outer)):
        assert by_id[child].parent_id == parent
        assert by_id[parent].start_ns <= by_id[child].start_ns <= by_id[child].end_ns <= by_id[parent].end_ns
    assert by_id[inner].duration_ns >= 1_000_000

    with pytest.raises(RuntimeError), tracer.span("load", L.APPLICATION):
        raise RuntimeError("boom")
    assert tracer.spans[-1].name == "load"
    assert tracer.spans[-1].attributes == {"error": "RuntimeError"}


def test_drain_takes_and_clears_and_loses_nothing_under_concurrency() -> None:
    tracer = Tracer("run", L.MODEL)
    for n in range(3):
        tracer.record(f"s{n}", L.MODEL, n, n + 1)
    assert [s.name for s in tracer.drain()] == ["s0", "s1", "s2"]
    assert tracer.spans == [] and tracer.drain() == []

    stop = threading.Event()
    recorded: list[int] = []

    def produce() -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            recorded.append(tracer.record("s", L.MODEL, n, n + 1))
            n += 1

    producer = threading.Thread(target=produce)
    producer.start()
    drained: list[Span] = []
    while producer.is_alive():
        drained.extend(tracer.drain())
    producer.join()
    drained.extend(tracer.drain())
    assert [s.span_id for s in drained] == recorded


def test_model_rows_materialize_into_predict_spans_in_call_order() -> None:
    tracer = Tracer("run", L.MODEL)
    rows = tracer.model_rows
    append = rows.append  # what the driver binds in its closure
    append((0, 4, 100, 200))
    append((4, 4, 210, 330))
    spans = tracer.materialize_model_spans(parent_id=7)
    assert tracer.model_rows is rows and rows == []
    assert [(s.name, s.level, s.parent_id, s.start_ns, s.end_ns) for s in spans] == [
        ("predict", L.MODEL, 7, 100, 200),
        ("predict", L.MODEL, 7, 210, 330),
    ]
    assert spans[1].attributes == {"seq": 1, "first_item": 4, "item_count": 4}
    assert spans[0].span_id < spans[1].span_id
    assert tracer.spans == spans
    assert model_span_times(spans) == [(spans[0].span_id, 100, 200), (spans[1].span_id, 210, 330)]
    append((8, 4, 400, 500))  # the bound append still feeds the tracer after materializing
    assert len(tracer.materialize_model_spans()) == 1

    off = Tracer("run", L.APPLICATION)
    off.model_rows.append((0, 1, 1, 2))
    assert off.materialize_model_spans() == [] and off.model_rows == [] and off.spans == []


def test_epoch_offset_aligns_the_monotonic_clock_to_the_wall_clock() -> None:
    tracer = Tracer("run", L.MODEL)
    assert abs(tracer.epoch_offset_ns + time.perf_counter_ns() - time.time_ns()) < 50_000_000


def test_shift_and_clip_into_a_parent() -> None:
    assert shift_into(150, 20, 100, 200) == 150  # fits: unchanged
    assert shift_into(90, 20, 100, 200) == 100  # starts early: moved right
    assert shift_into(195, 20, 100, 200) == 180  # ends late: moved left
    assert shift_into(120, 500, 100, 200) == 100  # longer than the parent: starts at its start
    assert clip_into(90, 150, 100, 200) == (100, 150)
    assert clip_into(150, 250, 100, 200) == (150, 200)
    assert clip_into(250, 300, 100, 200) == (200, 200)


# --- Chrome trace export --------------------------------------------------------------------------------------


def _assert_nested(doc: dict[str, Any], spans: Iterable[Span]) -> int:
    """Every exported child lies inside its exported parent; every track's slices nest. Returns pairs checked."""
    events = {e["args"]["span_id"]: e for e in doc["traceEvents"] if e["ph"] == "X"}
    checked = 0
    for span in spans:
        if span.parent_id == 0:
            continue
        child, parent = events[span.span_id], events[span.parent_id]
        assert child["args"]["parent_id"] == span.parent_id
        assert parent["ts"] <= child["ts"], (parent, child)
        assert child["ts"] + child["dur"] <= parent["ts"] + parent["dur"], (parent, child)
        checked += 1
    tracks: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for event in events.values():
        tracks.setdefault((event["pid"], event["tid"]), []).append(event)
    for slices in tracks.values():
        open_ends: list[float] = []
        for event in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"]:
                open_ends.pop()
            end = event["ts"] + event["dur"]
            assert not open_ends or end <= open_ends[-1], f"partial overlap on a track: {event}"
            open_ends.append(end)
    return checked


def _synthetic_run(tracer: Tracer) -> None:
    base = time.perf_counter_ns()
    root = tracer.record("evaluate", L.APPLICATION, base, base + 10_000_000)
    for q in range(3):
        start = base + 1_000_000 + q * 2_000_000
        model = tracer.record("predict", L.MODEL, start, start + 1_500_000, parent_id=root, attributes={"seq": q})
        for k in range(3):
            op_start = start + 100_000 + k * 400_000 + 37  # odd ns offsets exercise the µs rounding
            tracer.record("Conv", L.FRAMEWORK, op_start, op_start + 333_333, parent_id=model)
    for h in range(4):
        tracer.record("hardware_sample", L.HARDWARE, base + h * 2_500_000, base + (h + 1) * 2_500_000)


def test_chrome_export_validates_nests_and_loads_as_json(tmp_path: Path) -> None:
    tracer = Tracer("run-42", L.FULL)
    _synthetic_run(tracer)
    doc = to_chrome_trace(tracer.spans, epoch_offset_ns=tracer.epoch_offset_ns, process_name="mlmodelscope agent")
    validate_chrome_trace(doc)
    assert doc["displayTimeUnit"] == "ns"
    assert doc["metadata"]["epoch_offset_ns"] == tracer.epoch_offset_ns
    assert _assert_nested(doc, tracer.spans) == 3 + 9

    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in complete} == {1}
    assert {e["cat"]: e["tid"] for e in complete} == {"application": 1, "model": 2, "framework": 3, "hardware": 6}
    names = {(e["name"], e["tid"]): e["args"].get("name") for e in doc["traceEvents"] if e["ph"] == "M"}
    assert names[("process_name", 0)] == "mlmodelscope agent run-42"
    assert names[("thread_name", 2)] == "MODEL" and names[("thread_name", 3)] == "FRAMEWORK"
    predict = next(e for e in complete if e["name"] == "predict")
    assert predict["args"]["seq"] == 0 and predict["args"]["parent_id"] > 0
    first = min(tracer.spans, key=lambda s: s.start_ns)
    wall_us = (first.start_ns + tracer.epoch_offset_ns) / 1000
    assert min(e["ts"] for e in complete) == pytest.approx(wall_us, abs=1)
    assert abs(wall_us / 1e6 - time.time()) < 60  # on the wall clock

    path = write_chrome_trace(doc, tmp_path / "traces" / "run-42.json")
    loaded = json.loads(path.read_text())
    validate_chrome_trace(loaded)
    assert loaded["traceEvents"] == json.loads(json.dumps(doc["traceEvents"]))


def test_chrome_export_puts_partially_overlapping_spans_on_extra_lanes() -> None:
    a = Tracer("run-b", L.MODEL)
    b = Tracer("run-a", L.MODEL)
    a.record("predict", L.MODEL, 1_000, 5_000)
    a.record("predict", L.MODEL, 3_000, 7_000)  # a concurrent call: overlaps the first partially
    a.record("predict", L.MODEL, 4_000, 4_500)  # nests inside the second
    b.record("predict", L.MODEL, 1_000, 2_000)
    doc = to_chrome_trace([*a.spans, *b.spans], epoch_offset_ns=0, process_name="agent")
    validate_chrome_trace(doc)
    _assert_nested(doc, [*a.spans, *b.spans])
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {(e["pid"], e["tid"]) for e in complete} == {(1, 2), (2, 2), (2, 2001)}  # pids by sorted run id
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert threads[(2, 2001)] == "MODEL #2"


def _x(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"name": "predict", "ph": "X", "ts": 1.5, "dur": 2.0, "pid": 1, "tid": 2, "args": {}}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "a Chrome trace is a JSON object"),
        ({"events": []}, "needs 'traceEvents'"),
        ({"traceEvents": [], "displayTimeUnit": "us"}, "displayTimeUnit"),
        ({"traceEvents": [_x(ph="Q")]}, "traceEvents[0] (ph 'Q', name 'predict'): 'ph' must be one of"),
        ({"traceEvents": [_x(dur=-1.0)]}, "'dur' must be a finite number >= 0"),
        ({"traceEvents": [_x(dur=None)]}, "'dur' must be a finite number >= 0"),
        ({"traceEvents": [_x(ts="12")]}, "'ts' must be a finite number >= 0"),
        ({"traceEvents": [_x(ts=float("nan"))]}, "'ts' must be a finite number >= 0"),
        ({"traceEvents": [_x(tid=None)]}, "'tid' must be an integer"),
        ({"traceEvents": [_x(pid="1")]}, "'pid' must be an integer"),
        ({"traceEvents": [_x(name="")]}, "'name' must be a non-empty string"),
        ({"traceEvents": [_x(args=[1])]}, "'args' must be a JSON object"),
        ({"traceEvents": [_x(), 3]}, "traceEvents[1] must be a JSON object"),
        ({"traceEvents": [{"name": "thread_label", "ph": "M", "pid": 1, "tid": 1, "args": {}}]}, "metadata event"),
        ({"traceEvents": [{"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {}}]}, "args.name"),
        ({"traceEvents": [{"name": "flow", "ph": "s", "ts": 1, "pid": 1, "tid": 1}]}, "'id'"),
        ({"traceEvents": [{"name": "mem", "ph": "C", "ts": 1, "pid": 1, "args": {"rss": "x"}}]}, "counter event"),
    ],
)
def test_validate_chrome_trace_rejects_what_perfetto_would(doc: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        validate_chrome_trace(doc)
    assert message in str(e.value)


# --- hardware sampling ----------------------------------------------------------------------------------------


def _nvml_failure() -> str | None:
    """NVML's own reason it cannot start here, or None when it can (then the GPU path is exercised instead)."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return str(e)
    pynvml.nvmlShutdown()
    return None


def test_hardware_sampler_records_cpu_memory_and_why_there_is_no_gpu() -> None:
    tracer = Tracer("run", L.HARDWARE)
    sampler = HardwareSampler(tracer, interval_s=0.05)
    sampler.start()
    assert sampler.running
    # Wait for samples, not for a fixed time: a busy machine may schedule the sampler thread late.
    for _ in range(400):
        if len(tracer.spans) >= 3:
            break
        time.sleep(0.05)
    sampler.stop()
    assert not sampler.running
    spans = tracer.spans
    assert len(spans) >= 3
    assert all(s.level is L.HARDWARE and s.name == "hardware_sample" and s.parent_id == 0 for s in spans)
    for earlier, later in itertools.pairwise(spans):
        assert earlier.end_ns == later.start_ns  # consecutive intervals tile the sampled time
    for span in spans:
        assert 0.0 <= float(span.attributes["cpu_percent"]) <= 100.0
        assert int(span.attributes["memory_used_bytes"]) > 0
        assert 0.0 < float(span.attributes["memory_percent"]) <= 100.0
    reason = _nvml_failure()
    if reason is not None:
        assert spans[0].attributes["gpu"] == f"not available: {reason}"
        assert all("gpu" not in s.attributes for s in spans[1:])  # said once
    else:  # pragma: no cover - only on a machine with an NVIDIA driver
        assert "gpu0_utilization_percent" in spans[0].attributes
    count = len(tracer.spans)
    time.sleep(0.12)
    assert len(tracer.spans) == count  # really stopped
    sampler.stop()  # idempotent


def test_hardware_sampler_stops_promptly_with_a_long_interval_and_is_off_below_hardware() -> None:
    tracer = Tracer("run", L.HARDWARE)
    with HardwareSampler(tracer, interval_s=30.0) as sampler:
        time.sleep(0.05)
        started = time.perf_counter()
    assert time.perf_counter() - started < 1.0
    assert not sampler.running
    assert len(tracer.spans) == 1  # the final partial interval

    quiet = Tracer("run", L.FRAMEWORK)
    with HardwareSampler(quiet, interval_s=0.01) as sampler:
        assert not sampler.running
        time.sleep(0.05)
    assert quiet.spans == []
    with pytest.raises(ValueError, match="interval_s"):
        HardwareSampler(quiet, interval_s=0)


# --- ONNX Runtime profiler ------------------------------------------------------------------------------------

# Optimised, ORT fuses Relu into Conv and (on CPUs with AVX) adds NCHWc layout ops such as ReorderOutput.
# Canonical op types (core.tracing.op_types): ORT's Conv on a 4-D input is Conv2D, Gemm is MatMul.
ORT_OPS_OPTIMIZED = {"Conv2D", "MaxPool", "GlobalAvgPool", "Flatten", "MatMul"}
ORT_OPS_UNOPTIMIZED = {"Conv2D", "Relu", "MaxPool", "GlobalAvgPool", "Flatten", "MatMul"}
ORT_LAYOUT_OPS = {"ReorderInput", "ReorderOutput"}


def _profiled_session(tmp_path: Path, optimization: str = "ORT_ENABLE_ALL") -> tuple[OnnxRuntimeProfiler, Any]:
    ort = pytest.importorskip("onnxruntime")
    profiler = OnnxRuntimeProfiler(tmp_path / "profiles")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    options.intra_op_num_threads = 1
    profiler.configure(options)
    session = ort.InferenceSession(str(ONNX), sess_options=options, providers=["CPUExecutionProvider"])
    profiler.attach(session)
    return profiler, session


def _run_queries(tracer: Tracer, session: Any, count: int, batch: int = 4) -> None:
    """What the LoadGen SUT does at MODEL level: time the call, append one raw row."""
    inputs = {"input": np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)}
    append, clock, run = tracer.model_rows.append, time.perf_counter_ns, session.run
    for q in range(count):
        start = clock()
        run(["logits"], inputs)
        append((q * batch, batch, start, clock()))


@pytest.mark.parametrize(
    ("optimization", "expected_ops"),
    [("ORT_ENABLE_ALL", ORT_OPS_OPTIMIZED), ("ORT_DISABLE_ALL", ORT_OPS_UNOPTIMIZED)],
)
def test_onnxruntime_node_spans_lie_inside_their_query(
    tmp_path: Path, optimization: str, expected_ops: set[str]
) -> None:
    profiler, session = _profiled_session(tmp_path, optimization)
    assert isinstance(profiler, FrameworkProfiler)  # the protocol is structural
    tracer = Tracer("ort-run", L.FRAMEWORK)
    for _ in range(3):  # warm-up: profiled by ORT, but before start(), so not attributed
        session.run(["logits"], {"input": np.zeros((4, 1, 8, 8), np.float32)})
    queries = 6
    with tracer.span("evaluate", L.APPLICATION) as root:
        profiler.start()
        _run_queries(tracer, session, queries)
        profiler.stop()
    model = tracer.materialize_model_spans(parent_id=root)
    assert len(model) == queries
    framework = profiler.spans(tracer, model_span_times(model))
    assert tracer.extend(framework) == len(framework)
    assert profiler.profile_path is not None and profiler.profile_path.is_file()

    by_parent: dict[int, list[Span]] = {}
    for span in framework:
        assert span.level is L.FRAMEWORK
        by_parent.setdefault(span.parent_id, []).append(span)
    assert set(by_parent) == {m.span_id for m in model}
    for query in model:
        children = by_parent[query.span_id]
        nodes = [c for c in children if c.attributes["kind"] == "node"]
        ops = {str(c.attributes["op_type"]) for c in nodes}
        assert expected_ops <= ops and ops - expected_ops <= ORT_LAYOUT_OPS
        assert {c.name for c in nodes} == {str(c.attributes["framework_op"]) for c in nodes}  # ORT's own names
        assert all(c.attributes["framework"] == "onnxruntime" for c in children)
        assert [c.name for c in children].count("model_run") == 1
        for child in children:
            assert query.start_ns <= child.start_ns <= child.end_ns <= query.end_ns, (query, child)
        starts = [c.start_ns for c in nodes]
        assert starts == sorted(starts)  # operator order within the query is kept
        conv = next(c for c in nodes if c.name == "Conv")
        assert (conv.attributes["op_type"], conv.attributes["framework_op"]) == ("Conv2D", "Conv")
        assert conv.attributes["input_shapes"] == "float[4,1,8,8] float[16,1,3,3] float[16]"
        assert conv.attributes["provider"] == "CPUExecutionProvider"
        assert isinstance(conv.attributes["node_index"], int)
        gemm = next(c for c in nodes if c.name == "Gemm")
        assert gemm.attributes["output_shapes"] == "float[4,10]"

    doc = to_chrome_trace(tracer.spans, epoch_offset_ns=tracer.epoch_offset_ns, process_name="onnxruntime")
    validate_chrome_trace(doc)
    assert _assert_nested(doc, tracer.spans) == len(model) + len(framework)


def test_onnxruntime_profile_that_does_not_match_the_model_spans_is_an_error(tmp_path: Path) -> None:
    profiler, session = _profiled_session(tmp_path)
    tracer = Tracer("ort-run", L.FRAMEWORK)
    profiler.start()
    _run_queries(tracer, session, 3)
    profiler.stop()
    model = model_span_times(tracer.materialize_model_spans())
    with pytest.raises(EvaluationError, match="has 3 session runs in the traced window but 2 model spans"):
        profiler.spans(tracer, model[:2])
    assert profiler.spans(Tracer("off", L.MODEL), model) == []  # FRAMEWORK disabled: nothing, no error


def test_onnxruntime_profiler_without_profiling_enabled_is_an_error(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    profiler = OnnxRuntimeProfiler(tmp_path)
    with pytest.raises(EvaluationError, match="has no session"):
        profiler.collect()
    profiler.attach(ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"]))
    with pytest.raises(EvaluationError, match="profiling was not enabled") as e:
        profiler.stop()
    assert "configure(session_options)" in str(e.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "cannot be used: it is empty"),
        ("[{", "cannot be used: it is not JSON"),
        ('{"events": []}', "is not a list of trace events"),
        ("[1]", "event 0 of the ONNX Runtime profile"),
        ('[{"cat": "Session", "name": "model_run", "ph": "X", "dur": 5}]', "event 0 (Session 'model_run')"),
        ('[{"cat": "Node", "name": "Conv", "ph": "X", "ts": -3, "dur": 5}]', "ts: Input should be greater than"),
    ],
)
def test_malformed_onnxruntime_profile_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "profile.json"
    path.write_text(content)
    with pytest.raises(EvaluationError) as e:
        read_profile(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    with pytest.raises(EvaluationError, match="cannot read"):
        read_profile(tmp_path / "missing.json")


def test_onnxruntime_profile_without_runs_gives_nothing_for_no_model_spans(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"traceEvents": [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 9}]}')
    profile = read_profile(path)
    assert profile.runs == [] and profile.nodes == []
    assert profile_spans(profile, Tracer("r", L.FRAMEWORK), [], profiling_start_ns=0) == []


def test_onnxruntime_runs_without_a_wall_clock_start_are_centred_and_clipped_into_their_span(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    events = [
        {"cat": "Session", "name": "model_run", "ph": "X", "ts": 100, "dur": 10, "args": {}},
        {"cat": "Node", "name": "g_kernel_time", "ph": "X", "ts": 102, "dur": 4, "args": {"op_name": "Gemm"}},
        {"cat": "Session", "name": "model_run", "ph": "X", "ts": 200, "dur": 50, "args": {}},  # longer than its span
        {"cat": "Node", "name": "c_kernel_time", "ph": "X", "ts": 240, "dur": 10, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "stray_kernel_time", "ph": "X", "ts": 500, "dur": 1, "args": {}},  # in no run
    ]
    path.write_text(json.dumps(events))
    tracer = Tracer("r", L.FRAMEWORK)
    spans = profile_spans(read_profile(path), tracer, [(1, 1_000, 21_000), (2, 30_000, 55_000)], profiling_start_ns=0)
    assert [(s.parent_id, s.name, s.start_ns, s.end_ns) for s in spans] == [
        (1, "model_run", 6_000, 16_000),  # 10 µs centred in a 20 µs span
        (1, "Gemm", 8_000, 12_000),
        (2, "model_run", 30_000, 55_000),  # 50 µs scaled down to the 25 µs span
        (2, "Conv", 50_000, 55_000),
    ]
    assert spans[1].attributes["node"] == "g" and spans[1].attributes["input_shapes"] == ""
