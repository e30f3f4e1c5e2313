"""FRAMEWORK tracing profiles a bounded window of calls, for runs of any length, and never fails an evaluation.

The profiler covers the first ``framework_trace_max_calls`` calls of the performance run and is stopped after
them (``evaluation.profile_window``); later model spans carry no operator spans. Any profiler problem keeps the
result and marks ``result.framework_trace`` partial or failed with the reason. MXNet's window runs in
``.venv-mxnet`` (tests/agent/test_mxnet_predictor.py's delegate), the other three frameworks here.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from mlmodelscope.agent.profilers.onnxruntime import ORT_MAX_EVENTS, OnnxRuntimeProfiler, profile_spans
from mlmodelscope.agent.profilers.onnxruntime_json import OrtEvent, OrtProfile, read_profile
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.profile_window import ProfileWindow
from mlmodelscope.core.evaluation.results import FrameworkTrace, RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
from tests.support.mxnet import run_mxnet, with_mxnet_artifact
from tests.support.paths import ASSETS

DIGITS_ONNX = ASSETS / "artifacts" / "digits" / "digits_cnn.onnx"
CHAIN_NODES = 24


def _chain_model(path: Path) -> Path:
    """A digits-shaped ONNX model (8x8 image -> 10 logits) whose every run executes ~26 tiny nodes.

    ORT records one event per node, one ``model_run`` and one ``SequentialExecutor::Execute`` per run, so a
    run costs ~28 of ORT's 1,000,000 profiling events: about 36,000 quick runs fill them.
    """
    onnx = pytest.importorskip("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "weights"], ["h0"]),
    ]
    for i in range(CHAIN_NODES):
        nodes.append(helper.make_node("Relu" if i % 2 == 0 else "Neg", [f"h{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Identity", [f"h{CHAIN_NODES}"], ["logits"]))
    weights = numpy_helper.from_array(np.full((64, 10), 0.01, np.float32), "weights")
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _with_onnx_artifact(assets: Path, model: Path) -> None:
    """The scratch digits-cnn manifest, its ONNX artifact replaced by ``model``."""
    target = assets / "artifacts" / "digits" / model.name
    shutil.copyfile(model, target)
    manifest = assets / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    for artifact in document["spec"]["artifacts"]:
        if artifact["format"] == "onnx":
            artifact["uri"] = f"../artifacts/digits/{model.name}"
            artifact["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))


def _evaluate(assets: Path, tmp_path: Path, framework: str, **settings: Any) -> tuple[RunResult, Tracer]:
    tracer = Tracer(f"{framework}-window", TraceLevel.FRAMEWORK)
    values: dict[str, Any] = {"mode": "performance", "min_duration_s": 0.0, "warmup_queries": 2, **settings}
    request = RunRequest(
        model="digits-cnn",
        framework=framework,
        dataset=None,
        settings=EvaluationSettings(**values),
        output_dir=tmp_path / "out",
    )
    result = execute_run(load_registry([assets]), ArtifactStore(tmp_path / "cache"), request, tracer=tracer)
    return result, tracer


def _performance_children(tracer: Tracer) -> tuple[list[Span], dict[int, list[Span]]]:
    """The performance run's model spans in call order, and the FRAMEWORK spans under each (checked inside it)."""
    spans = tracer.spans
    run = next(s for s in spans if s.name == "performance_run")
    model = sorted((s for s in spans if s.name == "predict" and s.parent_id == run.span_id), key=lambda s: s.start_ns)
    by_id = {m.span_id: m for m in model}
    children: dict[int, list[Span]] = defaultdict(list)
    for span in spans:
        if span.level is TraceLevel.FRAMEWORK:
            parent = by_id[span.parent_id]  # only under the performance run's model spans
            assert parent.start_ns <= span.start_ns <= span.end_ns <= parent.end_ns, (parent, span)
            children[span.parent_id].append(span)
    return model, children


