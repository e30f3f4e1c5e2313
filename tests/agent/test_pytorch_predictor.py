"""The PyTorch predictor with real torch: discovery, the committed TorchScript digits model, errors, end to end,
and its framework-level profiler (torch.profiler operators as FRAMEWORK spans inside each query)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlmodelscope.agent.profilers.pytorch import PREDICT_EVENT, PyTorchProfiler, TorchEvent, TorchProfile, profile_spans
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import DeviceUnavailableError, EvaluationError, ModelLoadError
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.predictor import Predictor, PredictorOptions, available_predictors, load_predictor_class
from mlmodelscope.core.tracing.chrome import to_chrome_trace, validate_chrome_trace
from mlmodelscope.core.tracing.framework import FrameworkProfiler, model_span_times
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
from tests.support.digits_exports import torch_export_digits
from tests.support.paths import ASSETS

torch = pytest.importorskip("torch")

DIGITS = ASSETS / "artifacts" / "digits"
TORCHSCRIPT = DIGITS / "digits_cnn.torchscript.pt"
ONNX = DIGITS / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


def _predictor(model: Model, **options: object) -> Predictor:
    return load_predictor_class("pytorch")(model.spec, PredictorOptions(**options))  # type: ignore[arg-type]


def test_pytorch_is_discovered_by_entry_point() -> None:
    assert "pytorch" in available_predictors()
    cls = load_predictor_class("pytorch")
    assert cls.name == "pytorch"
    assert cls.library_version() == torch.__version__.split("+")[0]
    assert "+" not in cls.library_version()


def test_registry_picks_the_torchscript_artifact_for_pytorch() -> None:
    resolution = load_registry([ASSETS]).resolve("digits-cnn", "pytorch")
    assert resolution.artifact.format == "torchscript"
    assert resolution.artifact.uri.endswith("digits_cnn.torchscript.pt")


def test_torchscript_agrees_with_the_onnx_model(model: Model, digits_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    """The same trained weights: logits within 1e-4 of ONNX Runtime and the same top-1 (445/450)."""
    x, labels = digits_test_split
    with _predictor(model) as pytorch:
        pytorch.load(TORCHSCRIPT)
        torch_logits = pytorch.predict([x])[0]
        # Batch size does not change the answer.
        single = np.concatenate([pytorch.predict([x[i : i + 1]])[0] for i in range(9)])
        np.testing.assert_allclose(single, torch_logits[:9], atol=1e-5)
    with load_predictor_class("onnxruntime")(model.spec, PredictorOptions()) as onnx:
        onnx.load(ONNX)
        onnx_logits = onnx.predict([x])[0]
    np.testing.assert_allclose(torch_logits, onnx_logits, atol=1e-4, rtol=0)
    torch_top1 = np.argmax(torch_logits, axis=1)
    np.testing.assert_array_equal(torch_top1, np.argmax(onnx_logits, axis=1))
    assert int(np.sum(torch_top1 == labels)) == 445


def test_torch_export_archives_load_too(model: Model, tmp_path: Path) -> None:
    """A torch.export archive is recognised by its members and runs with a dynamic batch."""
    path = torch_export_digits(tmp_path / "digits.pt2")
    x = np.random.default_rng(3).random((5, 1, 8, 8), dtype=np.float32)
    with _predictor(model) as exported, _predictor(model) as reference:
        exported.load(path)
        reference.load(TORCHSCRIPT)
        np.testing.assert_allclose(exported.predict([x])[0], reference.predict([x])[0], atol=1e-5)


@pytest.mark.parametrize("content", [b"this is not a zip archive", None])
def test_bad_artifact_is_a_model_load_error(model: Model, tmp_path: Path, content: bytes | None) -> None:
    broken = tmp_path / "broken.pt"
    if content is None:  # a zip, but not a model
        with zipfile.ZipFile(broken, "w") as archive:
            archive.writestr("hello.txt", "hi")
    else:
        broken.write_bytes(content)
    with pytest.raises(ModelLoadError, match="could not load") as info:
        _predictor(model).load(broken)
    assert str(broken) in info.value.message
    assert info.value.hint


def test_damaged_torchscript_is_a_model_load_error(model: Model, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(TORCHSCRIPT) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(("/data.pkl", "/constants.pkl")):
                target.writestr(info, source.read(info))
        target.writestr("archive/constants.pkl", b"garbage")
    with pytest.raises(ModelLoadError, match="could not load") as info:
        _predictor(model).load(damaged)
    assert str(damaged) in info.value.message


def test_gpu_without_cuda_is_a_clear_error(model: Model) -> None:
    if torch.cuda.is_available():
        pytest.skip("this torch build has CUDA")
    with pytest.raises(DeviceUnavailableError, match="gpu") as info:
        _predictor(model, device="gpu").load(TORCHSCRIPT)
    assert "CUDA build of torch" in info.value.hint


@pytest.mark.slow
def test_evaluation_end_to_end(scratch_assets: Path, tmp_path: Path) -> None:
    """A model whose own framework is pytorch: accuracy as recorded and a valid short performance run."""
    manifest = scratch_assets / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["spec"]["framework"] = {"name": "pytorch", "version": ">=2.1"}
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    request = RunRequest(
        model="digits-cnn",
        framework="pytorch",
        dataset=None,
        # 64 queries: LoadGen's early stopping needs them for a VALID run, however few fit in 0.2 s on this CPU.
        settings=EvaluationSettings(mode="both", min_duration_s=0.2, min_query_count=64, warmup_queries=2),
        output_dir=tmp_path / "out",
    )
    result = execute_run(load_registry([scratch_assets]), ArtifactStore(tmp_path / "cache"), request)
    assert result.framework.name == "pytorch"
    assert result.accuracy is not None
    assert result.accuracy.count == 450
    assert result.accuracy.top1 == pytest.approx(0.9889, abs=1e-4)
    assert result.accuracy.top5 == 1.0
    assert result.performance is not None
    assert result.performance.verdict.valid, result.performance.verdict


# --- framework-level profiling ------------------------------------------------------------------------------------


def _run_queries(tracer: Tracer, predictor: Predictor, count: int, batch: int = 4) -> None:
    """What the LoadGen SUT does at MODEL level: time the call, append one raw row."""
    x = np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)
    append, clock, predict = tracer.model_rows.append, time.perf_counter_ns, predictor.predict
    for q in range(count):
        start = clock()
        predict([x])
        append((q * batch, batch, start, clock()))


def _by_parent(spans: list[Span]) -> dict[int, list[Span]]:
    grouped: dict[int, list[Span]] = {}
    for span in spans:
        grouped.setdefault(span.parent_id, []).append(span)
    return grouped


def test_profiled_export_program_gives_nested_aten_ops_inside_each_query(model: Model, tmp_path: Path) -> None:
    path = torch_export_digits(tmp_path / "digits.pt2")
    with _predictor(model, profile_dir=tmp_path / "profile", intra_op_threads=1) as predictor:
        predictor.load(path)
        profiler = predictor.framework_profiler()
        assert isinstance(profiler, PyTorchProfiler)
        assert isinstance(profiler, FrameworkProfiler)  # the protocol is structural
        for _ in range(3):  # warm-up: marked, but before start(), so not profiled
            predictor.predict([np.zeros((4, 1, 8, 8), np.float32)])
        tracer = Tracer("torch-run", TraceLevel.FRAMEWORK)
        queries = 5
        with tracer.span("evaluate", TraceLevel.APPLICATION) as root:
            profiler.start()
            _run_queries(tracer, predictor, queries)
            profiler.stop()
    model_spans = tracer.materialize_model_spans(parent_id=root)
    assert len(model_spans) == queries
    framework = profiler.spans(tracer, model_span_times(model_spans))
    tracer.extend(framework)

    by_parent = _by_parent(framework)
    assert set(by_parent) == {m.span_id for m in model_spans}
    for query in model_spans:
        children = by_parent[query.span_id]
        assert [c.name for c in children].count(PREDICT_EVENT) == 1
        for child in children:
            assert child.level is TraceLevel.FRAMEWORK
            assert child.attributes["framework"] == "pytorch"
            assert query.start_ns <= child.start_ns <= child.end_ns <= query.end_ns, (query, child)
        ops = [c for c in children if c.attributes["kind"] == "op"]
        top = [c for c in ops if c.attributes["depth"] == 0]
        # The digits network as the model called it, in order (each op once per query): PyTorch's names, and the
        # canonical op types (core.tracing.op_types) every framework shares.
        assert [c.name for c in top if c.name in ("aten::conv2d", "aten::max_pool2d", "aten::linear")] == [
            "aten::conv2d",
            "aten::max_pool2d",
            "aten::conv2d",
            "aten::linear",
        ]
        assert [c.attributes["op_type"] for c in top if c.attributes["op_type"] in ("Conv2D", "MaxPool", "MatMul")] == [
            "Conv2D",
            "MaxPool",
            "Conv2D",
            "MatMul",
        ]
        assert all(c.attributes["framework_op"] == c.name for c in ops)
        conv = next(c for c in ops if c.name == "aten::conv2d")
        assert (conv.attributes["op_type"], conv.attributes["framework_op"]) == ("Conv2D", "aten::conv2d")
        assert conv.attributes["input_shapes"] == "float[4,1,8,8] float[16,1,3,3] float[16]"
        # aten::conv2d calls aten::convolution: one level deeper, inside it.
        inner = next(c for c in ops if c.name == "aten::convolution" and c.start_ns >= conv.start_ns)
        assert inner.attributes["depth"] == 1
        assert conv.start_ns <= inner.start_ns <= inner.end_ns <= conv.end_ns
        starts = [c.start_ns for c in ops]
        assert starts == sorted(starts)


def test_no_marker_and_no_profiler_without_profile_dir(model: Model) -> None:
    """Untraced, predict is the bare closure: an outside profiler sees no mlmodelscope::predict event."""
    with _predictor(model) as predictor:
        predictor.load(TORCHSCRIPT)
        assert predictor.framework_profiler() is None
        outside = PyTorchProfiler(record_shapes=False)
        outside.start()
        predictor.predict([np.zeros((1, 1, 8, 8), np.float32)])
        outside.stop()
    assert outside.profile is not None
    assert outside.profile.calls == []
    assert any("convolution" in e.name for e in outside.profile.events)  # it did profile the call


def test_profile_that_does_not_match_the_model_spans_is_an_error() -> None:
    calls = [TorchEvent(PREDICT_EVENT, 1_000 * k, 1_000 * k + 500, "call") for k in range(3)]
    profile = TorchProfile(calls=calls, events=[])
    tracer = Tracer("r", TraceLevel.FRAMEWORK)
    with pytest.raises(EvaluationError, match="3 'mlmodelscope::predict' calls but 2 model spans") as info:
        profile_spans(profile, tracer, [(1, 0, 10), (2, 20, 30)])
    assert info.value.hint
    assert profile_spans(profile, Tracer("off", TraceLevel.MODEL), [(1, 0, 10)]) == []  # FRAMEWORK disabled


def test_profiler_used_out_of_order_is_a_clear_error() -> None:
    profiler = PyTorchProfiler()
    with pytest.raises(EvaluationError, match="without being started"):
        profiler.stop()
    with pytest.raises(EvaluationError, match="no profile"):
        profiler.spans(Tracer("r", TraceLevel.FRAMEWORK), [])


def test_calls_in_another_clock_are_aligned_and_clipped_into_their_span() -> None:
    """Kineto's clock is arbitrary: calls land inside their spans by the median offset, ops keep their offsets."""
    base = 7_000_000_000_000  # far from the tracer's perf_counter_ns values
    calls = [TorchEvent(PREDICT_EVENT, base + k * 10_000, base + k * 10_000 + 4_000, "call") for k in range(3)]
    ops = [
        TorchEvent("aten::linear", base + k * 10_000 + 1_000, base + k * 10_000 + 3_000, "op", 1, "float[1,4]")
        for k in range(3)
    ]
    # the last call's op runs past its span once aligned: it must be clipped
    ops.append(TorchEvent("aten::relu", base + 20_000 + 3_500, base + 20_000 + 9_000, "op", 1))
    profile = TorchProfile(calls=calls, events=sorted(ops, key=lambda e: (e.start_ns, -e.end_ns)))
    tracer = Tracer("r", TraceLevel.FRAMEWORK)
    model_spans = [(11, 100_000, 104_100), (12, 110_000, 114_100), (13, 120_000, 124_000)]
    spans = profile_spans(profile, tracer, model_spans)
    by_parent = _by_parent(spans)
    for parent_id, start_ns, end_ns in model_spans:
        children = by_parent[parent_id]
        call = next(c for c in children if c.name == PREDICT_EVENT)
        assert (call.start_ns, call.end_ns) == (start_ns, start_ns + 4_000)
        linear = next(c for c in children if c.name == "aten::linear")
        assert (linear.start_ns, linear.end_ns) == (start_ns + 1_000, start_ns + 3_000)
        assert linear.attributes["input_shapes"] == "float[1,4]"
        for child in children:
            assert start_ns <= child.start_ns <= child.end_ns <= end_ns
    relu = next(s for s in spans if s.name == "aten::relu")
    assert (relu.parent_id, relu.start_ns, relu.end_ns) == (13, 123_500, 124_000)


