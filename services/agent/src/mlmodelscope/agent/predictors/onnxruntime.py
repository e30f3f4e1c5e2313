"""ONNX Runtime predictor: an ``InferenceSession`` on the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.profilers.onnxruntime import OnnxRuntimeProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, FrameworkUnavailableError, ModelLoadError
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.framework import FrameworkProfiler

_PROVIDERS_BY_DEVICE = {
    "cpu": ["CPUExecutionProvider"],
    "gpu": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise FrameworkUnavailableError(
            "ONNX Runtime is not installed in this runtime.",
            hint="`pip install 'mlmodelscope-agent[onnxruntime]'` (or onnxruntime-gpu for CUDA).",
        ) from e
    return onnxruntime


# ORT's words for an external data file that is not where the model says (onnxruntime/core/framework/
# tensorprotoutils.cc): since 1.20 path validation at load, before that the failed open when reading the tensor.
_MISSING_EXTERNAL_DATA = re.compile(
    r'External data path does not exist: "(?P<path>[^"]+)"|open file (?P<opened>\S+) fail, errcode = 2\b'
)
_SIDECAR_HINT = (
    "Declare the data file as a sidecar of the artifact (`sidecars: [{uri, sha256}]`, with `name:` when its file "
    "name differs from the one the model records), or pack model and data into one archive with `archive: true` "
    "and `entrypoint: <model>.onnx`."
)


def _model_file(artifact_path: Path) -> Path:
    """The .onnx file to load: ``artifact_path`` itself, or the one .onnx file in an unpacked archive folder."""
    if not artifact_path.is_dir():
        return artifact_path
    found = sorted(p for p in artifact_path.rglob("*.onnx") if p.is_file())
    if len(found) == 1:
        return found[0]
    names = ", ".join(p.relative_to(artifact_path).as_posix() for p in found[:10])
    raise ModelLoadError(
        f"the artifact is a folder ({artifact_path}) holding {len(found)} .onnx files{': ' + names if names else ''}; "
        "ONNX Runtime loads one model file.",
        hint="Name the model file inside the archive with the artifact's `entrypoint` (e.g. `entrypoint: model.onnx`).",
    )


def _load_error(model_path: Path, error: Exception) -> ModelLoadError:
    missing = _MISSING_EXTERNAL_DATA.search(str(error))
    if missing is not None:
        data = Path(missing["path"] or missing["opened"])
        return ModelLoadError(
            f"the ONNX model {model_path} keeps its weights in the external data file '{data.name}', which is "
            f"missing: ONNX Runtime looked for {data}, beside the model.",
            hint=_SIDECAR_HINT,
        )
    return ModelLoadError(
        f"ONNX Runtime could not load {model_path}: {error}",
        hint="Check that the artifact is an ONNX model and its sha256 in the manifest is the right file.",
    )


class OnnxRuntimePredictor(Predictor):
    name = "onnxruntime"

    _session: Any
    _run: Any
    _output_names: list[str]
    _input_names: list[str]
    _profiler: OnnxRuntimeProfiler | None = None

    @classmethod
    def library_version(cls) -> str:
        return str(_import_onnxruntime().__version__)

    def load(self, artifact_path: Path) -> None:
        ort = _import_onnxruntime()
        providers = self._providers(ort)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.intra_op_threads is not None:
            options.intra_op_num_threads = self.options.intra_op_threads
        if self.options.inter_op_threads is not None:
            options.inter_op_num_threads = self.options.inter_op_threads
        self._profiler = None
        if self.options.profile_dir is not None:
            self._profiler = OnnxRuntimeProfiler(self.options.profile_dir)
            self._profiler.configure(options)
        model_path = _model_file(artifact_path)
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        except Exception as e:  # ORT raises its own pybind exception types for any bad model file
            raise _load_error(model_path, e) from e
        graph_inputs = [i.name for i in self._session.get_inputs()]
        declared = [i.name for i in self.model.inputs]
        missing = [n for n in declared if n not in graph_inputs]
        if missing:
            raise ModelLoadError(
                f"the ONNX graph has inputs {graph_inputs}, but the manifest declares {declared}.",
                hint="Fix spec.inputs[].name in the Model manifest.",
            )
        graph_outputs = [o.name for o in self._session.get_outputs()]
        self._output_names = [o.name for o in self.model.outputs]
        if any(n not in graph_outputs for n in self._output_names):
            raise ModelLoadError(
                f"the ONNX graph has outputs {graph_outputs}, but the manifest declares {self._output_names}.",
                hint="Fix spec.outputs[].name in the Model manifest.",
            )
        self._input_names = declared
        self._run = self._session.run
        if self._profiler is not None:
            self._profiler.attach(self._session)

    def framework_profiler(self) -> FrameworkProfiler | None:
        return self._profiler

    def _providers(self, ort: Any) -> list[str]:
        device = self.options.device
        wanted = _PROVIDERS_BY_DEVICE.get(device)
        if wanted is None:
            raise DeviceUnavailableError(f"ONNX Runtime has no execution provider for device '{device}'.")
        available = ort.get_available_providers()
        usable = [p for p in wanted if p in available]
        if not usable:
            raise DeviceUnavailableError(
                f"device '{device}' needs one of {wanted}, but this ONNX Runtime build has {available}.",
                hint="Install onnxruntime-gpu (with CUDA and cuDNN) for --device gpu, or use --device cpu.",
            )
        if device == "gpu":
            usable.append("CPUExecutionProvider")  # ORT's fallback for ops the GPU providers do not cover
        return usable

    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        return self._run(self._output_names, dict(zip(self._input_names, inputs, strict=True)))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._session = None
        self._run = None
