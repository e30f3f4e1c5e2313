"""One contract, every predictor: the same tests run against each framework x artifact format of the digits CNN.

The digits-cnn manifest carries the same trained weights as ONNX, TorchScript, Keras, SavedModel and MXNet
artifacts (torch.export is built here from the TorchScript weights). Each case loads its format through the
predictor its framework names, and must: report its version, answer every batch size with the declared shape and
dtype, give batches equal to single calls, reach the manifest's top-1 on the test split, close idempotently and
reload, turn a damaged artifact into a ModelLoadError naming the file, and refuse a device it cannot use with a
DeviceUnavailableError (or, where the device exists, predict correctly on it).

MXNet lives in its own environment (.venv-mxnet: numpy < 1.24), so its case runs there: the main test session runs
this same file in that interpreter (``test_the_suite_passes_in_the_mxnet_runtime``) and asserts on the outcome.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.predictor import Predictor, PredictorOptions, load_predictor_class
from tests.support.digits_exports import torch_export_digits
from tests.support.mxnet import MXNET_PYTHON
from tests.support.paths import ASSETS, REPO

RUNTIME_VARIABLE = "MLMODELSCOPE_SUITE_RUNTIME"
DIGITS = ASSETS / "artifacts" / "digits"


@dataclass(frozen=True)
class Case:
    framework: str
    format: str
    runtime: str = "main"

    def __str__(self) -> str:
        return f"{self.framework}-{self.format}"


ALL_CASES = [
    Case("onnxruntime", "onnx"),
    Case("pytorch", "torchscript"),
    Case("pytorch", "torch_export"),
    Case("tensorflow", "keras"),
    Case("tensorflow", "savedmodel"),
    Case("mxnet", "mxnet", runtime="mxnet"),
    Case("tflite", "tflite"),
]
RUNTIME = os.environ.get(RUNTIME_VARIABLE, "main")
CASES = [case for case in ALL_CASES if case.runtime == RUNTIME]
# The MXNet case runs in .venv-mxnet (the main session delegates to it): marked ``mxnet``.
CASE_PARAMS = [pytest.param(case, marks=[pytest.mark.mxnet] if case.runtime == "mxnet" else []) for case in CASES]


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


@pytest.fixture(scope="module")
def artifacts(model: Model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The path each format loads from: the manifest's artifacts through the real store (archives extracted)."""
    store = ArtifactStore(tmp_path_factory.mktemp("cache"))
    paths: dict[str, Path] = {}
    for artifact in model.spec.artifacts:
        fetch = store.fetch_and_extract if artifact.archive else store.fetch
        paths[artifact.format] = fetch(artifact.uri, artifact.sha256, base_dir=ASSETS / "models")
    if RUNTIME == "main":
        paths["torch_export"] = torch_export_digits(tmp_path_factory.mktemp("export") / "digits.pt2")
    return paths