@pytest.mark.slow
def test_framework_trace_of_an_evaluation_has_aten_ops_inside_every_query(tmp_path: Path) -> None:
    """A real evaluation at FRAMEWORK level: every model span of the profiled window has convolution children."""
    request = RunRequest(
        model="digits-cnn",
        framework="pytorch",
        dataset=None,
        settings=EvaluationSettings(
            mode="both", min_duration_s=0.2, min_query_count=50, warmup_queries=2, framework_trace_max_calls=40
        ),
        output_dir=tmp_path / "out",
        intra_op_threads=1,
    )
    tracer = Tracer("torch-eval", TraceLevel.FRAMEWORK)
    result = execute_run(load_registry([ASSETS]), ArtifactStore(tmp_path / "cache"), request, tracer=tracer)
    assert result.performance is not None and result.accuracy is not None
    spans = tracer.spans
    phases = {s.name: s for s in spans if s.level is TraceLevel.APPLICATION}
    run = phases["performance_run"]
    queries = [s for s in spans if s.level is TraceLevel.MODEL and s.parent_id == run.span_id]
    assert len(queries) == result.performance.queries >= 50
    accuracy_queries = {s.span_id for s in spans if s.parent_id == phases["accuracy_run"].span_id}
    by_parent = _by_parent([s for s in spans if s.level is TraceLevel.FRAMEWORK])
    assert not accuracy_queries & set(by_parent)  # only the performance run is profiled
    # The profiler covers the first framework_trace_max_calls (40) of the >= 50 calls; the queries after that
    # window carry no operator spans by design.
    trace = result.framework_trace
    assert trace is not None and trace.status == "complete", trace
    assert trace.window_calls == trace.profiled_calls == 40
    profiled = sorted(queries, key=lambda q: q.start_ns)[: trace.window_calls]
    assert set(by_parent) == {q.span_id for q in profiled}
    for query in profiled:
        children = by_parent[query.span_id]
        # TorchScript calls aten::_convolution directly (inside its `forward` function); eager and torch.export
        # call aten::conv2d: both are the canonical Conv2D at depth 0, the ops the model called.
        convolutions = [c for c in children if c.attributes.get("op_type") == "Conv2D" and c.attributes["depth"] == 0]
        assert len(convolutions) == 2, [(c.name, c.attributes.get("depth")) for c in children]
        assert [c.name for c in children if c.attributes["kind"] == "function"] == ["forward"]
        assert convolutions[0].attributes["input_shapes"].startswith("float[1,1,8,8]")
        for child in children:
            assert query.start_ns <= child.start_ns <= child.end_ns <= query.end_ns, (query, child)
    doc: dict[str, Any] = to_chrome_trace(spans, epoch_offset_ns=tracer.epoch_offset_ns, process_name="pytorch")
    validate_chrome_trace(doc)