def _assert_window(model: list[Span], children: dict[int, list[Span]], window: int) -> None:
    """The first ``window`` calls have operator spans, every later one has none."""
    assert len(model) > window
    covered = [bool(children.get(m.span_id)) for m in model]
    assert covered == [True] * window + [False] * (len(model) - window)


# --- ONNX Runtime: a run longer than ORT's event limit ------------------------------------------------------


@pytest.mark.slow
def test_a_run_past_onnx_runtimes_event_limit_keeps_per_query_attribution(scratch_assets: Path, tmp_path: Path) -> None:
    """ORT keeps at most a million profiling events per session: a run of 40,000 calls of a 26-node model
    (~1.1 M events) once failed the whole evaluation ("... session runs in the traced window but ... model spans
    were recorded"). Now ORT profiles the first 1,000 calls (the default window) and is stopped there."""
    _with_onnx_artifact(scratch_assets, _chain_model(tmp_path / "chain.onnx"))
    queries = 40_000
    assert queries * (CHAIN_NODES + 3) > ORT_MAX_EVENTS  # the whole run would not fit into ORT's profile
    result, tracer = _evaluate(scratch_assets, tmp_path, "onnxruntime", min_query_count=queries)

    assert result.performance is not None and result.performance.queries >= queries
    assert result.requested_settings.framework_trace_max_calls == 1000
    assert result.framework_trace == FrameworkTrace(
        status="complete", max_calls=1000, window_calls=1000, profiled_calls=1000, reason=None
    )
    model, children = _performance_children(tracer)
    _assert_window(model, children, 1000)
    for query in model[:1000]:
        kids = children[query.span_id]
        assert [k.name for k in kids].count("model_run") == 1
        nodes = [k for k in kids if k.attributes["kind"] == "node"]
        assert len(nodes) >= CHAIN_NODES  # every Relu/Neg of the chain, in this query
        starts = [k.start_ns for k in nodes]
        assert starts == sorted(starts)
    profile_path = next((tmp_path / "out" / "framework-profile").glob("onnxruntime_profile*.json"))
    profile = read_profile(profile_path)
    assert profile.event_count < ORT_MAX_EVENTS  # ORT was stopped long before its limit
    assert len(profile.runs) < queries // 4  # the window's runs (and warm-up): not the whole run


def test_runs_onnx_runtime_dropped_at_its_event_limit_are_partial_with_the_reason(tmp_path: Path) -> None:
    """A window larger than ORT's event budget: the runs ORT kept (the first ones) get their spans."""
    runs = [OrtEvent(cat="Session", name="model_run", ts=100 * k, dur=50) for k in range(3)]
    nodes = [
        OrtEvent(cat="Node", name=f"n{k}_kernel_time", ts=100 * k + 10, dur=5, args={"op_name": "Relu"})
        for k in range(3)
    ]
    full = OrtProfile(runs=runs, nodes=nodes, event_count=ORT_MAX_EVENTS)
    model = [(10 + k, 1_000 * k, 1_000 * k + 900) for k in range(5)]  # 5 calls, ORT kept 3 runs
    spans = profile_spans(full, Tracer("r", TraceLevel.FRAMEWORK), model, profiling_start_ns=0)
    assert sorted({s.parent_id for s in spans}) == [10, 11, 12]
    # The same shortfall without the limit reached is a mismatch, not a guess.
    with pytest.raises(EvaluationError, match="3 session runs in the traced window but 5 model spans"):
        profile_spans(
            full.model_copy(update={"event_count": 6}), Tracer("r", TraceLevel.FRAMEWORK), model, profiling_start_ns=0
        )
    # Calls whose model spans were discarded come first: the kept runs after them are attributed.
    spans = profile_spans(full, Tracer("r", TraceLevel.FRAMEWORK), model[:3], profiling_start_ns=0, first_call=2)
    assert sorted({s.parent_id for s in spans}) == [10]


# --- the window with real ONNX Runtime sessions (cheap) ----------------------------------------------------


