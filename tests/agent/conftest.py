"""Fixtures of the agent's tests (predictors, profilers, the bus, the zoo): the digits test split as every predictor
sees it, and the digits CNN exported to MXNet, made once per module.

The MXNet runtime (.venv-mxnet) runs tests/agent/test_predictor_suite.py through this conftest too: only numpy and
pytest are imported here, torch lazily inside its fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.mxnet import export_digits
from tests.support.paths import ASSETS

DIGITS = ASSETS / "artifacts" / "digits"


@pytest.fixture(scope="module")
def digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split as the model sees it: float32 (450, 1, 8, 8) in [0, 1], and the labels."""
    with np.load(DIGITS / "digits_test.npz") as data:
        images, labels = data["images"], data["labels"]
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2) / np.float32(16.0), dtype=np.float32)
    return x, labels


@pytest.fixture(scope="module")
def torch_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed digits weights as an npz of torch's state_dict (the export script's input)."""
    torch = pytest.importorskip("torch")
    with pytest.warns(DeprecationWarning):  # torch announces TorchScript's deprecation on load
        scripted = torch.jit.load(str(DIGITS / "digits_cnn.torchscript.pt"))
    path = tmp_path_factory.mktemp("weights") / "digits.npz"
    np.savez(path, **{key: value.numpy() for key, value in scripted.state_dict().items()})
    return path


@pytest.fixture(scope="module")
def digits_archive(torch_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN as an MXNet archive (scripts/digits_mxnet.py in .venv-mxnet); its tests are marked ``mxnet``."""
    return export_digits(torch_weights, tmp_path_factory.mktemp("export"))
