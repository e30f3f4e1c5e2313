"""What every framework predictor shares, written once: importing the framework, matching the manifest, warm-up.

A framework module should hold only what is specific to its framework (how to find and load the artifact, how to
run a batch), as KServe's ~70-line framework servers do. The rest is here, so every framework says the same thing
in the same words:

- ``FrameworkPackage.load``: the framework imported lazily, or a ``FrameworkUnavailableError`` naming the agent's
  extra that installs it (``pip install 'mlmodelscope-agent[<extra>]'``);
- ``match_names`` / ``check_count`` / ``check_tensor``: the manifest's declared inputs and outputs against the
  loaded model (names, counts, dtypes, per-sample shapes), each mismatch a ``ModelLoadError`` naming both sides
  and the manifest field to fix;
- ``FrameworkPredictor``: the hot path bound as a plain function on the instance, the warm-up calls that keep a
  framework's first-call costs out of the timed run, and the framework profiler handed to the runner.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from mlmodelscope.core.errors import DeviceUnavailableError, FrameworkUnavailableError, ModelLoadError, PredictorError
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.manifests.model_tensors import TensorSpec
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.framework import FrameworkProfiler

Kind = Literal["input", "output"]
PredictFn = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]
Positional = Literal["never", "same_count", "single"]


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


def count_mismatch(
    model: str,
    kind: Kind,
    found: Sequence[str] | int,
    declared: Sequence[TensorSpec],
    *,
    verb: str = "has",
    error: type[PredictorError] = ModelLoadError,
) -> PredictorError:
    """``model`` has (or returned) another number of ``kind`` tensors than the manifest declares."""
    count, names = (found, "") if isinstance(found, int) else (len(found), f" {list(found)}")
    return error(
        f"{model} {verb} {count} {kind}s{names}, but the manifest declares {len(declared)} "
        f"{[spec.name for spec in declared]}.",
        hint=f"Fix spec.{kind}s in the Model manifest (one entry per model {kind}, in order).",
    )


def check_count(model: str, kind: Kind, found: Sequence[str] | int, declared: Sequence[TensorSpec]) -> None:
    """ModelLoadError when ``model`` has another number of ``kind`` tensors than the manifest declares."""
    if (found if isinstance(found, int) else len(found)) != len(declared):
        raise count_mismatch(model, kind, found, declared)


def match_names(
    model: str,
    kind: Kind,
    found: Sequence[str],
    declared: Sequence[TensorSpec],
    *,
    positional: Positional = "never",
    complete: bool = False,
    hint: str = "",
) -> list[int]:
    """For each declared tensor, the position of the model's tensor of that name in ``found``.

    ``positional`` says when names that do not match are paired by position instead: ``same_count`` (the counts
    must then be equal), ``single`` (one tensor each side). ``complete``: every tensor in ``found`` must be declared.
    """
    names = [spec.name for spec in declared]
    if positional == "same_count":
        check_count(model, kind, found, declared)
    missing = [name for name in names if name not in found]
    extra = [name for name in found if name not in names] if complete else []
    if not missing and not extra:
        return [list(found).index(name) for name in names]
    if (positional == "same_count") or (positional == "single" and len(found) == len(names) == 1):
        return list(range(len(found)))
    fix = f"Fix spec.{kind}s[].name in the Model manifest{hint}."
    if missing:
        raise ModelLoadError(
            f"{model} has no {kind} named '{missing[0]}' (its {kind}s: {list(found)}); the manifest declares {names}.",
            hint=fix,
        )
    raise ModelLoadError(
        f"{model} has {kind}s {extra} that the manifest does not declare (its {kind}s: {list(found)}); the manifest "
        f"declares {names}.",
        hint=fix,
    )


def check_tensor(
    model: str, kind: Kind, name: str, dtype: str, shape: Sequence[int], declared: TensorSpec, *, sample_from: int = 1
) -> None:
    """The model's ``kind`` tensor ``name`` (``dtype``, ``shape`` with -1 dynamic) fits the declared one.

    ``shape[sample_from:]`` is one sample (by default the first axis is the batch); it fits the declared sample
    shape when the ranks agree and every axis is equal or dynamic (-1) on either side.
    """
    declared_as = "" if declared.name == name else f"'{declared.name}' as "
    if dtype != declared.dtype:
        raise ModelLoadError(
            f"{model} has {kind} '{name}' as {dtype}, but the manifest declares {declared_as}{declared.dtype}.",
            hint=f"Fix spec.{kind}s[].dtype in the Model manifest (or use the model variant with a {declared.dtype} "
            "interface).",
        )
    sample = [int(d) for d in shape[sample_from:]]
    fits = len(sample) == len(declared.shape) and all(
        m == -1 or d in (-1, m) for d, m in zip(sample, declared.shape, strict=True)
    )
    if not fits:
        raise ModelLoadError(
            f"{model} has {kind} '{name}' shaped {sample} per sample (shape signature {[int(d) for d in shape]}), "
            f"but the manifest declares {declared_as}{declared.shape}.",
            hint=f"Fix spec.{kind}s[].shape in the Model manifest (one sample, without the batch axis).",
        )


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