def _ort_session(tmp_path: Path) -> tuple[OnnxRuntimeProfiler, Any]:
    ort = pytest.importorskip("onnxruntime")
    profiler = OnnxRuntimeProfiler(tmp_path / "profiles")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    profiler.configure(options)
    session = ort.InferenceSession(str(DIGITS_ONNX), sess_options=options, providers=["CPUExecutionProvider"])
    profiler.attach(session)
    return profiler, session


def _sut_calls(tracer: Tracer, session: Any, count: int) -> None:
    """What the LoadGen SUT does per call at MODEL level: time it, then append one row to the tracer's rows."""
    inputs = {"input": np.zeros((1, 1, 8, 8), np.float32)}
    for q in range(count):
        start = time.perf_counter_ns()
        session.run(["logits"], inputs)
        tracer.model_rows.append((q, 1, start, time.perf_counter_ns()))


def test_the_window_stops_the_profiler_after_its_last_call(tmp_path: Path) -> None:
    profiler, session = _ort_session(tmp_path)
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    window = ProfileWindow(profiler, tracer, max_calls=4)
    window.open()
    _sut_calls(tracer, session, 4)
    assert profiler.profile_path is not None  # ORT's end_profiling ran right after the 4th call
    _sut_calls(tracer, session, 6)  # not profiled any more
    window.close()
    assert type(tracer.model_rows) is list and len(tracer.model_rows) == 10  # the plain list, every row kept
    model = tracer.materialize_model_spans()
    trace = window.attribute(model)
    assert trace == FrameworkTrace(status="complete", max_calls=4, window_calls=4, profiled_calls=4)
    covered = [any(s.parent_id == m.span_id for s in tracer.spans if s.level is TraceLevel.FRAMEWORK) for m in model]
    assert covered == [True] * 4 + [False] * 6
    assert len(read_profile(profiler.profile_path).runs) == 4


def test_calls_whose_rows_were_discarded_are_skipped_and_the_trace_is_partial(tmp_path: Path) -> None:
    """The driver repeats a LoadGen run that ran out of queries and deletes its rows: the profile's first calls
    then have no model span, and the later ones must still be paired with their own."""
    profiler, session = _ort_session(tmp_path)
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    window = ProfileWindow(profiler, tracer, max_calls=5)
    window.open()
    _sut_calls(tracer, session, 3)
    del tracer.model_rows[:]  # what _Sut.discard_rows does
    _sut_calls(tracer, session, 4)
    window.close()
    model = tracer.materialize_model_spans()
    trace = window.attribute(model)
    assert (trace.status, trace.window_calls, trace.profiled_calls) == ("partial", 5, 2)
    assert (
        trace.reason is not None
        and "first 3 profiled calls belonged to a LoadGen run that was repeated" in trace.reason
    )
    framework = [s for s in tracer.spans if s.level is TraceLevel.FRAMEWORK]
    assert {s.parent_id for s in framework} == {model[0].span_id, model[1].span_id}
    for span in framework:
        parent = next(m for m in model if m.span_id == span.parent_id)
        assert parent.start_ns <= span.start_ns <= span.end_ns <= parent.end_ns


