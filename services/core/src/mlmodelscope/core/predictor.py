"""The one interface every framework predictor implements, and how predictors are found.

A predictor is deliberately thin: load an artifact, run a batch, close. Everything else (fetching, pre- and
post-processing, scenarios, timing, accuracy) lives once in the core, so frameworks are compared on equal terms
and a new framework is one small module. Predictors are discovered through the ``mlmodelscope.predictors``
entry-point group, so the core never imports a framework (or the agent package) itself; each predictor module
imports its framework lazily inside ``load``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import FrameworkUnavailableError
from mlmodelscope.core.manifests.fields import Accelerator
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.tracing.framework import FrameworkProfiler

ENTRY_POINT_GROUP = "mlmodelscope.predictors"


class PredictorOptions(BaseModel):
    """How a predictor should run the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Accelerator = "cpu"
    device_index: int = Field(default=0, ge=0)
    intra_op_threads: int | None = Field(default=None, ge=1, description="Threads inside one operator.")
    inter_op_threads: int | None = Field(default=None, ge=1, description="Operators run in parallel.")
    profile_dir: Path | None = Field(
        default=None, description="Turn on the framework's own profiler, writing into this folder (FRAMEWORK level)."
    )


class Predictor(ABC):
    """Loads one model in one framework and runs batches through it.

    ``predict`` is on the hot path of every query: implementations resolve names, allocate and bind everything
    they can in ``load`` so that ``predict`` does as little Python work as possible.
    """

    name: ClassVar[str]

    def __init__(self, model: ModelSpec, options: PredictorOptions) -> None:
        self.model = model
        self.options = options

    @classmethod
    @abstractmethod
    def library_version(cls) -> str:
        """The installed framework's version; FrameworkUnavailableError when it is not installed."""

    @abstractmethod
    def load(self, artifact_path: Path) -> None:
        """Load the artifact; ModelLoadError / DeviceUnavailableError on failure."""

    @abstractmethod
    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        """Run one batch: one array per model input (batch axis first), one array per model output."""

    def framework_profiler(self) -> FrameworkProfiler | None:
        """The framework-level profiler set up by ``load`` when ``options.profile_dir`` is set; None if unsupported."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most predictors have nothing to release
        """Release the model and its memory."""

    def __enter__(self) -> Predictor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def available_predictors() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_predictor_class(name: str) -> type[Predictor]:
    """The predictor class registered under ``name``; FrameworkUnavailableError with install advice otherwise."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(available_predictors()) or "none"
        raise FrameworkUnavailableError(
            f"no predictor named '{name}' is installed in this runtime (installed: {known}).",
            hint="Install the agent with the framework's extra, e.g. `pip install 'mlmodelscope-agent[onnxruntime]'`.",
        )
    try:
        loaded = matches[0].load()
    except ImportError as e:
        raise FrameworkUnavailableError(
            f"the '{name}' predictor cannot be imported: {e}.",
            hint="Reinstall the agent with the framework's extra (see README).",
        ) from e
    if not (isinstance(loaded, type) and issubclass(loaded, Predictor)):
        raise FrameworkUnavailableError(f"entry point '{name}' does not name a Predictor class.")
    return loaded


def zeros_like_outputs(model: ModelSpec, batch_size: int) -> list[np.ndarray]:
    """Arrays shaped like the model's declared outputs for one batch (dynamic axes become 1)."""
    return [np.zeros((batch_size, *(max(d, 1) for d in output.shape)), dtype=output.dtype) for output in model.outputs]
