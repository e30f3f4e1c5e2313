"""Helpers for the shapes fixtures' tests: their checksums, the test split as model inputs, each export run in-process.

The fixtures are made by scripts/build_shapes.py; tests/agent/test_shapes_models.py checks them. The inputs are made by
MLModelScope's own pre-processing (``core.processing.preprocess.Preprocessor``) from the committed archive, so a
test that compares them with the build script's tensors checks that the manifests declare what the models learned.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.processing.preprocess import Preprocessor
from tests.support.cli import run_cli
from tests.support.paths import ASSETS, REPO

SHAPES = ASSETS / "artifacts" / "shapes"
ARCHIVE = SHAPES / "shapes-coco.tar.gz"
MODELS = {"shapes-detector": "shapes_detector", "shapes-segmenter": "shapes_segmenter"}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "keras": ".keras", "mxnet": ".mxnet.tar"}
FRAMEWORKS = ("onnxruntime", "pytorch", "tensorflow", "mxnet")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sums(folder: Path = SHAPES) -> dict[str, str]:
    """SHA256SUMS as {file name: digest}."""
    pairs = (line.split() for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def model(name: str) -> Model:
    return load_registry([ASSETS]).model(name)


@cache
def archive_members() -> dict[str, bytes]:
    """The committed COCO archive's files by member name."""
    with tarfile.open(ARCHIVE, mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def annotations() -> dict[str, Any]:
    return json.loads(archive_members()["annotations.json"])  # type: ignore[no-any-return]


def model_inputs(name: str, count: int) -> np.ndarray:
    """The first ``count`` test images (by id), pre-processed as the model's manifest says: (count, 3, 128, 128)."""
    images = sorted(annotations()["images"], key=lambda image: image["id"])[:count]
    preprocess = Preprocessor(model(name).spec.inputs[0].preprocess)
    return preprocess.batch([archive_members()[f"images/{image['file_name']}"] for image in images])


def run_export(fmt: str, path: Path, x: np.ndarray) -> list[np.ndarray]:
    """Run one committed export in this process (onnx, torchscript or keras) and return its outputs in order."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        return [np.asarray(a) for a in session.run(None, {"input": x})]
    if fmt == "torchscript":
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            result = loaded(torch.from_numpy(x))
        return [r.numpy() for r in (result if isinstance(result, tuple) else (result,))]
    if fmt == "keras":
        import keras

        loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        result = loaded(x, training=False)
        return [np.asarray(r) for r in (result if isinstance(result, list | tuple) else [result])]
    raise ValueError(f"run_export cannot run {fmt} in this process")


def evaluate_everywhere(tmp_path: Path, name: str, timeout_s: float = 1500) -> dict[str, Any]:
    """``mlmodelscope evaluate`` of model ``name`` in accuracy mode on all four frameworks; the summary JSON."""
    output = tmp_path / "summary.json"
    run = run_cli(
        "--cache-dir",
        str(tmp_path / "cache"),
        "evaluate",
        "--model",
        name,
        "--dataset",
        "shapes-coco",
        "--framework",
        ",".join(FRAMEWORKS),
        "--mode",
        "accuracy",
        "--output",
        str(output),
        cwd=REPO,
        data_dir=tmp_path / "data",
        timeout_s=timeout_s,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    return json.loads(output.read_text())  # type: ignore[no-any-return]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
