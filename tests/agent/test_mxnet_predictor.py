"""The MXNet predictor, profiler and zoo with real MXNet 1.9.1, which runs in its own environment (.venv-mxnet).

MXNet needs numpy < 1.24 and cannot be imported here (the main environment has numpy 2), so every test that runs
MXNet does it in a ``.venv-mxnet`` subprocess: the script asserts what it can there and prints one JSON line back,
and the test asserts on that. What needs the main environment (torch for the trained weights, ONNX Runtime for
the reference logits, the CLI) happens here. The digits artifact is exported from the committed TorchScript
weights by ``scripts/digits_mxnet.py``, exactly as a user would.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlmodelscope.agent.profilers.mxnet import profile_spans
from mlmodelscope.agent.profilers.mxnet_json import MXNetEvent, MXNetProfile, read_profile
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
from tests.support.cli import run_cli
from tests.support.mxnet import export_digits, run_mxnet, with_mxnet_artifact
from tests.support.paths import ASSETS
from tests.support.traces import measured_model_spans, profiled_model_spans

DIGITS = ASSETS / "artifacts" / "digits"
# With MKL-DNN, MXNet fuses Convolution+ReLU and FullyConnected when it binds the graph for the CPU.
DIGITS_OPS = {"_sg_mkldnn_conv", "Pooling", "Flatten", "_sg_mkldnn_fully_connected"}
# Their canonical op types (core.tracing.op_types); MXNet's profile does not say which pooling a Pooling is.
DIGITS_OP_TYPES = {"Conv2D", "Pool", "Flatten", "MatMul"}


@pytest.fixture(scope="module")
def digits_folder(digits_archive: Path) -> Path:
    """The archive unpacked, as the artifact store unpacks an ``archive: true`` artifact."""
    folder = digits_archive.parent / "unpacked"
    with tarfile.open(digits_archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.fixture(scope="module")
def onnx_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits test split (pixels / 16, NCHW), its labels, and the committed ONNX model's logits on it."""
    ort = pytest.importorskip("onnxruntime")
    with np.load(DIGITS / "digits_test.npz") as data:
        images, labels = data["images"], data["labels"]
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2) / np.float32(16.0), dtype=np.float32)
    session = ort.InferenceSession(str(DIGITS / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    path = tmp_path_factory.mktemp("reference") / "onnx.npz"
    np.savez(path, x=x, labels=labels, logits=session.run(["logits"], {"input": x})[0])
    return path


_PREDICTOR = """
import json, sys
from pathlib import Path
import numpy as np
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.predictor import PredictorOptions, load_predictor_class
spec = load_registry([Path("assets")]).model("digits-cnn").spec
def predictor(**options):
    return load_predictor_class("mxnet")(spec, PredictorOptions(**options))
"""


# --- the digits artifact ------------------------------------------------------------------------------------


@pytest.mark.mxnet
def test_digits_export_is_byte_deterministic(digits_archive: Path, torch_weights: Path, tmp_path: Path) -> None:
    again = export_digits(torch_weights, tmp_path)
    assert again.read_bytes() == digits_archive.read_bytes()
    with tarfile.open(digits_archive) as tar:
        members = tar.getmembers()
        assert tar.pax_headers == {}
    assert [m.name for m in members] == ["digits_cnn-0000.params", "digits_cnn-symbol.json"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.isfile() for m in members)


@pytest.mark.mxnet
def test_digits_on_mxnet_agrees_with_the_onnx_model(digits_folder: Path, onnx_reference: Path, tmp_path: Path) -> None:
    """Same trained weights: the same top-1 on the whole test split and softmax within 1e-4 of ONNX Runtime."""
    logits_path = tmp_path / "mxnet.npz"
    script = (
        _PREDICTOR
        + """
folder, reference, out = map(Path, sys.argv[1:4])
p = predictor()
p.load(folder)
with np.load(reference) as data:
    x = data["x"]
whole = p.predict([x])[0]
one_by_one = np.concatenate([p.predict([x[i : i + 1]])[0] for i in range(len(x))])
np.savez(out, whole=whole, one_by_one=one_by_one)
print(json.dumps({"version": p.library_version()}))
"""
    )
    reply = run_mxnet(script, str(digits_folder), str(onnx_reference), str(logits_path))
    assert reply["version"] == "1.9.1"
    with np.load(onnx_reference) as ref, np.load(logits_path) as got:
        onnx_logits, labels, whole, one_by_one = ref["logits"], ref["labels"], got["whole"], got["one_by_one"]
    assert whole.shape == onnx_logits.shape == (450, 10)
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)  # the batch size does not change the answer

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    assert float(np.max(np.abs(softmax(whole) - softmax(onnx_logits)))) <= 1e-4
    np.testing.assert_array_equal(np.argmax(whole, axis=1), np.argmax(onnx_logits, axis=1))
    assert int(np.sum(np.argmax(whole, axis=1) == labels)) == 445


@pytest.mark.mxnet
def test_predict_gives_declared_outputs_at_every_batch_size(digits_folder: Path) -> None:
    script = (
        _PREDICTOR
        + """
p = predictor(intra_op_threads=1)
p.load(Path(sys.argv[1]))
rng = np.random.default_rng(0)
shapes = {}
reference = None
for batch in (1, 3, 16, 3, 1):  # shapes seen before reuse their bound executor
    x = rng.random((batch, 1, 8, 8), dtype=np.float32)
    outputs = p.predict([x])
    shapes[str(batch)] = [[list(o.shape), str(o.dtype)] for o in outputs]
    if batch == 16:
        reference = outputs[0]
        x16 = x
first = p.predict([x16])[0]
x16.setflags(write=False)
read_only = p.predict([x16])[0]
again = p.predict([x16])[0]
assert first is not again  # every call returns fresh arrays
np.testing.assert_array_equal(first, reference)
np.testing.assert_array_equal(read_only, reference)
p.close()
try:
    p.predict([x16])
    closed = "ran"
except RuntimeError as e:
    closed = str(e)
print(json.dumps({"shapes": shapes, "closed": closed}))
"""
    )
    reply = run_mxnet(script, str(digits_folder))
    assert reply["shapes"] == {str(b): [[[b, 10], "float32"]] for b in (1, 3, 16)}
    assert "before load" in reply["closed"]


def _broken_folders(digits_folder: Path, root: Path) -> dict[str, Path]:
    symbol = (digits_folder / "digits_cnn-symbol.json").read_bytes()
    params = (digits_folder / "digits_cnn-0000.params").read_bytes()
    cases: dict[str, tuple[bytes | None, bytes | None]] = {
        "no_params": (symbol, None),
        "corrupt_symbol": (b'{"nodes": [not json', params),
        "corrupt_params": (symbol, b"\x00garbage" * 64),
        "truncated_params": (symbol, params[: len(params) // 2]),
    }
    folders: dict[str, Path] = {}
    for name, (symbol_bytes, params_bytes) in cases.items():
        folder = root / name
        folder.mkdir()
        if symbol_bytes is not None:
            (folder / "m-symbol.json").write_bytes(symbol_bytes)
        if params_bytes is not None:
            (folder / "m-0000.params").write_bytes(params_bytes)
        folders[name] = folder
    two = root / "two_symbols"
    two.mkdir()
    for prefix in ("a", "b"):
        (two / f"{prefix}-symbol.json").write_bytes(symbol)
    (two / "a-0000.params").write_bytes(params)
    folders["two_symbols"] = two
    folders["a_file"] = digits_folder / "digits_cnn-symbol.json"
    return folders


@pytest.mark.mxnet
def test_bad_artifacts_are_clear_model_load_errors(digits_folder: Path, tmp_path: Path) -> None:
    folders = _broken_folders(digits_folder, tmp_path)
    script = (
        _PREDICTOR
        + """
from mlmodelscope.core.errors import MLModelScopeError
outcome = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        predictor().load(Path(path))
        outcome[name] = ["loaded", "", ""]
    except MLModelScopeError as e:
        outcome[name] = [type(e).__name__, e.message, e.hint]
print(json.dumps(outcome))
"""
    )
    outcome = run_mxnet(script, json.dumps({name: str(path) for name, path in folders.items()}))
    for name, path in folders.items():
        kind, message, hint = outcome[name]
        assert kind == "ModelLoadError", (name, kind, message)
        assert "MXNet could not load" in message and str(path) in message, (name, message)
        assert hint, name
    assert "found 1 and 0" in outcome["no_params"][1]
    assert "found 2 and 1" in outcome["two_symbols"][1]
    assert "not a folder" in outcome["a_file"][1] and "archive: true" in outcome["a_file"][2]


@pytest.mark.mxnet
def test_gpu_without_cuda_is_a_device_unavailable_error(digits_folder: Path) -> None:
    script = (
        _PREDICTOR
        + """
from mlmodelscope.core.errors import DeviceUnavailableError
try:
    predictor(device="gpu").load(Path(sys.argv[1]))
    import mxnet  # imported by the predictor already
    print(json.dumps({"gpus": mxnet.context.num_gpus(), "error": None}))
except DeviceUnavailableError as e:
    print(json.dumps({"gpus": 0, "error": [e.message, e.hint]}))
"""
    )
    reply = run_mxnet(script, str(digits_folder))
    if reply["gpus"]:
        pytest.skip("this MXNet build sees a GPU")
    message, hint = reply["error"]
    assert "gpu" in message and "0 GPU" in message
    assert "mxnet-cu" in hint and "--device cpu" in hint


@pytest.mark.mxnet
def test_intra_op_threads_size_mxnets_openmp_pool(digits_folder: Path) -> None:
    """Threads are set before MXNet is imported (an agent's order); once imported they can only be warned about."""
    script = (
        _PREDICTOR
        + """
import os, sys
assert "mxnet" not in sys.modules
version = load_predictor_class("mxnet").library_version()
assert "mxnet" not in sys.modules  # library_version reads metadata: asking does not import MXNet
p = predictor(intra_op_threads=int(sys.argv[2]))
p.load(Path(sys.argv[1]))
for _ in range(20):  # oneDNN convolutions over a batch of 64 run OpenMP parallel regions
    p.predict([np.ones((64, 1, 8, 8), np.float32)])
from mlmodelscope.agent.predictors.mxnet import set_threads_before_import
late = set_threads_before_import(5, None)
print(json.dumps({"version": version, "os_threads": len(os.listdir("/proc/self/task")),
                  "omp": [os.environ.get("OMP_NUM_THREADS"), os.environ.get("MXNET_OMP_MAX_THREADS")],
                  "late": late}))
"""
    )
    one = run_mxnet(script, str(digits_folder), "1")
    three = run_mxnet(script, str(digits_folder), "3")
    assert one["version"] == "1.9.1"
    assert one["omp"] == ["1", "1"] and three["omp"] == ["3", "3"]
    assert one["late"] is False and three["late"] is False  # after the import: nothing changes (a warning)
    # The OpenMP runtime's pool: the worker plus (threads - 1) more.
    assert three["os_threads"] - one["os_threads"] >= 2, (one, three)


# --- FRAMEWORK-level spans ----------------------------------------------------------------------------------

_EVALUATE_TRACED = """
import json, sys
from collections import defaultdict
from pathlib import Path
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
assets, out = Path(sys.argv[1]), Path(sys.argv[2])
tracer = Tracer("mxnet-framework", TraceLevel.FRAMEWORK)
settings = EvaluationSettings(mode="both", min_duration_s=0.3, min_query_count=60, warmup_queries=3)
request = RunRequest(model="digits-cnn", framework="mxnet", dataset=None, settings=settings, output_dir=out)
result = execute_run(load_registry([assets]), ArtifactStore(out / "cache"), request, tracer=tracer)
spans = tracer.spans
run = next(s for s in spans if s.name == "performance_run")
model = [s for s in spans if s.name == "predict" and s.parent_id == run.span_id]
children = defaultdict(list)
for s in spans:
    if s.level is TraceLevel.FRAMEWORK:
        children[s.parent_id].append(s)
framework = [s for kids in children.values() for s in kids]
# The declared window (framework_trace_max_calls): its calls, in call order, have operator spans; later ones none.
# After a LoadGen test that ran out of queries and was repeated (a loaded machine), the trace is partial by design
# (the profiler cannot restart) and says why; the profiled calls are then the repeated test's first ones.
trace = result.framework_trace
schedule = result.performance.schedule
repeated = schedule is not None and schedule.discarded_test_queries > 0
assert trace is not None and (trace.status == "complete" or (repeated and "repeated" in (trace.reason or ""))), trace
window = model[: trace.profiled_calls]
assert len(window) > 0 and (repeated or trace.profiled_calls == trace.window_calls), trace
assert set(children) == {m.span_id for m in window}, "operator spans only under the window's model spans"
ops_per_query = []
op_types = set()
for query in window:
    kids = children[query.span_id]
    assert kids, f"model span {query.span_id} has no MXNet operator spans"
    for kid in kids:
        assert query.start_ns <= kid.start_ns <= kid.end_ns <= query.end_ns, (query, kid)
        assert kid.attributes["framework"] == "mxnet" and kid.attributes["kind"] == "op", kid
        assert kid.attributes["framework_op"] == kid.name
    starts = [k.start_ns for k in kids]
    assert starts == sorted(starts)
    ops_per_query.append(sorted(k.name for k in kids))
    op_types.update(str(k.attributes["op_type"]) for k in kids)
print(json.dumps({
    "queries": len(model), "reported_queries": result.performance.queries, "framework_spans": len(framework),
    "profiled": len(window),
    "top1": result.accuracy.top1, "ops": sorted({n for ops in ops_per_query for n in ops}),
    "op_types": sorted(op_types),
    "ops_per_query": sorted({len(ops) for ops in ops_per_query}),
    "profile": str(out / "framework-profile" / "mxnet_profile.json"),
}))
"""


@pytest.fixture(scope="module")
def traced_evaluation(digits_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assets = tmp_path_factory.mktemp("traced") / "assets"
    shutil.copytree(ASSETS, assets, ignore=shutil.ignore_patterns("examples"))
    with_mxnet_artifact(assets, digits_archive)
    reply: dict[str, Any] = run_mxnet(_EVALUATE_TRACED, str(assets), str(assets.parent / "out"))
    return reply


@pytest.mark.mxnet
def test_every_performance_query_has_mxnet_operator_spans_inside_it(traced_evaluation: dict[str, Any]) -> None:
    reply = traced_evaluation
    assert reply["queries"] == reply["reported_queries"] >= 60
    assert set(reply["ops"]) == DIGITS_OPS, reply["ops"]
    assert set(reply["op_types"]) == DIGITS_OP_TYPES, reply["op_types"]
    assert reply["ops_per_query"] == [6]  # conv, pool, conv, pool, flatten, dense: every profiled query, nothing else
    assert reply["framework_spans"] == 6 * reply["profiled"]
    # The profiling predictor (no bulking, a task per call) scores as always; MXNet profiles only the performance run.
    assert reply["top1"] == pytest.approx(0.9889, abs=1e-4)


@pytest.mark.mxnet
def test_the_real_profile_pairs_calls_with_model_spans_only_when_counts_match(
    traced_evaluation: dict[str, Any],
) -> None:
    """MXNet's own profile file, read here: one predict call per query; a different count is a clear error."""
    profile = read_profile(Path(traced_evaluation["profile"]))
    assert len(profile.calls) >= traced_evaluation["profiled"]  # tasks before start() are recorded too
    assert {o.name for o in profile.operators} >= DIGITS_OPS
    assert all(o.end_us >= o.start_us for o in profile.operators)
    tracer = Tracer("r", TraceLevel.FRAMEWORK)
    with pytest.raises(EvaluationError, match="predict calls in the traced window") as info:
        profile_spans(profile, tracer, [(1, 0, 10)])
    assert info.value.hint
    assert profile_spans(profile, Tracer("off", TraceLevel.MODEL), [(1, 0, 10)]) == []  # FRAMEWORK off: nothing


_TWO_PROFILED_RUNS = (
    _PREDICTOR
    + """
import time
from mlmodelscope.core.tracing.framework import model_span_times
from mlmodelscope.core.tracing.spans import TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
folder, root = Path(sys.argv[1]), Path(sys.argv[2])
counts = []
for run in range(2):  # MXNet's profiler is process-wide: the second run re-configures it
    p = predictor(profile_dir=root / f"run{run}")
    p.load(folder)
    profiler = p.framework_profiler()
    tracer = Tracer(f"run{run}", TraceLevel.FRAMEWORK)
    x = np.ones((4, 1, 8, 8), np.float32)
    p.predict([x])  # before start(): recorded by MXNet as a task, not attributed
    profiler.start()
    for q in range(5 + run):
        start = time.perf_counter_ns()
        p.predict([x])
        tracer.model_rows.append((q * 4, 4, start, time.perf_counter_ns()))
    profiler.stop()
    model = tracer.materialize_model_spans()
    spans = profiler.spans(tracer, model_span_times(model))
    by_parent = {m.span_id: [s.name for s in spans if s.parent_id == m.span_id] for m in model}
    names = sorted({n for v in by_parent.values() for n in v})
    counts.append([len(model), sorted({len(v) for v in by_parent.values()}), names])
    p.close()
print(json.dumps(counts))
"""
)


@pytest.mark.mxnet
def test_a_second_profiled_predictor_in_one_process_gets_its_own_spans(digits_folder: Path, tmp_path: Path) -> None:
    """MXNet can be configured once per process; the second profile (a dump fragment) is still read."""
    first, second = run_mxnet(_TWO_PROFILED_RUNS, str(digits_folder), str(tmp_path))
    assert first == [5, [6], sorted(DIGITS_OPS)]
    assert second == [6, [6], sorted(DIGITS_OPS)]
    assert not (tmp_path / "run1" / "mxnet_profile.json").read_text().lstrip().startswith("{")  # a fragment


# --- the profile adapter without MXNet ------------------------------------------------------------------------


def _event(name: str, ph: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ph": ph, "ts": ts, **extra}


def test_profile_fragments_after_the_first_dump_are_read(tmp_path: Path) -> None:
    """MXNet writes every dump after its first as ',' + events + ']}': those events still count."""
    events = [
        _event("predict", "b", 1_000, cat="mlmodelscope", id=7),
        _event("Convolution", "B", 1_010, cat="operator", pid=0, tid=3),
        _event("WaitForVar", "B", 1_011, cat="operator", pid=0, tid=3),
        _event("WaitForVar", "E", 1_012, cat="operator", pid=0, tid=3),
        _event("Convolution", "E", 1_030, cat="operator", pid=0, tid=3),
        _event("Convolution", "b", 1_010, cat="operator", pid=99, tid=3, id=3),  # the async duplicate: ignored
        _event("[Pooling,Flatten]", "X", 1_031, cat="operator", pid=0, tid=3, dur=5),
        _event("predict", "e", 1_050, cat="mlmodelscope", id=7),
    ]
    fragment = ",\n" + ",\n".join(json.dumps(e) for e in events) + '\n],\n"displayTimeUnit": "ms"\n}'
    path = tmp_path / "p.json"
    path.write_text(fragment)
    profile = read_profile(path)
    assert profile.calls == [MXNetEvent(name="predict", start_us=1_000, end_us=1_050)]
    assert [(o.name, o.start_us, o.end_us) for o in profile.operators] == [
        ("Convolution", 1_010, 1_030),
        ("[Pooling,Flatten]", 1_031, 1_036),
    ]


def test_operator_spans_keep_their_offsets_inside_the_model_span() -> None:
    """Calls are placed by the wall clock, moved into their model span if needed; operators keep their offsets."""
    tracer = Tracer("r", TraceLevel.FRAMEWORK)
    tracer.epoch_offset_ns = 1_700_000_000_000_000_000  # wall = tracer clock + this, exactly
    base_us = tracer.epoch_offset_ns // 1000 + 5_000  # 5 ms on the tracer's clock
    calls = [MXNetEvent(name="predict", start_us=base_us + k * 100, end_us=base_us + k * 100 + 40) for k in (0, 1)]
    operators = [
        MXNetEvent(name="Convolution", start_us=calls[0].start_us + 10, end_us=calls[0].start_us + 30),
        MXNetEvent(name="Stray", start_us=calls[0].end_us + 20, end_us=calls[0].end_us + 25),  # between calls
        MXNetEvent(name="Convolution", start_us=calls[1].start_us + 10, end_us=calls[1].start_us + 30),
        MXNetEvent(name="[Pooling,Flatten]", start_us=calls[1].start_us + 31, end_us=calls[1].start_us + 35),
    ]
    profile = MXNetProfile(calls=calls, operators=operators)
    # The first call fits its model span where the wall clock puts it; the second's span is elsewhere (moved in).
    model = [(11, 4_995_000, 5_060_000), (12, 9_000_000, 9_100_000)]
    spans = profile_spans(profile, tracer, model)
    assert [(s.parent_id, s.name, s.start_ns, s.end_ns) for s in spans] == [
        (11, "Convolution", 5_010_000, 5_030_000),
        (12, "Convolution", 9_010_000, 9_030_000),
        (12, "[Pooling,Flatten]", 9_031_000, 9_035_000),
    ]
    assert all(s.level is TraceLevel.FRAMEWORK and s.attributes["framework"] == "mxnet" for s in spans)
    assert spans[0].attributes == {
        "kind": "op",
        "framework": "mxnet",
        "op_type": "Conv2D",
        "framework_op": "Convolution",
    }
    assert spans[2].attributes == {
        "kind": "bulk",
        "framework": "mxnet",
        "op_type": "Bulk",
        "framework_op": "[Pooling,Flatten]",
        "fused_ops": "Pool,Flatten",
    }
    # A call longer than its model span (µs truncation) is scaled down into it.
    short = profile_spans(profile, tracer, [(11, 4_995_000, 5_060_000), (12, 9_000_000, 9_000_020)])
    assert [(s.start_ns, s.end_ns) for s in short[1:]] == [(9_000_005, 9_000_015), (9_000_016, 9_000_018)]
    # The window drops calls outside it (warm-up calls are recorded as tasks too).
    window = {"window_start_ns": (base_us + 50) * 1000, "window_end_ns": (base_us + 200) * 1000}
    only_second = profile_spans(profile, tracer, [(12, 9_000_000, 9_100_000)], **window)
    assert [s.name for s in only_second] == ["Convolution", "[Pooling,Flatten]"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "it is empty"),
        ("{not json", "not JSON"),
        ('{"traceEvents": {}}', "no list of trace events"),
        ('{"traceEvents": [3]}', "not a JSON object"),
        ('{"traceEvents": [{"ph": "B", "name": "x"}]}', "integer 'ts'"),
    ],
)
def test_malformed_mxnet_profile_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(EvaluationError, match=message) as info:
        read_profile(path)
    assert str(path) in info.value.message and info.value.hint


# --- the model zoo ------------------------------------------------------------------------------------------

_ZOO = """
import json, sys, hashlib
from pathlib import Path
import numpy as np
from mlmodelscope.agent.predictors.mxnet import MXNetPredictor
from mlmodelscope.agent.zoo.mxnet_models import build_mxnet, example_input, input_spec
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.predictor import PredictorOptions
model, root = sys.argv[1], Path(sys.argv[2])
digests = []
for build, seed in enumerate([0, 0, 1]):
    destination = root / f"build{build}"
    destination.mkdir()
    assert build_mxnet(model, destination, seed=seed) == destination
    digests.append(hashlib.sha256(b"".join(p.read_bytes() for p in sorted(destination.iterdir()))).hexdigest())
name, shape, dtype = input_spec(model)
classes = 2 if model == "transformer-encoder" else 1000
spec = ModelSpec.model_validate({
    "task": "raw", "framework": {"name": "mxnet"},
    "artifacts": [{"uri": "built-by-this-test", "sha256": "0" * 64, "format": "mxnet"}],
    "inputs": [{"name": name, "shape": list(shape), "dtype": dtype}],
    "outputs": [{"name": "logits", "type": "raw", "shape": [classes]}],
})
predictor = MXNetPredictor(spec, PredictorOptions())
predictor.load(root / "build0")
outputs = {}
for batch in (1, 2):
    (logits,) = predictor.predict([example_input(model, batch, seed=3)])
    assert np.isfinite(logits).all()
    outputs[batch] = logits
# oneDNN picks kernels per batch size: equal up to float32 rounding at the logits' scale
scale = float(np.abs(outputs[1]).max())
np.testing.assert_allclose(outputs[2][:1], outputs[1], rtol=1e-3, atol=1e-4 * scale)
print(json.dumps({"files": sorted(p.name for p in (root / "build0").iterdir()), "shape": list(outputs[2].shape),
                  "dtype": str(outputs[2].dtype), "same_seed_same_bytes": digests[0] == digests[1],
                  "other_seed_other_bytes": digests[0] != digests[2]}))
"""


def _zoo(model: str, tmp_path: Path) -> dict[str, Any]:
    reply: dict[str, Any] = run_mxnet(_ZOO, model, str(tmp_path), timeout_s=600)
    assert reply["files"] == [f"{model}-0000.params", f"{model}-symbol.json"]
    assert reply["same_seed_same_bytes"] and reply["other_seed_other_bytes"]
    assert reply["dtype"] == "float32"
    return reply


@pytest.mark.mxnet
def test_zoo_resnet18_builds_and_predicts(tmp_path: Path) -> None:
    assert _zoo("resnet18", tmp_path)["shape"] == [2, 1000]


@pytest.mark.mxnet
def test_zoo_transformer_encoder_takes_int64_tokens(tmp_path: Path) -> None:
    assert _zoo("transformer-encoder", tmp_path)["shape"] == [2, 2]


@pytest.mark.mxnet
@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet50", "mobilenet-v2"])
def test_zoo_large_models_build_and_predict(model: str, tmp_path: Path) -> None:
    assert _zoo(model, tmp_path)["shape"] == [2, 1000]


@pytest.mark.mxnet
def test_unknown_zoo_model_lists_the_known_ones(tmp_path: Path) -> None:
    script = """
import json, sys
from pathlib import Path
from mlmodelscope.agent.zoo.mxnet_models import build_mxnet
from mlmodelscope.core.errors import ModelLoadError
try:
    build_mxnet("resnet9000", Path(sys.argv[1]), seed=0)
    print(json.dumps(None))
except ModelLoadError as e:
    print(json.dumps([e.message, e.hint]))
"""
    message, hint = run_mxnet(script, str(tmp_path))
    assert "resnet9000" in message
    assert all(name in message for name in ("resnet18", "resnet50", "mobilenet-v2", "transformer-encoder"))
    assert hint


# --- end to end through the CLI -------------------------------------------------------------------------------


@pytest.mark.mxnet
@pytest.mark.slow
def test_cli_evaluates_digits_on_mxnet_in_its_own_runtime(
    digits_archive: Path, scratch_assets: Path, tmp_path: Path
) -> None:
    """`mlmodelscope evaluate -f mxnet`: the agent runs in .venv-mxnet and scores what ONNX Runtime scores."""
    with_mxnet_artifact(scratch_assets, digits_archive)
    output = tmp_path / "r.json"
    run = run_cli(
        "--cache-dir",
        str(tmp_path / "cache"),
        "evaluate",
        "--model",
        "digits-cnn",
        "--framework",
        "mxnet",
        "--mode",
        "accuracy",
        "--output",
        str(output),
        cwd=scratch_assets.parent,
        data_dir=tmp_path / "data",
    )
    assert run.returncode == 0, run.stderr + run.stdout
    result = json.loads(output.read_text())
    assert (result["framework"]["name"], result["framework"]["version"]) == ("mxnet", "1.9.1")
    assert re.fullmatch(r"[0-9a-f]{64}", result["framework"]["spec_sha256"])  # the spec the run carried
    assert result["accuracy"]["count"] == 450
    assert result["accuracy"]["top1"] == pytest.approx(0.9889, abs=1e-4)
    assert result["accuracy"]["verdict"]["valid"] is True


@pytest.mark.mxnet
@pytest.mark.slow
def test_cli_framework_trace_nests_mxnet_operators_under_every_query(
    digits_archive: Path, scratch_assets: Path, tmp_path: Path
) -> None:
    """Local mode at --trace-level framework: the MXNet agent publishes operator spans under each query."""
    with_mxnet_artifact(scratch_assets, digits_archive)
    output, data = tmp_path / "r.json", tmp_path / "data"
    run = run_cli(
        "--cache-dir",
        str(tmp_path / "cache"),
        "evaluate",
        "-m",
        "digits-cnn",
        "-f",
        "mxnet",
        "--mode",
        "performance",
        "--trace-level",
        "framework",
        "--min-duration",
        "0.5s",
        "--output",
        str(output),
        cwd=scratch_assets.parent,
        data_dir=data,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    result = json.loads(output.read_text())
    trace_path = tmp_path / "trace.json"
    exported = run_cli("trace", "export", result["id"], "-o", str(trace_path), cwd=scratch_assets.parent, data_dir=data)
    assert exported.returncode == 0, exported.stderr
    spans = [e for e in json.loads(trace_path.read_text())["traceEvents"] if e["ph"] == "X"]
    children: dict[int, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["args"]["parent_id"], []).append(span)
    model_spans = measured_model_spans([s for s in spans if s["name"] == "predict"], result)
    assert len(model_spans) == result["performance"]["queries"]
    window = profiled_model_spans(model_spans, result)
    # Calls after the declared window (framework_trace_max_calls) carry no operator spans, by design.
    assert all(s["args"]["span_id"] not in children for s in model_spans[len(window) :])
    for parent in window:
        kids = children.get(parent["args"]["span_id"], [])
        assert {k["args"]["op_type"] for k in kids} == DIGITS_OP_TYPES, kids
        assert {k["args"]["framework_op"] for k in kids} == DIGITS_OPS, kids
        for kid in kids:
            assert parent["ts"] <= kid["ts"] and kid["ts"] + kid["dur"] <= parent["ts"] + parent["dur"]