def test_runs_past_onnx_runtimes_limit_make_a_partial_trace_that_names_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT stops recording at its event limit: the calls it kept keep their spans, the result says why the others
    have none. (The limit is lowered to this profile's size instead of making a million events.)"""
    import mlmodelscope.agent.profilers.onnxruntime as ort_profiler

    profiler, session = _ort_session(tmp_path)
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    window = ProfileWindow(profiler, tracer, max_calls=100)
    window.open()
    _sut_calls(tracer, session, 4)
    for q in range(2):  # two more calls whose events ORT dropped: rows but no session runs in the profile
        now = time.perf_counter_ns()
        tracer.model_rows.append((4 + q, 1, now, now + 1_000))
    window.close()
    assert profiler.profile_path is not None
    monkeypatch.setattr(ort_profiler, "ORT_MAX_EVENTS", read_profile(profiler.profile_path).event_count)
    trace = window.attribute(tracer.materialize_model_spans())
    assert (trace.status, trace.window_calls, trace.profiled_calls) == ("partial", 6, 4)
    assert trace.reason is not None and "kept 4 of the 6 runs of the window" in trace.reason
    assert "--framework-trace-calls" in trace.reason


def test_a_profile_that_does_not_match_is_a_failed_trace_not_an_error(tmp_path: Path) -> None:
    profiler, session = _ort_session(tmp_path)
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    window = ProfileWindow(profiler, tracer, max_calls=100)
    window.open()
    _sut_calls(tracer, session, 3)
    session.run(["logits"], {"input": np.zeros((1, 1, 8, 8), np.float32)})  # a call no model span knows of
    window.close()
    trace = window.attribute(tracer.materialize_model_spans())
    assert (trace.status, trace.window_calls, trace.profiled_calls) == ("failed", 3, 0)
    assert trace.reason is not None and "4 session runs in the traced window but 3 model spans" in trace.reason
    assert not [s for s in tracer.spans if s.level is TraceLevel.FRAMEWORK]


def test_an_unreadable_profile_is_a_failed_trace_with_the_reason(tmp_path: Path) -> None:
    profiler, session = _ort_session(tmp_path)
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    window = ProfileWindow(profiler, tracer, max_calls=2)
    window.open()
    _sut_calls(tracer, session, 2)
    window.close()
    assert profiler.profile_path is not None
    profiler.profile_path.write_text("[{")  # a profile cut short
    trace = window.attribute(tracer.materialize_model_spans())
    assert trace.status == "failed" and trace.profiled_calls == 0
    assert trace.reason is not None and "it is not JSON" in trace.reason and str(profiler.profile_path) in trace.reason


def test_a_profiler_that_cannot_start_or_stop_keeps_the_run_going(tmp_path: Path) -> None:
    # ORT session created without profiling: end_profiling() writes nothing, so stop() raises.
    ort = pytest.importorskip("onnxruntime")
    profiler = OnnxRuntimeProfiler(tmp_path)
    profiler.attach(ort.InferenceSession(str(DIGITS_ONNX), providers=["CPUExecutionProvider"]))
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    window = ProfileWindow(profiler, tracer, max_calls=2)
    window.open()
    _sut_calls(tracer, profiler._session, 3)  # the 2nd call's stop() raises inside append(): nothing escapes
    window.close()
    assert len(tracer.model_rows) == 3
    trace = window.attribute(tracer.materialize_model_spans())
    assert trace.status == "failed" and trace.reason is not None
    assert "failed at stop" in trace.reason and "profiling was not enabled" in trace.reason


# --- the window in real evaluations of every framework -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["onnxruntime", "pytorch", "tensorflow"])
def test_a_declared_window_of_calls_is_profiled_in_a_real_evaluation(
    framework: str, scratch_assets: Path, tmp_path: Path
) -> None:
    pytest.importorskip({"onnxruntime": "onnxruntime", "pytorch": "torch", "tensorflow": "tensorflow"}[framework])
    result, tracer = _evaluate(scratch_assets, tmp_path, framework, min_query_count=40, framework_trace_max_calls=6)
    assert result.framework_trace == FrameworkTrace(
        status="complete", max_calls=6, window_calls=6, profiled_calls=6, reason=None
    )
    model, children = _performance_children(tracer)
    _assert_window(model, children, 6)
    assert result.performance is not None and len(model) == result.performance.queries
    kinds = {str(k.attributes["kind"]) for kids in children.values() for k in kids}
    assert kinds & {"node", "op"}, kinds  # operators, not just the call markers


@pytest.mark.slow
def test_a_profiler_that_cannot_start_keeps_the_result_and_says_why(scratch_assets: Path, tmp_path: Path) -> None:
    """TensorFlow runs one profiling session per process: with another one active, the evaluation still
    succeeds and its result says why there are no operator spans."""
    tf = pytest.importorskip("tensorflow")
    tf.profiler.experimental.start(str(tmp_path / "other-session"))
    try:
        result, tracer = _evaluate(scratch_assets, tmp_path, "tensorflow", min_query_count=20)
    finally:
        tf.profiler.experimental.stop()
    assert result.performance is not None and result.performance.queries >= 20
    trace = result.framework_trace
    assert trace is not None and (trace.status, trace.profiled_calls, trace.window_calls) == ("failed", 0, 0)
    assert trace.reason is not None and "failed at start" in trace.reason and "could not start" in trace.reason
    assert not [s for s in tracer.spans if s.level is TraceLevel.FRAMEWORK]
    assert [s for s in tracer.spans if s.level is TraceLevel.MODEL]  # the model spans are all there


def test_below_framework_level_there_is_no_window_and_no_framework_trace(tmp_path: Path) -> None:
    """Disabled levels cost ~0: at MODEL level the predictor has no profiler, so no counting rows either."""
    tracer = Tracer("model-level", TraceLevel.MODEL)
    rows = tracer.model_rows
    request = RunRequest(
        model="digits-cnn",
        framework="onnxruntime",
        dataset=None,
        settings=EvaluationSettings(mode="performance", min_duration_s=0.0, min_query_count=20, warmup_queries=2),
        output_dir=tmp_path / "out",
    )
    result = execute_run(load_registry([ASSETS]), ArtifactStore(tmp_path / "cache"), request, tracer=tracer)
    assert result.framework_trace is None
    assert tracer.model_rows is rows and type(rows) is list
    assert not (tmp_path / "out" / "framework-profile").exists()


def test_a_window_needs_at_least_one_call() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        EvaluationSettings(framework_trace_max_calls=0)
    assert EvaluationSettings().framework_trace_max_calls == 1000
    tracer = Tracer("w", TraceLevel.FRAMEWORK)
    with pytest.raises(ValueError, match="max_calls >= 1"):
        ProfileWindow(OnnxRuntimeProfiler(Path("unused")), tracer, max_calls=0)


# --- MXNet, in its own environment ---------------------------------------------------------------------------

_MXNET_WINDOW = """
import json, sys
from pathlib import Path
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
assets, out = Path(sys.argv[1]), Path(sys.argv[2])
tracer = Tracer("mxnet-window", TraceLevel.FRAMEWORK)
settings = EvaluationSettings(
    mode="performance", min_duration_s=0.0, min_query_count=30, warmup_queries=2, framework_trace_max_calls=5
)
request = RunRequest(model="digits-cnn", framework="mxnet", dataset=None, settings=settings, output_dir=out)
result = execute_run(load_registry([assets]), ArtifactStore(out / "cache"), request, tracer=tracer)
spans = tracer.spans
run = next(s for s in spans if s.name == "performance_run")
model = sorted((s for s in spans if s.name == "predict" and s.parent_id == run.span_id), key=lambda s: s.start_ns)
by_id = {m.span_id: m for m in model}
children = {m.span_id: 0 for m in model}
for s in spans:
    if s.level is TraceLevel.FRAMEWORK:
        parent = by_id[s.parent_id]
        assert parent.start_ns <= s.start_ns <= s.end_ns <= parent.end_ns, (parent, s)
        children[s.parent_id] += 1
print(json.dumps({
    "trace": result.framework_trace.model_dump(mode="json"),
    "children": [children[m.span_id] for m in model],
    "queries": result.performance.queries,
}))
"""


@pytest.mark.mxnet
@pytest.mark.slow
def test_mxnet_profiles_the_declared_window_of_calls(digits_archive: Path, tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(ASSETS, assets, ignore=shutil.ignore_patterns("examples"))
    with_mxnet_artifact(assets, digits_archive)
    reply = run_mxnet(_MXNET_WINDOW, str(assets), str(tmp_path / "out"))
    assert reply["trace"] == {
        "status": "complete",
        "max_calls": 5,
        "window_calls": 5,
        "profiled_calls": 5,
        "reason": None,
    }
    children = reply["children"]
    assert len(children) == reply["queries"] >= 30
    assert all(count > 0 for count in children[:5]) and not any(children[5:]), children


# --- where users see it: the result file, the CLI's table, the collector's API and run page -------------------


def _traced_result(tmp_path: Path) -> RunResult:
    """A real FRAMEWORK-level result (a 3-call window), and a copy whose trace a profiler problem made partial."""
    result, _ = _evaluate(ASSETS, tmp_path, "onnxruntime", min_query_count=10, framework_trace_max_calls=3)
    assert result.framework_trace == FrameworkTrace(status="complete", max_calls=3, window_calls=3, profiled_calls=3)
    return result


@pytest.mark.slow
def test_the_cli_table_shows_the_framework_trace_and_its_reason_literally(tmp_path: Path) -> None:
    from rich.console import Console

    from mlmodelscope.cli.render import result_table

    result = _traced_result(tmp_path)
    partial = result.model_copy(
        update={
            "framework_trace": FrameworkTrace(
                status="partial", max_calls=5, window_calls=5, profiled_calls=2, reason="kept [draft] runs only"
            )
        }
    )
    for shown, expected in (
        (result, "complete: 3 of 3 profiled calls have operator spans (window: the first 3 calls)"),
        (partial, "partial: 2 of 5 profiled calls have operator spans (window: the first 5 calls); kept [draft] runs"),
    ):
        console = Console(record=True, width=300, color_system=None)
        console.print(result_table(shown))
        text = console.export_text()
        assert "framework trace" in text and expected in text, text
    # The result file carries it too, and reads back.
    path = tmp_path / "result.json"
    partial.write(path)
    assert RunResult.model_validate_json(path.read_text()).framework_trace == partial.framework_trace


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_collector_stores_and_shows_the_framework_trace(sqlite_url: str, tmp_path: Path) -> None:
    from tests.support import collector as fixtures

    result = _traced_result(tmp_path)
    failed = result.model_copy(
        update={
            "framework_trace": FrameworkTrace(
                status="failed", max_calls=1000, window_calls=0, profiled_calls=0, reason="could not start <x>"
            )
        }
    )
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        for run_id, document in (("ft-ok", result), ("ft-failed", failed)):
            app.runtime.ingestor.ingest(fixtures.run_started(run_id))
            app.runtime.ingestor.ingest(fixtures.run_finished(run_id, span_count=0, query_count=0, result=document))
        stored = (await app.client.get("/api/v1/runs/ft-failed/result")).json()
        assert stored["framework_trace"] == failed.model_dump(mode="json")["framework_trace"]
        page = await app.client.get("/ui/runs/ft-failed")
        assert page.status_code == 200
        assert 'data-status="failed"' in page.text
        assert "failed: 0 of 0 profiled calls have operator spans" in page.text
        assert "could not start &lt;x&gt;" in page.text  # escaped, not markup
        ok = await app.client.get("/ui/runs/ft-ok")
        assert 'data-status="complete"' in ok.text and "3 of 3 profiled calls" in ok.text


@pytest.mark.slow
def test_the_window_is_set_from_the_cli_and_recorded_in_the_result(tmp_path: Path) -> None:
    from tests.support.cli import run_cli
    from tests.support.paths import REPO

    """Through local mode (NATS, collector, an agent): the result the agent publishes keeps the trace."""
    common = ("--cache-dir", str(tmp_path / "cache"), "evaluate", "-m", "digits-cnn", "-f", "onnxruntime")
    bad = run_cli(*common, "--direct", "--framework-trace-calls", "0", cwd=REPO)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout
    assert "--framework-trace-calls must be >= 1 (got 0)" in bad.stderr + bad.stdout
    output = tmp_path / "r.json"
    run = run_cli(
        *common,
        *("--mode", "performance", "--min-duration", "0s", "--min-queries", "20", "--warmup", "2"),
        *("--trace-level", "framework", "--framework-trace-calls", "4", "--output", str(output)),
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    result = RunResult.model_validate_json(output.read_text())
    assert result.requested_settings.framework_trace_max_calls == 4
    assert result.framework_trace == FrameworkTrace(status="complete", max_calls=4, window_calls=4, profiled_calls=4)
    assert "framework trace" in run.stdout and "complete: 4 of 4 profiled calls" in run.stdout
