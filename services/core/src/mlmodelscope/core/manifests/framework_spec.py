"""The spec of a Framework: its version, the artifact formats it loads, and the agent images that run it where.

Local mode reads its runtime (which interpreter runs the agent); the operator reads its containers and device
resources to build the Jobs of an Evaluation.
"""

from __future__ import annotations

from pydantic import Field

from mlmodelscope.core.manifests.artifact_spec import ArtifactFormat
from mlmodelscope.core.manifests.fields import Accelerator, Architecture, StrictModel


class Container(StrictModel):
    """The agent image that runs this framework on one kind of node."""

    arch: Architecture = Field(description="Node CPU architecture (the kubernetes.io/arch label).")
    accelerator: Accelerator = Field(description="cpu, gpu or fpga.")
    image: str = Field(min_length=1, description="The agent image (registry/name:tag or @sha256 digest).")


class LocalRuntime(StrictModel):
    """How local mode runs this framework's agent."""

    python: str | None = Field(
        default=None, description="Interpreter that runs this framework's agent locally; default: the CLI's own."
    )


class FrameworkSpec(StrictModel):
    """A framework: its version, the formats it loads, the accelerators it uses and its agent images."""

    description: str = Field(default="", description="Free text shown in listings.")
    version: str = Field(min_length=1, description="The framework version this resource describes (PEP 440).")
    predictor: str = Field(min_length=1, description="Name of the predictor entry point that runs it.")
    formats: list[ArtifactFormat] = Field(min_length=1, description="Supported artifact formats, preferred first.")
    accelerators: list[Accelerator] = Field(
        default_factory=lambda: list[Accelerator](["cpu"]), description="Accelerators this framework can run on."
    )
    containers: list[Container] = Field(
        default_factory=list, description="Agent images per (arch, accelerator); the operator's Jobs run these."
    )
    device_resources: dict[Accelerator, str] = Field(
        default_factory=dict, description="Kubernetes extended resource per accelerator, e.g. gpu: nvidia.com/gpu."
    )
    runtime: LocalRuntime = Field(default_factory=LocalRuntime, description="How local mode runs the agent.")
