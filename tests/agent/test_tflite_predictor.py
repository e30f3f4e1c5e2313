"""The TensorFlow Lite predictor with real LiteRT: the digits CNN converted from the committed .keras file
(scripts/digits_tflite.py), float32 and int8, against ONNX Runtime on the same trained weights; manifest
signature checks, batch-size changes, devices, and the honest absence of an op profiler."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError, PredictorError
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.predictor import Predictor, PredictorOptions, available_predictors, load_predictor_class
from tests.support.cli import run_cli
from tests.support.paths import ASSETS, REPO

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="ai-edge-litert is not installed: `pip install 'mlmodelscope-agent[tflite]'`"
)

DIGITS = ASSETS / "artifacts" / "digits"
FLOAT32 = DIGITS / "digits_cnn.tflite"
INT8 = DIGITS / "digits_cnn.int8.tflite"
ONNX = DIGITS / "digits_cnn.onnx"
KNOWN_TOP1 = 0.9889  # 445/450, the manifest's figure (ONNX Runtime)


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


@pytest.fixture(scope="module")
def onnx_logits(model: Model, digits_test_split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    with load_predictor_class("onnxruntime")(model.spec, PredictorOptions(intra_op_threads=1)) as onnx:
        onnx.load(ONNX)
        return np.asarray(onnx.predict([digits_test_split[0]])[0])


def _predictor(spec: ModelSpec, **options: Any) -> Predictor:
    options.setdefault("intra_op_threads", 1)
    return load_predictor_class("tflite")(spec, PredictorOptions(**options))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def _with_tensor(spec: ModelSpec, kind: str, **changes: Any) -> ModelSpec:
    """``spec`` with its first input (``kind="inputs"``) or output changed."""
    tensors = list(getattr(spec, kind))
    tensors[0] = tensors[0].model_copy(update=changes)
    return spec.model_copy(update={kind: tensors})


# --- discovery, the committed artifacts -------------------------------------------------------------------------


def test_tflite_is_discovered_by_entry_point() -> None:
    import ai_edge_litert

    assert "tflite" in available_predictors()
    cls = load_predictor_class("tflite")
    assert cls.name == "tflite"
    assert cls.library_version() == ai_edge_litert.__version__
    framework = load_registry([ASSETS]).framework("tflite").spec
    assert framework.formats == ["tflite"] and framework.accelerators == ["cpu"]


def test_committed_artifacts_match_their_checksums(model: Model) -> None:
    sums = dict(line.split()[::-1] for line in (DIGITS / "SHA256SUMS").read_text().splitlines())
    for path in (FLOAT32, INT8):
        assert sums[path.name] == hashlib.sha256(path.read_bytes()).hexdigest(), path.name
    (artifact,) = [a for a in model.spec.artifacts if a.format == "tflite"]
    assert artifact.sha256 == sums[FLOAT32.name]


@pytest.mark.slow
def test_the_conversion_is_byte_deterministic(tmp_path: Path) -> None:
    """scripts/digits_tflite.py rebuilds both committed flatbuffers byte for byte from digits_cnn.keras."""
    pytest.importorskip("tensorflow", reason="the conversion needs TensorFlow's TFLiteConverter")
    spec = importlib.util.spec_from_file_location("digits_tflite", REPO / "scripts" / "digits_tflite.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for path in script.export_tflite(script.KERAS_PATH, tmp_path):
        assert path.read_bytes() == (DIGITS / path.name).read_bytes(), path.name


# --- the same model as ONNX Runtime -----------------------------------------------------------------------------


def test_float32_agrees_with_onnxruntime(
    model: Model, digits_test_split: tuple[np.ndarray, np.ndarray], onnx_logits: np.ndarray
) -> None:
    x, labels = digits_test_split
    with _predictor(model.spec) as predictor:
        predictor.load(FLOAT32)
        logits = np.asarray(predictor.predict([x])[0])
    assert logits.shape == (450, 10) and logits.dtype == np.float32
    assert float(np.max(np.abs(_softmax(logits) - _softmax(onnx_logits)))) <= 1e-5
    np.testing.assert_array_equal(np.argmax(logits, axis=1), np.argmax(onnx_logits, axis=1))
    assert int(np.sum(np.argmax(logits, axis=1) == labels)) == 445


def test_int8_variant_runs_and_keeps_the_accuracy(
    model: Model, digits_test_split: tuple[np.ndarray, np.ndarray], onnx_logits: np.ndarray
) -> None:
    """Full-integer quantisation (float32 interface): measured 445/450 top-1, like float32; >= 99% agreement."""
    x, labels = digits_test_split
    with _predictor(model.spec) as predictor:
        predictor.load(INT8)
        logits = np.asarray(predictor.predict([x])[0])
    top1 = float(np.mean(np.argmax(logits, axis=1) == labels))
    agreement = float(np.mean(np.argmax(logits, axis=1) == np.argmax(onnx_logits, axis=1)))
    print(f"int8 top-1 {top1:.4f}, top-1 agreement with float32 ONNX Runtime {agreement:.4f}")
    assert top1 >= KNOWN_TOP1 - 0.01
    assert agreement >= 0.99
    assert not np.array_equal(logits, onnx_logits)  # it really is another model: quantised logits


def _evaluate(assets: Path, tmp_path: Path, framework: str) -> RunResult:
    request = RunRequest(
        model="digits-cnn",
        framework=framework,
        dataset=None,
        settings=EvaluationSettings(mode="accuracy", warmup_queries=2),
        output_dir=tmp_path / framework,
        intra_op_threads=1,
    )
    return execute_run(load_registry([assets]), ArtifactStore(tmp_path / "cache"), request)


def test_an_evaluation_reaches_the_accuracy_of_onnxruntime(tmp_path: Path) -> None:
    tflite = _evaluate(ASSETS, tmp_path, "tflite")
    onnx = _evaluate(ASSETS, tmp_path, "onnxruntime")
    assert tflite.framework.name == "tflite" and tflite.framework.version == "2.3.0"
    assert tflite.accuracy is not None and onnx.accuracy is not None
    assert tflite.accuracy.count == 450
    assert tflite.accuracy.top1 == onnx.accuracy.top1 == pytest.approx(KNOWN_TOP1, abs=1e-4)
    assert tflite.accuracy.top5 == onnx.accuracy.top5


def test_an_evaluation_of_the_int8_variant(scratch_assets: Path, tmp_path: Path) -> None:
    manifest = scratch_assets / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    (entry,) = [a for a in document["spec"]["artifacts"] if a["format"] == "tflite"]
    entry.update(uri=f"../artifacts/digits/{INT8.name}", sha256=hashlib.sha256(INT8.read_bytes()).hexdigest())
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    result = _evaluate(scratch_assets, tmp_path, "tflite")
    assert result.accuracy is not None and result.accuracy.count == 450
    print(f"int8 through the runner: top-1 {result.accuracy.top1:.4f}, top-5 {result.accuracy.top5}")
    assert result.accuracy.top1 is not None and result.accuracy.top1 >= KNOWN_TOP1 - 0.01


@pytest.mark.slow
def test_the_cli_compares_tflite_with_onnxruntime(tmp_path: Path) -> None:
    output = tmp_path / "summary.json"
    run = run_cli(
        *("--cache-dir", str(tmp_path / "cache"), "evaluate", "--model", "digits-cnn"),
        *("--framework", "onnxruntime,tflite", "--mode", "accuracy", "--output", str(output)),
        cwd=REPO,
        data_dir=tmp_path / "data",
        timeout_s=600,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    summary = json.loads(output.read_text())
    results = {r["framework"]["name"]: r for r in summary["results"]}
    assert results["tflite"]["accuracy"]["top1"] == results["onnxruntime"]["accuracy"]["top1"]
    (compared,) = summary["agreement"]
    assert compared["framework"].split()[0] == "tflite" and compared["samples"] == 450
    assert compared["top1_agreement"] == 1.0
    assert compared["max_abs_probability_diff"] <= 1e-5


# --- batches ----------------------------------------------------------------------------------------------------


def test_batch_size_changes_resize_only_when_needed(
    model: Model, digits_test_split: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    allocate = litert.Interpreter.allocate_tensors

    def counting_allocate(self: Any) -> Any:
        calls.append("allocate")
        return allocate(self)

    monkeypatch.setattr(litert.Interpreter, "allocate_tensors", counting_allocate)
    x = digits_test_split[0]
    with _predictor(model.spec) as predictor:
        predictor.load(FLOAT32)
        assert calls == ["allocate"]  # load allocates for one sample
        reference = np.concatenate([np.asarray(predictor.predict([x[i : i + 1]])[0]) for i in range(64)])
        assert calls == ["allocate"]  # 64 calls at batch 1: no re-allocation
        for batch in (7, 7, 64, 64, 1, 3):
            out = np.asarray(predictor.predict([x[:batch]])[0])
            assert out.shape == (batch, 10)
            np.testing.assert_allclose(out, reference[:batch], atol=1e-5)
        assert len(calls) == 1 + 4  # 7, 64, 1, 3: once per change


def test_outputs_are_owned_copies(model: Model, digits_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    """A later invoke does not overwrite what an earlier call returned (the driver may keep it)."""
    x = digits_test_split[0]
    with _predictor(model.spec) as predictor:
        predictor.load(FLOAT32)
        first = predictor.predict([x[:2]])[0]
        kept = np.array(first, copy=True)
        predictor.predict([x[2:4]])
        np.testing.assert_array_equal(first, kept)


def test_a_strided_view_gives_the_same_answer(model: Model, digits_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    """Batches the harness slices out of a larger array need not be contiguous: set_tensor copies them in."""
    x = digits_test_split[0][:6]
    wide = np.zeros((6, 1, 8, 16), np.float32)
    wide[..., ::2] = x
    view = wide[..., ::2]
    assert not view.flags["C_CONTIGUOUS"]
    with _predictor(model.spec) as predictor:
        predictor.load(FLOAT32)
        np.testing.assert_array_equal(predictor.predict([view])[0], predictor.predict([x])[0])


def test_wrong_inputs_are_a_predictor_error(model: Model) -> None:
    with _predictor(model.spec) as predictor:
        predictor.load(FLOAT32)
        with pytest.raises(PredictorError, match=r"LiteRT rejected the inputs \(float64\[2, 1, 8, 8\]\)"):
            predictor.predict([np.zeros((2, 1, 8, 8), np.float64)])
        with pytest.raises(
            PredictorError, match=r"on inputs shaped \[\[2, 64\]\]: the model's inputs are shaped \[\[-1, 1"
        ):
            predictor.predict([np.zeros((2, 64), np.float32)])
        with pytest.raises(PredictorError, match="only allows mutating unknown dimensions"):
            predictor.predict([np.zeros((2, 1, 9, 9), np.float32)])  # a fixed axis is never resized
        assert predictor.predict([np.zeros((2, 1, 8, 8), np.float32)])[0].shape == (2, 10)  # still usable


BLAZEFACE = ASSETS / "artifacts" / "blazeface" / "face_detection_short_range.tflite"


@pytest.mark.skipif(not BLAZEFACE.exists(), reason="the BlazeFace artifact (a fixed-batch .tflite) is not in assets")
def test_a_fixed_batch_model_refuses_other_batch_sizes() -> None:
    """MediaPipe's BlazeFace takes exactly [1, 128, 128, 3]: a non-strict resize to 4 would "work" and fold the
    batch into the anchors axis ((1, 3584, 16)); the predictor refuses it and keeps working at batch 1."""
    spec = load_registry([ASSETS]).model("blazeface").spec
    x = np.random.default_rng(0).random((4, 128, 128, 3), dtype=np.float32)
    with _predictor(spec) as predictor:
        predictor.load(BLAZEFACE)
        single = [np.asarray(o) for o in predictor.predict([x[:1]])]
        with pytest.raises(PredictorError, match=r"inputs are shaped \[\[1, 128, 128, 3\]\]") as raised:
            predictor.predict([x])
        assert "--batch-size equal to it" in str(raised.value.hint)
        again = predictor.predict([x[:1]])
    assert [o.shape for o in single] == [(1, 896, 16), (1, 896, 1)]
    for before, after in zip(single, again, strict=True):
        np.testing.assert_array_equal(before, after)


# --- the manifest's signature against the model -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "changes", "message"),
    [
        ("inputs", {"name": "pixels"}, r"has no input named 'pixels' \(its inputs: \['input', 'serving_default_"),
        ("outputs", {"name": "probabilities"}, r"has no output named 'probabilities' \(its outputs: \['StatefulPart"),
        ("inputs", {"dtype": "uint8"}, r"has input 'input' as float32, but the manifest declares uint8"),
        ("inputs", {"shape": [8, 8, 1]}, r"input 'input' shaped \[1, 8, 8\] per sample \(shape signature \[-1, 1, "),
        ("inputs", {"shape": [1, 64]}, r"shaped \[1, 8, 8\] per sample .* declares \[1, 64\]"),
        ("outputs", {"shape": [1000]}, r"output 'logits' shaped \[10\] per sample .* declares \[1000\]"),
        ("outputs", {"dtype": "int8"}, r"has output 'logits' as float32, but the manifest declares int8"),
    ],
)
def test_a_manifest_that_does_not_fit_is_a_model_load_error(
    model: Model, kind: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message) as raised:
        _predictor(_with_tensor(model.spec, kind, **changes)).load(FLOAT32)
    assert str(FLOAT32) in raised.value.message and raised.value.hint


def test_tensor_names_and_dynamic_axes_are_accepted(model: Model) -> None:
    spec = _with_tensor(model.spec, "inputs", name="serving_default_input:0", shape=[1, -1, 8])
    with _predictor(spec) as predictor:
        predictor.load(FLOAT32)
        assert predictor.predict([np.zeros((3, 1, 8, 8), np.float32)])[0].shape == (3, 10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "x.tflite").write_bytes(b"not a flatbuffer") and d / "x.tflite", "LiteRT could not load"),
        (lambda d: d / "missing.tflite", "LiteRT could not load"),
        (lambda d: [shutil.copy(FLOAT32, d / n) for n in ("a.tflite", "b.tflite")] and d, "holding 2 .tflite files"),
    ],
)
def test_bad_artifacts_are_model_load_errors(model: Model, tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        _predictor(model.spec).load(make(tmp_path))


def test_an_unpacked_archive_with_one_model_is_accepted(model: Model, tmp_path: Path) -> None:
    (tmp_path / "top").mkdir()
    shutil.copy(FLOAT32, tmp_path / "top" / "model.tflite")
    with _predictor(model.spec) as predictor:
        predictor.load(tmp_path)
        assert predictor.predict([np.zeros((1, 1, 8, 8), np.float32)])[0].shape == (1, 10)


# --- devices, profiling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["gpu", "fpga"])
def test_only_the_cpu_is_accepted(model: Model, device: str) -> None:
    with pytest.raises(DeviceUnavailableError, match=f"CPU kernels \\(XNNPACK\\) only, not device '{device}'"):
        _predictor(model.spec, device=device).load(FLOAT32)


def test_profiling_is_unavailable_and_says_why(model: Model, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="mlmodelscope.agent.predictors.tflite"),
        _predictor(model.spec, profile_dir=tmp_path) as predictor,
    ):
        predictor.load(FLOAT32)
        assert predictor.framework_profiler() is None
    assert any("no op profiler" in r.getMessage() for r in caplog.records)
