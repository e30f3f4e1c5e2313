"""The predictor base (agent/predictors/base.py): the framework import naming its extra, the manifest-vs-model
signature checks and their exact messages, warm-up and the bound hot path."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor
from mlmodelscope.agent.predictors.signature import check_count, check_tensor, count_mismatch, match_names
from mlmodelscope.core.errors import FrameworkUnavailableError, ModelLoadError, PredictorError
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.manifests.model_tensors import TensorSpec
from mlmodelscope.core.predictor import PredictorOptions, available_predictors, load_predictor_class
from tests.support.paths import ASSETS, REPO

ONNX = ASSETS / "artifacts" / "digits" / "digits_cnn.onnx"
AGENT_EXTRAS = tomllib.loads((REPO / "services" / "agent" / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
FRAMEWORKS = ["onnxruntime", "pytorch", "tensorflow", "tflite", "mxnet"]


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


def _specs(*names: str, shape: list[int] | None = None) -> list[TensorSpec]:
    return [TensorSpec(name=name, shape=shape or [1, 8, 8]) for name in names]


# --- the framework import ---------------------------------------------------------------------------------------


def test_a_missing_framework_names_the_extra_that_installs_it() -> None:
    package = FrameworkPackage("Caffe", "mlmodelscope_test_no_such_framework", "caffe", "(a CUDA build for gpu)")
    with pytest.raises(FrameworkUnavailableError) as info:
        package.load()
    assert info.value.message == "Caffe is not installed in this runtime."
    assert info.value.hint == "`pip install 'mlmodelscope-agent[caffe]'` (a CUDA build for gpu)."
    assert isinstance(info.value.__cause__, ImportError)
    assert FrameworkPackage("X", "x", "x").install_hint == "`pip install 'mlmodelscope-agent[x]'`."


def test_a_broken_install_says_what_failed_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mlmodelscope_test_broken.py").write_text("import mlmodelscope_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FrameworkUnavailableError) as info:
        FrameworkPackage("Broken", "mlmodelscope_test_broken", "broken").load()
    assert info.value.message == (
        "Broken cannot be imported in this runtime (No module named 'mlmodelscope_test_absent_dependency')."
    )
    assert "mlmodelscope-agent[broken]" in info.value.hint
    sys.modules.pop("mlmodelscope_test_broken", None)


def test_a_quiet_import_ignores_the_frameworks_own_deprecation_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mlmodelscope_test_noisy.py").write_text(
        "import warnings\nwarnings.warn('np.bool', DeprecationWarning)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mlmodelscope_test_noisy", raising=False)
    with pytest.warns(DeprecationWarning, match="np.bool"):
        FrameworkPackage("Noisy", "mlmodelscope_test_noisy", "noisy").load()
    monkeypatch.delitem(sys.modules, "mlmodelscope_test_noisy")
    assert FrameworkPackage("Noisy", "mlmodelscope_test_noisy", "noisy", quiet_import=True).load().__name__ == (
        "mlmodelscope_test_noisy"
    )


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_every_predictor_names_its_own_extra_when_its_framework_is_missing(
    name: str, model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name not in available_predictors():
        pytest.skip(f"the {name} predictor is not registered in this runtime")
    cls = load_predictor_class(name)
    assert issubclass(cls, FrameworkPredictor)
    assert cls.package.extra in AGENT_EXTRAS  # the hint names an extra that exists
    top = cls.package.module.split(".")[0]
    for module in [top, *(m for m in sys.modules if m.startswith(f"{top}."))]:  # as if not installed
        monkeypatch.setitem(sys.modules, module, None)
    calls = [cls.library_version]
    if name != "mxnet":  # MXNet looks for its checkpoint files before it imports MXNet
        calls.append(lambda: cls(model.spec, PredictorOptions()).load(ONNX))
    for call in calls:
        with pytest.raises(FrameworkUnavailableError) as info:
            call()
        assert info.value.message == f"{cls.package.label} is not installed in this runtime."
        assert f"`pip install 'mlmodelscope-agent[{cls.package.extra}]'`" in info.value.hint


# --- the manifest's signature against the model -----------------------------------------------------------------


def test_names_are_matched_by_name_in_declared_order() -> None:
    assert match_names("m", "input", ["b", "a", "c"], _specs("a", "b")) == [1, 0]


def test_a_declared_name_the_model_lacks_is_the_exact_error() -> None:
    with pytest.raises(ModelLoadError) as info:
        match_names("the ONNX graph g.onnx", "input", ["input"], _specs("pixels"))
    assert info.value.message == (
        "the ONNX graph g.onnx has no input named 'pixels' (its inputs: ['input']); the manifest declares ['pixels']."
    )
    assert info.value.hint == "Fix spec.inputs[].name in the Model manifest."


def test_a_complete_match_refuses_model_tensors_the_manifest_leaves_out() -> None:
    with pytest.raises(ModelLoadError) as info:
        match_names("g", "input", ["data", "mask"], _specs("data"), complete=True, hint=", or check the params")
    assert info.value.message == (
        "g has inputs ['mask'] that the manifest does not declare (its inputs: ['data', 'mask']); the manifest "
        "declares ['data']."
    )
    assert info.value.hint == "Fix spec.inputs[].name in the Model manifest, or check the params."


def test_positional_pairing_when_names_differ() -> None:
    assert match_names("m", "input", ["x", "y"], _specs("a", "b"), positional="same_count") == [0, 1]
    assert match_names("m", "input", ["data"], _specs("image"), positional="single") == [0]
    with pytest.raises(ModelLoadError, match="has no input named 'a'"):
        match_names("m", "input", ["x", "y"], _specs("a", "b"), positional="single")
    with pytest.raises(ModelLoadError) as info:
        match_names("the TensorFlow model t", "input", ["x", "y"], _specs("a"), positional="same_count")
    assert info.value.message == "the TensorFlow model t has 2 inputs ['x', 'y'], but the manifest declares 1 ['a']."
    assert info.value.hint == "Fix spec.inputs in the Model manifest (one entry per model input, in order)."


def test_a_count_mismatch_is_the_exact_error() -> None:
    check_count("m", "output", ["logits"], _specs("logits"))
    with pytest.raises(ModelLoadError) as info:
        check_count("the Keras model k.keras", "output", 2, _specs("logits"))
    assert info.value.message == "the Keras model k.keras has 2 outputs, but the manifest declares 1 ['logits']."
    returned = count_mismatch("the PyTorch model", "output", 3, _specs("a"), verb="returned", error=PredictorError)
    assert type(returned) is PredictorError
    assert returned.message == "the PyTorch model returned 3 outputs, but the manifest declares 1 ['a']."


def test_a_dtype_mismatch_is_the_exact_error() -> None:
    declared = TensorSpec(name="input", shape=[1, 8, 8], dtype="uint8")
    with pytest.raises(ModelLoadError) as info:
        check_tensor("the TFLite model m.tflite", "input", "input", "float32", [-1, 1, 8, 8], declared)
    assert info.value.message == (
        "the TFLite model m.tflite has input 'input' as float32, but the manifest declares uint8."
    )
    assert info.value.hint == (
        "Fix spec.inputs[].dtype in the Model manifest (or use the model variant with a uint8 interface)."
    )


def test_a_shape_mismatch_is_the_exact_error_naming_both_tensors() -> None:
    declared = TensorSpec(name="image", shape=[1, 9, 9])
    with pytest.raises(ModelLoadError) as info:
        check_tensor("the TensorFlow model t", "input", "x", "float32", [-1, 1, 8, 8], declared)
    assert info.value.message == (
        "the TensorFlow model t has input 'x' shaped [1, 8, 8] per sample (shape signature [-1, 1, 8, 8]), but the "
        "manifest declares 'image' as [1, 9, 9]."
    )
    assert info.value.hint == "Fix spec.inputs[].shape in the Model manifest (one sample, without the batch axis)."


@pytest.mark.parametrize(
    ("model_shape", "declared_shape", "fits"),
    [
        ([-1, 1, 8, 8], [1, 8, 8], True),
        ([-1, 1, -1, 8], [1, 8, 8], True),  # dynamic in the model
        ([-1, 1, 8, 8], [1, -1, 8], True),  # dynamic in the manifest
        ([-1, 1, 8, 8], [1, 64], False),  # another rank
        ([-1, 1, 8, 8], [8, 8, 1], False),
    ],
)
def test_shapes_fit_axis_by_axis_with_dynamic_axes_on_either_side(
    model_shape: list[int], declared_shape: list[int], fits: bool
) -> None:
    declared = TensorSpec(name="x", shape=declared_shape)
    if fits:
        check_tensor("m", "input", "x", "float32", model_shape, declared)
    else:
        with pytest.raises(ModelLoadError, match="per sample"):
            check_tensor("m", "input", "x", "float32", model_shape, declared)


def test_a_real_predictor_reports_the_exact_signature_error(model: Model) -> None:
    renamed = model.spec.model_copy(update={"inputs": [model.spec.inputs[0].model_copy(update={"name": "pixels"})]})
    with pytest.raises(ModelLoadError) as info:
        load_predictor_class("onnxruntime")(renamed, PredictorOptions()).load(ONNX)
    assert info.value.message == (
        f"the ONNX graph {ONNX} has no input named 'pixels' (its inputs: ['input']); the manifest declares ['pixels']."
    )


@pytest.mark.parametrize(
    ("name", "artifact"),
    [("onnxruntime", "digits_cnn.onnx"), ("pytorch", "digits_cnn.torchscript.pt"), ("tflite", "digits_cnn.tflite")],
)
def test_read_only_inputs_give_the_same_outputs_without_a_warning(model: Model, name: str, artifact: str) -> None:
    """Samples may arrive read-only (np.frombuffer of cached bytes): no warning (an error here), no other answer."""
    if name not in available_predictors():
        pytest.skip(f"the {name} predictor is not registered in this runtime")
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    read_only = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(x.shape)
    assert not read_only.flags.writeable
    with load_predictor_class(name)(model.spec, PredictorOptions(intra_op_threads=1)) as predictor:
        predictor.load(ASSETS / "artifacts" / "digits" / artifact)
        expected = [np.array(y) for y in predictor.predict([x])]
        got = predictor.predict([read_only])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


# --- warm-up and the bound hot path -----------------------------------------------------------------------------


class _Counting(FrameworkPredictor):
    name = "counting"
    package = FrameworkPackage("Counting", "numpy", "counting")

    def load(self, artifact_path: Path) -> None:
        self.batches: list[list[tuple[tuple[int, ...], str]]] = []

        def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
            self.batches.append([(x.shape, x.dtype.name) for x in inputs])
            return []

        self.bind_predict(predict)
        self.warm_up(2)


def test_warm_up_runs_declared_shapes_at_batch_one_and_close_unbinds(model: Model) -> None:
    spec = model.spec.model_copy(update={"inputs": [model.spec.inputs[0].model_copy(update={"shape": [1, -1, 8]})]})
    predictor = _Counting(spec, PredictorOptions())
    with pytest.raises(RuntimeError, match=r"_Counting\.predict called before load\(\)"):
        predictor.predict([])
    predictor.load(ONNX)
    assert predictor.batches == [[((1, 1, 1, 8), "float32")]] * 2  # the dynamic axis warms up as 1
    predictor.warm_up(1, [np.zeros((4, 1, 8, 8), np.float32)])
    assert predictor.batches[-1] == [((4, 1, 8, 8), "float32")]
    assert predictor.library_version() == np.__version__
    predictor.close()
    with pytest.raises(RuntimeError, match="called before load"):
        predictor.predict([])
