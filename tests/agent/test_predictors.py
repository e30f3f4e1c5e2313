"""Predictors behind the one interface: discovery, load, predict shapes, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from mlmodelscope.core.errors import DeviceUnavailableError, FrameworkUnavailableError, ModelLoadError
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.predictor import PredictorOptions, available_predictors, load_predictor_class
from tests.support.paths import ASSETS

ONNX = ASSETS / "artifacts" / "digits" / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


def test_predictors_are_discovered_by_entry_point() -> None:
    assert {"null", "onnxruntime"} <= set(available_predictors())
    with pytest.raises(FrameworkUnavailableError, match="no predictor named 'caffe'"):
        load_predictor_class("caffe")


@pytest.mark.parametrize("batch", [1, 2, 7, 64])
def test_the_null_predictor_returns_one_batch_of_declared_outputs(model: Model, batch: int) -> None:
    predictor = load_predictor_class("null")(model.spec, PredictorOptions(intra_op_threads=1))
    predictor.load(ONNX)
    with predictor:
        x = np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)
        (logits,) = predictor.predict([x])
        assert logits.shape == (batch, 10)
        assert logits.dtype == np.float32


def test_manifest_tensor_names_must_match_the_graph(model: Model) -> None:
    renamed = model.spec.model_copy(update={"inputs": [model.spec.inputs[0].model_copy(update={"name": "pixels"})]})
    predictor = load_predictor_class("onnxruntime")(renamed, PredictorOptions())
    with pytest.raises(ModelLoadError, match=r"declares \['pixels'\]"):
        predictor.load(ONNX)


@pytest.mark.parametrize(("name", "device"), [("null", "gpu"), ("null", "fpga")])
def test_unavailable_device_is_a_clear_error(model: Model, name: str, device: str) -> None:
    predictor = load_predictor_class(name)(model.spec, PredictorOptions(device=device))  # type: ignore[arg-type]
    with pytest.raises(DeviceUnavailableError) as info:
        predictor.load(ONNX)
    assert device in info.value.message
