"""The TensorFlow predictor with real TensorFlow: both formats of the digits CNN exported from the trained PyTorch
weights (scripts/digits_keras.py), agreement with ONNX Runtime, errors, threads, FRAMEWORK spans from TensorFlow's
profiler in a real evaluation, and the Keras model zoo."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tarfile
import textwrap
import time
import warnings
import zipfile
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

from mlmodelscope.agent.profilers.tensorflow import profile_spans
from mlmodelscope.agent.profilers.tensorflow_xspace import TfCall, TfEvent, TfProfile
from mlmodelscope.agent.zoo.keras_models import NUMPY_COPY_WARNING
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import DeviceUnavailableError, EvaluationError, ModelLoadError, PredictorError
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.predictor import Predictor, PredictorOptions, available_predictors, load_predictor_class
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
from tests.support.paths import ASSETS, REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first TensorFlow import, as the predictor does
tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

DIGITS = ASSETS / "artifacts" / "digits"
TORCHSCRIPT = DIGITS / "digits_cnn.torchscript.pt"
ONNX = DIGITS / "digits_cnn.onnx"
KERAS = "keras"
SAVEDMODEL = "savedmodel"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


digits_keras = _load_script("digits_keras")


def _digits_weights() -> dict[str, Any]:
    """The trained weights of the committed TorchScript model (the same as the ONNX model's)."""
    with warnings.catch_warnings():
        # torch announces TorchScript's deprecation on every load; reading the weights is all that is needed.
        warnings.filterwarnings("ignore", message=r"`torch\.jit", category=DeprecationWarning)
        return dict(torch.jit.load(str(TORCHSCRIPT)).state_dict())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The digits CNN as .keras, as the SavedModel tar, and as that tar unpacked (what the runner passes)."""
    out = tmp_path_factory.mktemp("digits-keras")
    keras_path, tar_path = digits_keras.export_keras(_digits_weights(), out)
    folder = out / "savedmodel"
    with tarfile.open(tar_path) as archive:
        archive.extractall(folder, filter="data")
    return {KERAS: keras_path, SAVEDMODEL: folder, "tar": tar_path}


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


@pytest.fixture(scope="module")
def loaded(model: Model, exported: dict[str, Path]) -> dict[str, Predictor]:
    predictors = {}
    for fmt in (KERAS, SAVEDMODEL):
        predictor = _predictor(model.spec)
        predictor.load(exported[fmt])
        predictors[fmt] = predictor
    return predictors


def _predictor(spec: ModelSpec, **options: object) -> Predictor:
    return load_predictor_class("tensorflow")(spec, PredictorOptions(**options))  # type: ignore[arg-type]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# --- discovery and formats ---------------------------------------------------------------------------------------


def test_tensorflow_is_discovered_by_entry_point() -> None:
    assert "tensorflow" in available_predictors()
    cls = load_predictor_class("tensorflow")
    assert cls.name == "tensorflow"
    assert cls.library_version() == tf.__version__


@pytest.mark.parametrize("fmt", [KERAS, SAVEDMODEL])
@pytest.mark.parametrize("batch", [1, 3, 16])
def test_predict_returns_one_batch_of_declared_outputs(loaded: dict[str, Predictor], fmt: str, batch: int) -> None:
    x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
    outputs = loaded[fmt].predict([x])
    assert len(outputs) == 1
    assert isinstance(outputs[0], np.ndarray)
    assert outputs[0].shape == (batch, 10)
    assert outputs[0].dtype == np.float32


@pytest.mark.parametrize("fmt", [KERAS, SAVEDMODEL])
def test_keras_export_agrees_with_the_onnx_model(
    loaded: dict[str, Predictor], model: Model, digits_test_split: tuple[np.ndarray, np.ndarray], fmt: str
) -> None:
    """The same trained weights: softmax within 1e-5 of ONNX Runtime, the same top-1 everywhere (445/450)."""
    x, labels = digits_test_split
    tf_logits = np.asarray(loaded[fmt].predict([x])[0])
    # Batch size does not change the answer.
    single = np.concatenate([loaded[fmt].predict([x[i : i + 1]])[0] for i in range(9)])
    np.testing.assert_allclose(single, tf_logits[:9], atol=1e-5)
    with load_predictor_class("onnxruntime")(model.spec, PredictorOptions()) as onnx:
        onnx.load(ONNX)
        onnx_logits = np.asarray(onnx.predict([x])[0])
    assert float(np.max(np.abs(_softmax(tf_logits) - _softmax(onnx_logits)))) <= 1e-5
    np.testing.assert_array_equal(np.argmax(tf_logits, axis=1), np.argmax(onnx_logits, axis=1))
    assert int(np.sum(np.argmax(tf_logits, axis=1) == labels)) == 445


def test_the_export_is_byte_deterministic(exported: dict[str, Path], tmp_path: Path) -> None:
    again = digits_keras.export_keras(_digits_weights(), tmp_path)
    assert [p.name for p in again] == ["digits_cnn.keras", "digits_cnn.savedmodel.tar"]
    for path in again:
        original = exported[KERAS].parent / path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(original.read_bytes()).hexdigest()
    with zipfile.ZipFile(again[0]) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with tarfile.open(again[1]) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {"saved_model.pb", "variables/variables.index"} <= {m.name for m in members}
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}


@pytest.mark.parametrize("name", ["digits_cnn.keras", "digits_cnn.savedmodel.tar"])
def test_committed_tensorflow_artifacts_are_the_torchscript_weights(exported: dict[str, Path], name: str) -> None:
    """The committed files are exactly what digits_keras makes from the committed TorchScript's weights."""
    committed = DIGITS / name
    if not committed.exists():
        pytest.skip(f"{committed} is not in the assets (yet)")
    made = exported[KERAS].parent / name
    assert hashlib.sha256(committed.read_bytes()).hexdigest() == hashlib.sha256(made.read_bytes()).hexdigest()


def test_the_serving_function_is_a_compiled_graph(loaded: dict[str, Predictor]) -> None:
    for fmt, predictor in loaded.items():
        serving = predictor.serving_function  # type: ignore[attr-defined]
        assert isinstance(serving, tf.types.experimental.ConcreteFunction), fmt
        (spec,) = serving.structured_input_signature[0]
        assert spec.shape.as_list() == [None, 1, 8, 8], fmt
        op_types = {op.type for op in serving.graph.get_operations()}
        if fmt == KERAS:  # the Keras layers themselves are traced into the graph, not called from Python
            assert {"Conv2D", "MaxPool", "MatMul"} <= op_types
        else:  # the SavedModel's own function, called as one graph op
            assert op_types & {"StatefulPartitionedCall", "PartitionedCall"}


def test_the_compiled_graph_is_much_faster_than_eager_keras(
    loaded: dict[str, Predictor], exported: dict[str, Path]
) -> None:
    """The reason for the ConcreteFunction: eager Keras dispatches every layer from Python (about 8x slower)."""
    import keras

    eager = keras.saving.load_model(exported[KERAS], compile=False)
    x = np.zeros((1, 1, 8, 8), np.float32)
    predict = loaded[KERAS].predict

    def median_ns(call: Any) -> float:
        for _ in range(5):
            call()
        times = []
        for _ in range(41):
            start = time.perf_counter_ns()
            call()
            times.append(time.perf_counter_ns() - start)
        return float(np.median(times))

    compiled_ns = median_ns(lambda: predict([x]))
    eager_ns = median_ns(lambda: eager(x, training=False))
    assert compiled_ns * 3 < eager_ns, (compiled_ns, eager_ns)


def test_the_modules_import_without_tensorflow() -> None:
    """The agent must import (and list its predictors) in a runtime without TensorFlow."""
    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "import mlmodelscope.agent.predictors.tensorflow, mlmodelscope.agent.profilers.tensorflow\n"
        "import mlmodelscope.agent.zoo.keras_models\n"
        "from mlmodelscope.core.errors import FrameworkUnavailableError\n"
        "try:\n"
        "    mlmodelscope.agent.predictors.tensorflow.TensorFlowPredictor.library_version()\n"
        "except FrameworkUnavailableError as e:\n"
        "    print('unavailable:', e.hint)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "unavailable: `pip install 'mlmodelscope-agent[tensorflow]'`" in completed.stdout


def _two_input_spec(model: Model, input_names: list[str], output_names: list[str]) -> ModelSpec:
    shapes = {"a": [3], "b": [2]}
    inputs = [
        model.spec.inputs[0].model_copy(update={"name": n, "shape": shapes[n], "preprocess": []}) for n in input_names
    ]
    outputs = [
        model.spec.outputs[0].model_copy(update={"name": n, "shape": [s], "labels": None})
        for n, s in zip(output_names, (4, 1), strict=True)
    ]
    return model.spec.model_copy(update={"inputs": inputs, "outputs": outputs})


@pytest.mark.filterwarnings(f"ignore:{NUMPY_COPY_WARNING}:DeprecationWarning")  # Keras' save/export on numpy 2
def test_inputs_are_matched_by_name_and_outputs_kept_in_order(model: Model, tmp_path: Path) -> None:
    """Two inputs declared in the other order, two outputs: .keras, keras' export() and a signature-only SavedModel."""
    import keras

    keras.utils.set_random_seed(0)
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    joined = keras.layers.Concatenate(name="join")([a, b])
    network = keras.Model(
        [a, b], [keras.layers.Dense(4, name="first")(joined), keras.layers.Dense(1, name="second")(b)]
    )
    network.save(tmp_path / "two.keras")
    network.export(tmp_path / "exported", verbose=False)
    module = tf.Module()
    module.network = network
    signature = [tf.TensorSpec((None, 3), tf.float32, name="a"), tf.TensorSpec((None, 2), tf.float32, name="b")]
    module.serving = tf.function(lambda x, y: dict(zip(["first", "second"], network([x, y]), strict=True)))
    tf.saved_model.save(
        module,
        str(tmp_path / "signature_only"),
        signatures={"serving_default": module.serving.get_concrete_function(*signature)},
    )

    rng = np.random.default_rng(0)
    xa, xb = rng.random((5, 3), dtype=np.float32), rng.random((5, 2), dtype=np.float32)
    expected = [np.asarray(t) for t in network([xa, xb], training=False)]
    for artifact, output_names in (
        ("two.keras", ["o1", "o2"]),
        ("exported", ["o1", "o2"]),
        ("signature_only", ["first", "second"]),  # a signature's outputs are a dict: matched by name
    ):
        with _predictor(_two_input_spec(model, ["b", "a"], output_names)) as predictor:
            predictor.load(tmp_path / artifact)
            outputs = predictor.predict([xb, xa])
        assert [o.shape for o in outputs] == [(5, 4), (5, 1)], artifact
        for got, want in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=artifact)