@pytest.fixture(params=CASE_PARAMS, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


def _predictor(model: Model, case: Case, **options: object) -> Predictor:
    options.setdefault("intra_op_threads", 1)
    return load_predictor_class(case.framework)(model.spec, PredictorOptions(**options))  # type: ignore[arg-type]


@pytest.fixture
def loaded(model: Model, case: Case, artifacts: dict[str, Path]) -> Iterator[Predictor]:
    predictor = _predictor(model, case)
    predictor.load(artifacts[case.format])
    with predictor:
        yield predictor


def test_discovery_and_version(case: Case) -> None:
    cls = load_predictor_class(case.framework)
    assert cls.name == case.framework
    version = cls.library_version()
    assert version and version[0].isdigit() and "+" not in version


@pytest.mark.parametrize("batch", [1, 2, 7, 64])
def test_every_batch_size_gets_the_declared_shape_and_dtype(loaded: Predictor, batch: int) -> None:
    x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
    outputs = loaded.predict([x])
    assert len(outputs) == 1
    (logits,) = outputs
    assert isinstance(logits, np.ndarray)
    assert logits.shape == (batch, 10) and logits.dtype == np.float32
    assert np.isfinite(logits).all()


def test_a_batch_equals_its_single_calls(loaded: Predictor) -> None:
    x = np.random.default_rng(1).random((5, 1, 8, 8), dtype=np.float32)
    batched = loaded.predict([x])[0]
    single = np.concatenate([loaded.predict([x[i : i + 1]])[0] for i in range(5)])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_read_only_inputs_are_accepted(loaded: Predictor) -> None:
    x = np.random.default_rng(2).random((3, 1, 8, 8), dtype=np.float32)
    x.flags.writeable = False  # the sample library hands out views of a read-only array
    assert loaded.predict([x])[0].shape == (3, 10)


def test_top1_on_the_test_split_is_the_manifests(
    model: Model, loaded: Predictor, digits_test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    x, labels = digits_test_split
    logits = np.concatenate([loaded.predict([x[i : i + 64]])[0] for i in range(0, len(x), 64)])
    assert model.spec.attributes.top1 is not None
    assert round(float(np.mean(logits.argmax(axis=1) == labels)), 4) == model.spec.attributes.top1


def test_close_is_idempotent_and_the_predictor_reloads(model: Model, case: Case, artifacts: dict[str, Path]) -> None:
    predictor = _predictor(model, case)
    predictor.load(artifacts[case.format])
    x = np.random.default_rng(4).random((2, 1, 8, 8), dtype=np.float32)
    first = predictor.predict([x])[0]
    predictor.close()
    predictor.close()
    predictor.load(artifacts[case.format])
    np.testing.assert_allclose(predictor.predict([x])[0], first, atol=1e-6)
    predictor.close()


def _damaged(case: Case, artifacts: dict[str, Path], folder: Path) -> Path:
    """An artifact of the case's format whose bytes are garbage (a file, or a folder of the right shape)."""
    good = artifacts[case.format]
    if good.is_dir():
        damaged = folder / "damaged"
        damaged.mkdir()
        for member in good.rglob("*"):
            if member.is_file():
                target = damaged / member.relative_to(good)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"this is not a model " * 8)
        return damaged
    damaged = folder / f"damaged{''.join(good.suffixes)}"
    damaged.write_bytes(b"this is not a model " * 8)
    return damaged


def test_a_damaged_artifact_is_a_model_load_error_naming_it(
    model: Model, case: Case, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    damaged = _damaged(case, artifacts, tmp_path)
    with pytest.raises(ModelLoadError) as info:
        _predictor(model, case).load(damaged)
    assert str(damaged) in info.value.message
    assert info.value.hint


def test_a_device_the_framework_cannot_use_is_refused(model: Model, case: Case, artifacts: dict[str, Path]) -> None:
    with pytest.raises(DeviceUnavailableError) as info:
        _predictor(model, case, device="fpga").load(artifacts[case.format])
    assert "fpga" in info.value.message


def test_gpu_runs_or_is_refused_with_advice(
    model: Model, case: Case, artifacts: dict[str, Path], digits_test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    predictor = _predictor(model, case, device="gpu")
    try:
        predictor.load(artifacts[case.format])
    except DeviceUnavailableError as e:  # no CUDA build or no GPU here: the message says how to get one
        assert "gpu" in e.message.lower() or "cuda" in e.message.lower()
        assert e.hint
        return
    with predictor:  # a GPU is there: it must answer like the CPU
        x, labels = digits_test_split
        logits = predictor.predict([x[:64]])[0]
        assert float(np.mean(logits.argmax(axis=1) == labels[:64])) > 0.9


@pytest.mark.mxnet
@pytest.mark.skipif(RUNTIME != "main", reason="the main session delegates to the MXNet runtime")
def test_the_suite_passes_in_the_mxnet_runtime() -> None:
    completed = subprocess.run(
        [
            str(MXNET_PYTHON),
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            str(Path(__file__).relative_to(REPO)),
        ],
        cwd=REPO,
        env={**os.environ, RUNTIME_VARIABLE: "mxnet", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "passed" in summary and "failed" not in summary and "error" not in summary, summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 12, summary  # every contract test ran for MXNet
    skips = [line for line in completed.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("main session" in line for line in skips), skips  # only the tests that drive other runtimes


@pytest.mark.mxnet
@pytest.mark.skipif(RUNTIME != "main", reason="the main session drives the MXNet runtime")
@pytest.mark.parametrize("framework", ["tensorflow", "pytorch", "onnxruntime"])
def test_a_framework_missing_from_a_runtime_says_how_to_install_it(framework: str) -> None:
    """The MXNet environment has none of the other frameworks: asking for one names the package to install."""
    script = (
        "from mlmodelscope.core.errors import FrameworkUnavailableError\n"
        "from mlmodelscope.core.predictor import load_predictor_class\n"
        "try:\n"
        f"    load_predictor_class({framework!r}).library_version()\n"
        "except FrameworkUnavailableError as e:\n"
        "    print(e.message); print(e.hint)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    completed = subprocess.run(
        [str(MXNET_PYTHON), "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    message, hint = completed.stdout.strip().splitlines()[:2]
    assert "not installed" in message
    assert f"mlmodelscope-agent[{framework}]" in hint
