"""ONNX Runtime predictor: an ``InferenceSession`` on the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor
from mlmodelscope.agent.predictors.signature import match_names
from mlmodelscope.agent.profilers.onnxruntime import OnnxRuntimeProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError

_PROVIDERS_BY_DEVICE = {
    "cpu": ["CPUExecutionProvider"],
    "gpu": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}

ONNXRUNTIME = FrameworkPackage("ONNX Runtime", "onnxruntime", "onnxruntime", "(or onnxruntime-gpu for CUDA)")


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


class OnnxRuntimePredictor(FrameworkPredictor):
    name = "onnxruntime"
    package = ONNXRUNTIME

    _session: Any

    def load(self, artifact_path: Path) -> None:
        ort = ONNXRUNTIME.load()
        providers = self._providers(ort)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.intra_op_threads is not None:
            options.intra_op_num_threads = self.options.intra_op_threads
        if self.options.inter_op_threads is not None:
            options.inter_op_num_threads = self.options.inter_op_threads
        profiler = OnnxRuntimeProfiler(self.options.profile_dir) if self.options.profile_dir is not None else None
        if profiler is not None:
            profiler.configure(options)
        self._profiler = profiler
        model_path = _model_file(artifact_path)
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
        except Exception as e:  # ORT raises its own pybind exception types for any bad model file
            raise _load_error(model_path, e) from e
        graph = f"the ONNX graph {model_path}"
        match_names(graph, "input", [i.name for i in self._session.get_inputs()], self.model.inputs)
        match_names(graph, "output", [o.name for o in self._session.get_outputs()], self.model.outputs)
        if profiler is not None:
            profiler.attach(self._session)
        run, output_names = self._session.run, [o.name for o in self.model.outputs]
        input_names = [i.name for i in self.model.inputs]

        def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
            return run(output_names, dict(zip(input_names, inputs, strict=True)))  # type: ignore[no-any-return]

        self.bind_predict(predict)

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

    def close(self) -> None:
        super().close()
        self._session = None
