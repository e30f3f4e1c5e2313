"""The operator's pure inputs for its tests: the committed digits manifests as a team's catalog, with the container
images the committed Framework manifests do not carry, and an Evaluation spec of them.

No API server is involved (tests/support/operator_harness.py runs the real operator against KMock).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlmodelscope.core.manifests.resources import Dataset, Framework, Model
from mlmodelscope.operator import planning
from mlmodelscope.operator.evaluation import EvaluationSpec
from tests.support.paths import ASSETS

# Container images added to scratch copies of the Framework manifests (the committed ones carry none yet).
CONTAINERS = {
    "onnxruntime": [
        {"arch": "amd64", "accelerator": "cpu", "image": "ghcr.io/mlmodelscope/agent-onnxruntime:0.1.0"},
        {"arch": "arm64", "accelerator": "cpu", "image": "ghcr.io/mlmodelscope/agent-onnxruntime:0.1.0"},
        {"arch": "amd64", "accelerator": "gpu", "image": "ghcr.io/mlmodelscope/agent-onnxruntime:0.1.0-cuda"},
    ],
    "pytorch": [
        {"arch": "amd64", "accelerator": "cpu", "image": "ghcr.io/mlmodelscope/agent-pytorch:0.1.0"},
        {"arch": "arm64", "accelerator": "cpu", "image": "ghcr.io/mlmodelscope/agent-pytorch:0.1.0"},
        {"arch": "amd64", "accelerator": "gpu", "image": "ghcr.io/mlmodelscope/agent-pytorch:0.1.0-cuda"},
    ],
}


def load_resource(cls: Any, path: Path, **spec_changes: Any) -> Any:
    """The manifest at ``path`` as ``cls`` (Model, Framework, Dataset), with ``spec_changes`` applied to its spec."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["spec"].update(spec_changes)
    return cls.model_validate(document)


def digits_catalog(**framework_changes: Any) -> planning.ResourceCatalog:
    """Team ``team-a``'s catalog: digits-cnn, the digits dataset and onnxruntime with container images for CPU,
    GPU and FPGA targets (``framework_changes`` replace fields of its spec)."""
    framework = load_resource(
        Framework,
        ASSETS / "frameworks/onnxruntime.yaml",
        containers=CONTAINERS["onnxruntime"]
        + [{"arch": "amd64", "accelerator": "fpga", "image": "example.org/ort:fpga"}],
        accelerators=["cpu", "gpu", "fpga"],
        **framework_changes,
    )
    return planning.ResourceCatalog.of(
        "team-a",
        models=[load_resource(Model, ASSETS / "models/digits-cnn.yaml")],
        frameworks=[framework],
        datasets=[load_resource(Dataset, ASSETS / "datasets/digits.yaml")],
    )


def digits_evaluation_spec(**values: Any) -> EvaluationSpec:
    """An Evaluation spec of digits-cnn on onnxruntime, with ``values`` added."""
    return EvaluationSpec.model_validate({"models": ["digits-cnn"], "frameworks": ["onnxruntime"], **values})
