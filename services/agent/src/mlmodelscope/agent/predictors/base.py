"""What every framework predictor shares, written once: importing the framework, matching the manifest, warm-up.

A framework module should hold only what is specific to its framework (how to find and load the artifact, how to
run a batch), as KServe's ~70-line framework servers do. The rest is here, so every framework says the same thing
in the same words:

- ``FrameworkPackage.load``: the framework imported lazily, or a ``FrameworkUnavailableError`` naming the agent's
  extra that installs it (``pip install 'mlmodelscope-agent[<extra>]'``);
- the manifest's declared inputs and outputs against the loaded model: ``predictors.signature``;
- ``FrameworkPredictor``: the hot path bound as a plain function on the instance, the warm-up calls that keep a
  framework's first-call costs out of the timed run, and the framework profiler handed to the runner.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlmodelscope.core.errors import DeviceUnavailableError, FrameworkUnavailableError
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.framework import FrameworkProfiler

PredictFn = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class FrameworkPackage:
    """The Python package a predictor runs on, and the agent extra that installs it."""

    label: str
    """The framework as users know it, e.g. "ONNX Runtime"."""
    module: str
    """The module to import, e.g. "onnxruntime"."""
    extra: str
    """The ``mlmodelscope-agent`` extra that installs it, e.g. "onnxruntime"."""
    install_note: str = ""
    """Said after the pip command, e.g. "(or onnxruntime-gpu for CUDA)"."""
    quiet_import: bool = False
    """Ignore the DeprecationWarnings the framework itself raises while importing (not ours to fix)."""

    @property
    def install_hint(self) -> str:
        command = f"`pip install 'mlmodelscope-agent[{self.extra}]'`"
        return f"{command} {self.install_note}." if self.install_note else f"{command}."

    def unavailable(self, cause: ImportError | None = None, module: str | None = None) -> FrameworkUnavailableError:
        """The error for a runtime without the framework; a broken install (a dependency missing) names the cause."""
        imported = (module or self.module).split(".")
        missing = None if cause is None else cause.name
        if missing is None or missing.split(".") == imported[: missing.count(".") + 1]:
            message = f"{self.label} is not installed in this runtime."
        else:
            message = f"{self.label} cannot be imported in this runtime ({cause})."
        return FrameworkUnavailableError(message, hint=self.install_hint)

    def load(self, module: str | None = None) -> Any:
        """``module`` (default: the package's own) imported; FrameworkUnavailableError with the install hint."""
        name = module or self.module
        try:
            if not self.quiet_import:
                return importlib.import_module(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return importlib.import_module(name)
        except ImportError as e:
            raise self.unavailable(e, name) from e


# --- the manifest's signature against the loaded model --------------------------------------------------------


def zeros_like_inputs(model: ModelSpec, batch_size: int) -> list[np.ndarray]:
    """Arrays shaped like the model's declared inputs for one batch (dynamic axes become 1)."""
    return [np.zeros((batch_size, *(max(d, 1) for d in spec.shape)), dtype=spec.dtype) for spec in model.inputs]


# --- the predictor ---------------------------------------------------------------------------------------------


class FrameworkPredictor(Predictor):
    """A predictor of one ``package``: binds its hot path in ``load`` and warms it up there.

    Subclasses implement ``load`` (ending with ``bind_predict`` and, where the framework compiles or plans on its
    first calls, ``warm_up``) and, for FRAMEWORK tracing, set ``_profiler``.
    """

    package: ClassVar[FrameworkPackage]
    _profiler: FrameworkProfiler | None = None

    @classmethod
    def library_version(cls) -> str:
        return str(cls.package.load().__version__)

    def framework_profiler(self) -> FrameworkProfiler | None:
        return self._profiler

    def bind_predict(self, predict: PredictFn) -> None:
        """``predict`` as the instance's own attribute: the harness calls a plain function, no method binding."""
        self.predict = predict  # type: ignore[method-assign, assignment]

    def warm_up(self, calls: int, inputs: Sequence[np.ndarray] | None = None) -> None:
        """``calls`` predictions (default input: zeros of the declared shapes, batch 1), outside any timing.

        The first calls of most frameworks build something (graph rewrites, kernels, memory plans); done in
        ``load``, that stays out of the timed warm-up, whose latencies size LoadGen's run.
        """
        batch = list(inputs) if inputs is not None else zeros_like_inputs(self.model, 1)
        for _ in range(calls):
            self.predict(batch)

    def no_backend(self) -> DeviceUnavailableError:
        """The error for a device this framework has no backend for."""
        return DeviceUnavailableError(
            f"{self.package.label} has no backend for device '{self.options.device}'.", hint="Use --device cpu or gpu."
        )

    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        raise RuntimeError(f"{type(self).__name__}.predict called before load()")

    def close(self) -> None:
        self.__dict__.pop("predict", None)