# --- errors ------------------------------------------------------------------------------------------------------


def _corrupt_file(folder: Path) -> Path:
    path = folder / "broken.keras"
    path.write_bytes(b"this is not a zip archive")
    return path


def _zip_without_config(folder: Path) -> Path:
    path = folder / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    return path


def _folder_without_savedmodel(folder: Path) -> Path:
    path = folder / "empty"
    path.mkdir()
    (path / "README").write_text("no model here")
    return path


def _damaged_savedmodel(folder: Path) -> Path:
    path = folder / "savedmodel"
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"garbage")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_corrupt_file, "not a .keras file"),
        (_zip_without_config, "no config.json"),
        (_folder_without_savedmodel, "no saved_model.pb"),
        (_damaged_savedmodel, "could not load the SavedModel"),
    ],
)
def test_bad_artifact_is_a_model_load_error(model: Model, tmp_path: Path, make: Any, message: str) -> None:
    broken = make(tmp_path)
    with pytest.raises(ModelLoadError, match=message) as info:
        _predictor(model.spec).load(broken)
    assert str(broken) in info.value.message
    assert info.value.hint


def test_damaged_keras_file_is_a_model_load_error(model: Model, exported: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.keras"
    with zipfile.ZipFile(exported[KERAS]) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            target.writestr(info, b"{not json" if info.filename == "config.json" else source.read(info))
    with pytest.raises(ModelLoadError, match="could not load") as info:
        _predictor(model.spec).load(damaged)
    assert str(damaged) in info.value.message


def test_the_unpacked_archive_folder_is_accepted(model: Model, exported: dict[str, Path], tmp_path: Path) -> None:
    """An archive with a top folder unpacks to a folder holding one SavedModel folder: that one is loaded."""
    (tmp_path / "outer").mkdir()
    with tarfile.open(exported["tar"]) as archive:
        archive.extractall(tmp_path / "outer" / "digits", filter="data")
    with _predictor(model.spec) as predictor:
        predictor.load(tmp_path / "outer")
        assert predictor.predict([np.zeros((2, 1, 8, 8), np.float32)])[0].shape == (2, 10)


def test_declared_outputs_must_match_the_model(model: Model, exported: dict[str, Path]) -> None:
    extra = model.spec.outputs[0].model_copy(update={"name": "extra"})
    spec = model.spec.model_copy(update={"outputs": [*model.spec.outputs, extra]})
    for fmt in (KERAS, SAVEDMODEL):
        with pytest.raises(ModelLoadError, match="2") as info:
            _predictor(spec).load(exported[fmt])
        assert "spec.outputs" in info.value.hint


@pytest.mark.parametrize(
    ("update", "message", "field"),
    [({"dtype": "int64"}, "as float32", "dtype"), ({"shape": [1, 9, 9]}, r"shaped \[1, 8, 8\]", "shape")],
)
@pytest.mark.parametrize("fmt", [KERAS, SAVEDMODEL])
def test_declared_inputs_must_fit_the_model(
    model: Model, exported: dict[str, Path], fmt: str, update: dict[str, Any], message: str, field: str
) -> None:
    spec = model.spec.model_copy(update={"inputs": [model.spec.inputs[0].model_copy(update=update)]})
    with pytest.raises(ModelLoadError, match=message) as info:
        _predictor(spec).load(exported[fmt])
    assert f"spec.inputs[].{field}" in info.value.hint


def test_wrong_inputs_are_a_predictor_error(loaded: dict[str, Predictor]) -> None:
    with pytest.raises(PredictorError, match="rejected the inputs"):
        loaded[KERAS].predict([np.zeros((2, 1, 9, 9), np.float32)])


def test_gpu_without_a_gpu_is_a_clear_error(model: Model, exported: dict[str, Path]) -> None:
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here")
    with pytest.raises(DeviceUnavailableError, match="gpu") as info:
        _predictor(model.spec, device="gpu").load(exported[KERAS])
    assert "tensorflow[and-cuda]" in info.value.hint
    assert "--device cpu" in info.value.hint


def test_unsupported_device_is_a_clear_error(model: Model, exported: dict[str, Path]) -> None:
    with pytest.raises(DeviceUnavailableError) as info:
        _predictor(model.spec, device="fpga").load(exported[KERAS])
    assert "fpga" in info.value.message


# --- threads -----------------------------------------------------------------------------------------------------


def test_thread_options_are_applied_in_a_fresh_process(exported: dict[str, Path]) -> None:
    """TensorFlow's pools are sized before its first op: in a process of its own, as the agent runs it."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        import numpy as np
        import tensorflow as tf
        from mlmodelscope.core.manifests import load_registry
        from mlmodelscope.core.predictor import PredictorOptions, load_predictor_class
        spec = load_registry([Path({str(ASSETS)!r})]).model("digits-cnn").spec
        predictor = load_predictor_class("tensorflow")(spec, PredictorOptions(intra_op_threads=1, inter_op_threads=2))
        predictor.load(Path({str(exported[KERAS])!r}))
        predictor.predict([np.zeros((1, 1, 8, 8), np.float32)])
        threading = tf.config.threading
        print("threads", threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False, cwd=REPO
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "threads 1 2" in completed.stdout.splitlines()


def test_thread_options_after_tensorflow_started_are_a_warning(
    model: Model, exported: dict[str, Path], loaded: dict[str, Predictor], caplog: pytest.LogCaptureFixture
) -> None:
    before = tf.config.threading.get_intra_op_parallelism_threads()
    wanted = before + 3
    with (
        caplog.at_level(logging.WARNING, logger="mlmodelscope.agent.predictors.tensorflow"),
        _predictor(model.spec, intra_op_threads=wanted) as predictor,
    ):
        predictor.load(exported[KERAS])  # still loads and runs
        assert predictor.predict([np.zeros((1, 1, 8, 8), np.float32)])[0].shape == (1, 10)
    assert tf.config.threading.get_intra_op_parallelism_threads() == before
    assert any("intra-op threads stay" in r.getMessage() and str(wanted) in r.getMessage() for r in caplog.records)


# --- FRAMEWORK spans ---------------------------------------------------------------------------------------------


def _assets_with_tensorflow(scratch: Path, exported: dict[str, Path]) -> None:
    """The digits model with its .keras and SavedModel artifacts, and a TensorFlow Framework resource."""
    framework = {
        "apiVersion": "mlmodelscope.org/v1alpha1",
        "kind": "Framework",
        "metadata": {"name": "tensorflow"},
        "spec": {
            "description": "TensorFlow (tf.function graphs) for Keras files and SavedModels.",
            "version": tf.__version__,
            "predictor": "tensorflow",
            "formats": ["keras", "savedmodel"],
            "accelerators": ["cpu", "gpu"],
        },
    }
    (scratch / "frameworks" / "tensorflow.yaml").write_text(yaml.safe_dump(framework, sort_keys=False))
    manifest = scratch / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    target = scratch / "artifacts" / "digits"
    # This test's own exports replace any Keras / SavedModel artifacts the manifest already lists.
    document["spec"]["artifacts"] = [a for a in document["spec"]["artifacts"] if a["format"] not in (KERAS, SAVEDMODEL)]
    for fmt, source, archive in ((KERAS, exported[KERAS], False), (SAVEDMODEL, exported["tar"], True)):
        (target / source.name).write_bytes(source.read_bytes())
        entry = {"uri": f"../artifacts/digits/{source.name}", "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
        document["spec"]["artifacts"].append({**entry, "format": fmt, **({"archive": True} if archive else {})})
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.mark.slow
def test_framework_spans_of_a_real_evaluation(scratch_assets: Path, exported: dict[str, Path], tmp_path: Path) -> None:
    """Every model span of the performance run holds the TF ops it ran (conv, pool, matmul), inside it."""
    _assets_with_tensorflow(scratch_assets, exported)
    tracer = Tracer("tf-run", TraceLevel.FRAMEWORK)
    request = RunRequest(
        model="digits-cnn",
        framework="tensorflow",
        dataset=None,
        settings=EvaluationSettings(mode="both", min_duration_s=0.2, min_query_count=40, warmup_queries=2),
        output_dir=tmp_path / "out",
    )
    result = execute_run(load_registry([scratch_assets]), ArtifactStore(tmp_path / "cache"), request, tracer=tracer)
    assert result.framework.name == "tensorflow"
    assert result.accuracy is not None and result.accuracy.top1 == pytest.approx(0.9889, abs=1e-4)
    assert result.performance is not None

    spans = tracer.spans
    by_id = {s.span_id: s for s in spans}
    performance_run = next(s for s in spans if s.name == "performance_run")
    model_spans = [s for s in spans if s.level == TraceLevel.MODEL and s.parent_id == performance_run.span_id]
    assert len(model_spans) >= 40
    framework_spans = [s for s in spans if s.level == TraceLevel.FRAMEWORK]
    children: dict[int, list[Span]] = {s.span_id: [] for s in model_spans}
    for span in framework_spans:
        assert span.parent_id in children, span  # only under the performance run's model spans
        parent = by_id[span.parent_id]
        assert parent.start_ns <= span.start_ns <= span.end_ns <= parent.end_ns
        assert span.attributes["framework"] == "tensorflow"
        children[span.parent_id].append(span)
    for span_id, ops in children.items():
        op_spans = [s for s in ops if s.attributes["kind"] == "op"]
        # Canonical op types (core.tracing.op_types): the same whether TensorFlow's oneDNN build ran
        # _MklNativeFusedConv2D / _MklNativeMaxPool / _MklTranspose or the plain build _FusedConv2D / MaxPool /
        # Transpose, i.e. on any x86-64 CPU. Every layer of the digits CNN: its two convolutions (Relu and bias
        # fused in, in both builds), the max pool, the global average pool (a Mean), the logits' MatMul, and the
        # input's NCHW -> NHWC Transpose; cheap ops too (ReadVariableOp), long after the warm-up made TensorFlow's
        # cost model call them inexpensive.
        op_types = {str(s.attributes["op_type"]) for s in op_spans}
        assert {"Conv2D", "MaxPool", "Mean", "MatMul", "Transpose", "ReadVariableOp"} <= op_types, (span_id, op_types)
        assert [s.attributes["op_type"] for s in op_spans].count("Conv2D") == 2, op_types
        assert all(s.attributes["framework_op"] == s.name for s in op_spans)  # TensorFlow's own name, kept
        assert not {str(s.attributes["framework_op"]) for s in op_spans} & {"_Arg", "_Retval"}
        assert [s.name for s in ops if s.attributes["kind"] == "function"] == ["FunctionRun"]
    nodes = {str(s.attributes["node"]) for s in framework_spans if s.attributes["kind"] == "op"}
    assert any("conv1" in n for n in nodes), sorted(nodes)[:20]
    assert list((tmp_path / "out" / "framework-profile").glob("plugins/profile/*/*.xplane.pb"))


@pytest.mark.slow
def test_savedmodel_archive_evaluates_through_the_runner(
    scratch_assets: Path, exported: dict[str, Path], tmp_path: Path
) -> None:
    """The tar artifact is unpacked by the store and run as a SavedModel: the accuracy the model is known for."""
    _assets_with_tensorflow(scratch_assets, exported)
    framework = scratch_assets / "frameworks" / "tensorflow.yaml"
    document = yaml.safe_load(framework.read_text())
    document["spec"]["formats"] = ["savedmodel"]
    framework.write_text(yaml.safe_dump(document, sort_keys=False))
    request = RunRequest(
        model="digits-cnn",
        framework="tensorflow",
        dataset=None,
        settings=EvaluationSettings(mode="accuracy", warmup_queries=2),
        output_dir=tmp_path / "out",
    )
    result = execute_run(load_registry([scratch_assets]), ArtifactStore(tmp_path / "cache"), request)
    assert result.accuracy is not None
    assert result.accuracy.count == 450
    assert result.accuracy.top1 == pytest.approx(0.9889, abs=1e-4)


# --- the adapter's pairing and alignment (synthetic profiles) ---------------------------------------------------


def _profile(calls: list[tuple[int, int]], ops: list[tuple[int, int, str]]) -> TfProfile:
    return TfProfile(
        calls=[TfCall(a, b, k) for k, (a, b) in enumerate(calls)],
        ops=[TfEvent(a, b, name, f"model/{name.lower()}", "tf_Compute/1") for a, b, name in ops],
        functions=[],
    )


def test_ops_are_placed_by_one_clock_offset_inside_their_calls() -> None:
    tracer = Tracer("run", TraceLevel.FRAMEWORK)
    calls = [(1000, 1800), (5000, 5600)]  # on the profile's clock
    ops = [(1100, 1500, "_MklNativeFusedConv2D"), (5100, 5300, "MaxPool"), (9000, 9100, "Stray")]
    # On the tracer's clock the second call starts exactly at its span's start (the tightest fit): offset 1e6.
    spans = profile_spans(_profile(calls, ops), tracer, [(11, 1_000_990, 1_001_850), (12, 1_005_000, 1_005_700)])
    # the stray op is dropped; spans are named as TensorFlow ran them
    assert [(s.name, s.parent_id) for s in spans] == [("_MklNativeFusedConv2D", 11), ("MaxPool", 12)]
    assert (spans[0].start_ns, spans[0].end_ns) == (1_001_100, 1_001_500)
    assert (spans[1].start_ns, spans[1].end_ns) == (1_005_100, 1_005_300)
    assert spans[0].attributes == {
        "kind": "op",
        "framework": "tensorflow",
        "op_type": "Conv2D",
        "framework_op": "_MklNativeFusedConv2D",
        "node": "model/_mklnativefusedconv2d",
        "thread": "tf_Compute/1",
    }
    assert (spans[1].attributes["op_type"], spans[1].attributes["framework_op"]) == ("MaxPool", "MaxPool")


def test_trailing_markers_belong_to_the_model_spans() -> None:
    """A repeated performance run discards its first rows, but its calls were profiled: the last ones count."""
    tracer = Tracer("run", TraceLevel.FRAMEWORK)
    profile = _profile([(0, 100), (200, 300), (400, 500)], [(10, 20, "A"), (210, 220, "B"), (410, 420, "C")])
    spans = profile_spans(profile, tracer, [(1, 10_200, 10_310), (2, 10_400, 10_510)])
    assert [(s.name, s.parent_id) for s in spans] == [("B", 1), ("C", 2)]


def test_fewer_markers_than_model_spans_is_an_error() -> None:
    profile = _profile([(0, 100)], [])
    with pytest.raises(EvaluationError, match="1 'mlmodelscope_predict' markers but 2 model spans"):
        profile_spans(profile, Tracer("run", TraceLevel.FRAMEWORK), [(1, 0, 200), (2, 300, 500)])


def test_inconsistent_clocks_still_give_spans_inside_their_parents() -> None:
    """No single offset fits (the clocks drifted): each call is moved into its own span, never outside."""
    tracer = Tracer("run", TraceLevel.FRAMEWORK)
    profile = _profile([(0, 100), (1000, 1100)], [(0, 100, "A"), (1000, 1100, "B")])
    model_spans = [(1, 5000, 5110), (2, 7000, 7090)]  # the second call is longer than its span
    spans = profile_spans(profile, tracer, model_spans)
    for span, (_, start, end) in zip(spans, model_spans, strict=True):
        assert start <= span.start_ns <= span.end_ns <= end
    assert spans[1].end_ns - spans[1].start_ns == 90  # scaled down to the span


def test_no_spans_below_framework_level() -> None:
    profile = _profile([(0, 100)], [(10, 20, "A")])
    assert profile_spans(profile, Tracer("run", TraceLevel.MODEL), [(1, 0, 200)]) == []


# --- the Keras model zoo -----------------------------------------------------------------------------------------


def _zoo_spec(model: Model, name: str, shape: list[int], dtype: str, classes: int) -> ModelSpec:
    inputs = [model.spec.inputs[0].model_copy(update={"name": name, "shape": shape, "dtype": dtype, "preprocess": []})]
    outputs = [model.spec.outputs[0].model_copy(update={"shape": [classes], "labels": None})]
    return model.spec.model_copy(update={"inputs": inputs, "outputs": outputs})


def _keras_builder() -> Any:
    (entry,) = [ep for ep in entry_points(group="mlmodelscope.zoo_builders") if ep.name == "keras"]
    return entry.load()


def test_zoo_resnet18_is_torchvision_sized_and_runs(model: Model, tmp_path: Path) -> None:
    import keras

    path = _keras_builder()("resnet18", tmp_path, seed=0)
    assert path == tmp_path / "resnet18.keras"
    network = keras.saving.load_model(path, compile=False)
    assert [tuple(t.shape) for t in network.inputs] == [(None, 3, 224, 224)]
    assert [tuple(t.shape) for t in network.outputs] == [(None, 1000)]
    # torchvision's resnet18 has 11,689,512 parameters (its BatchNorm running statistics are buffers).
    assert sum(int(np.prod(w.shape)) for w in network.trainable_weights) == 11_689_512
    with _predictor(_zoo_spec(model, "input", [3, 224, 224], "float32", 1000)) as predictor:
        predictor.load(path)
        x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
        (logits,) = predictor.predict([x])
    assert logits.shape == (2, 1000)
    assert np.all(np.isfinite(logits))
    assert not np.allclose(logits[0], logits[1])  # the input matters: real random weights, no softmax


def test_zoo_transformer_encoder_takes_tokens(model: Model, tmp_path: Path) -> None:
    path = _keras_builder()("transformer-encoder", tmp_path, seed=1)
    with _predictor(_zoo_spec(model, "tokens", [128], "int64", 2)) as predictor:
        predictor.load(path)
        tokens = np.random.default_rng(1).integers(0, 8192, size=(3, 128), dtype=np.int64)
        (logits,) = predictor.predict([tokens])
    assert logits.shape == (3, 2)
    assert logits.dtype == np.float32
    assert np.all(np.isfinite(logits))


@pytest.mark.filterwarnings(f"ignore:{NUMPY_COPY_WARNING}:DeprecationWarning")  # Keras' get_weights on numpy 2
def test_zoo_weights_are_deterministic_for_a_seed() -> None:
    from mlmodelscope.agent.zoo.keras_models import build_model

    first, again, other = (build_model("transformer-encoder", seed=s) for s in (5, 5, 6))
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights(), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights(), strict=True))


def test_zoo_files_are_byte_deterministic(tmp_path: Path) -> None:
    """The same model and seed give the same bytes, so the sha256 the zoo records is reproducible."""
    first, again = tmp_path / "first", tmp_path / "again"
    first.mkdir()
    again.mkdir()
    paths = [_keras_builder()("transformer-encoder", folder, seed=2) for folder in (first, again)]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert [p.name for p in first.iterdir()] == ["transformer-encoder.keras"]  # nothing else left behind


def test_zoo_unknown_model_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="resnet18") as info:
        _keras_builder()("vgg16", tmp_path, seed=0)
    assert "'vgg16'" in info.value.message
    assert "mobilenet-v2" in info.value.message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("name", "parameters"), [("resnet50", 25_583_592), ("mobilenet-v2", 3_504_872)])
def test_zoo_keras_applications(tmp_path: Path, name: str, parameters: int) -> None:
    """keras.applications' ResNet-50 and MobileNetV2 behind the shared NCHW input, with raw logits."""
    import keras

    network = keras.saving.load_model(_keras_builder()(name, tmp_path, seed=0), compile=False)
    assert [tuple(t.shape) for t in network.inputs] == [(None, 3, 224, 224)]
    assert [tuple(t.shape) for t in network.outputs] == [(None, 1000)]
    assert sum(int(np.prod(w.shape)) for w in network.trainable_weights) == parameters
    assert network.layers[-1].activation.__name__ == "linear"  # raw logits: no softmax on top
