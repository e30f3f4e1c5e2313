"""TensorFlow Lite predictor: a ``.tflite`` flatbuffer run by LiteRT's interpreter (ai-edge-litert), CPU only.

ai-edge-litert runs TFLite models without TensorFlow (one ~20 MB wheel, amd64 and arm64), with the XNNPACK
delegate on its float and int8 kernels. ``load`` binds each declared input and output to a tensor index, by
the model's signature names (``serving_default``: what TFLiteConverter writes) or else its tensor names, and
checks shapes (one sample; -1 is dynamic on either side) and dtypes against the manifest, so a mismatch is a
ModelLoadError naming both sides rather than a failure at the first query. ``predict`` copies the inputs in
(``set_tensor``), invokes and returns the outputs (``get_tensor``: owned copies, which later invokes do not
overwrite); the interpreter's tensors are resized and re-allocated only when an input's shape changes, i.e. when
the batch size does. Threads: ``intra_op_threads`` is the interpreter's ``num_threads`` (TFLite has no
inter-op pool). LiteRT's Python API has no op profiler: see profilers/tflite.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor
from mlmodelscope.agent.predictors.signature import Kind, check_tensor, match_names
from mlmodelscope.agent.profilers.tflite import UNAVAILABLE_REASON
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError, PredictorError
from mlmodelscope.core.manifests.model_tensors import TensorSpec

log = logging.getLogger(__name__)

SERVING_SIGNATURE = "serving_default"
LITERT = FrameworkPackage("LiteRT (ai-edge-litert)", "ai_edge_litert", "tflite")


def _model_file(artifact_path: Path) -> Path:
    """The .tflite file to load: ``artifact_path`` itself, or the one .tflite file in an unpacked archive."""
    if not artifact_path.is_dir():
        return artifact_path
    found = sorted(p for p in artifact_path.rglob("*.tflite") if p.is_file())
    if len(found) == 1:
        return found[0]
    raise ModelLoadError(
        f"the artifact is a folder ({artifact_path}) holding {len(found)} .tflite files; LiteRT loads one.",
        hint="Name the model file inside the archive with the artifact's `entrypoint` (e.g. `entrypoint: m.tflite`).",
    )


def _tensors_by_name(interpreter: Any, kind: Kind) -> dict[str, dict[str, Any]]:
    """The model's ``kind`` ("input"/"output") tensor details under their signature names and tensor names."""
    details = interpreter.get_input_details() if kind == "input" else interpreter.get_output_details()
    by_name = {str(d["name"]): d for d in details}
    signatures = interpreter.get_signature_list()
    key = SERVING_SIGNATURE if SERVING_SIGNATURE in signatures else next(iter(signatures), None)
    if key is not None:
        runner = interpreter.get_signature_runner(key)
        signed = runner.get_input_details() if kind == "input" else runner.get_output_details()
        by_index = {int(d["index"]): d for d in details}
        # Only a signature of the main subgraph: its tensors are the interpreter's own inputs and outputs.
        if all(int(d["index"]) in by_index for d in signed.values()):
            by_name.update({name: by_index[int(d["index"])] for name, d in signed.items()})
    return by_name


def _bind(interpreter: Any, declared: Sequence[TensorSpec], kind: Kind, path: Path) -> list[dict[str, Any]]:
    """The tensor details of each declared tensor; ModelLoadError when a name, shape or dtype does not fit."""
    tensors = _tensors_by_name(interpreter, kind)
    names = sorted(tensors)
    model = f"the TFLite model {path}"
    hint = " (a signature name or a tensor name)"
    bound = [tensors[names[i]] for i in match_names(model, kind, names, declared, hint=hint)]
    for found, spec in zip(bound, declared, strict=True):
        check_tensor(model, kind, spec.name, np.dtype(found["dtype"]).name, found["shape_signature"], spec)
    return bound


class TFLitePredictor(FrameworkPredictor):
    name = "tflite"
    package = LITERT

    _interpreter: Any = None

    def load(self, artifact_path: Path) -> None:
        if self.options.device != "cpu":
            raise DeviceUnavailableError(
                f"the tflite predictor runs LiteRT's CPU kernels (XNNPACK) only, not device '{self.options.device}'.",
                hint="Use --device cpu (LiteRT's GPU and NPU accelerators are not supported by this predictor).",
            )
        litert = LITERT.load("ai_edge_litert.interpreter")
        path = _model_file(artifact_path)
        try:
            interpreter = litert.Interpreter(model_path=str(path), num_threads=self.options.intra_op_threads)
        except (ValueError, RuntimeError) as e:  # "Could not open", "model identifier ... should be TFL3", ops
            raise ModelLoadError(
                f"LiteRT could not load {path}: {e}",
                hint="Check that the artifact is a .tflite flatbuffer and its sha256 in the manifest.",
            ) from e
        inputs = _bind(interpreter, self.model.inputs, "input", path)
        outputs = [int(d["index"]) for d in _bind(interpreter, self.model.outputs, "output", path)]
        if self.options.profile_dir is not None:
            log.warning("%s", UNAVAILABLE_REASON)
        self._interpreter = interpreter
        self.bind_predict(self._make_predict(interpreter, inputs, outputs, path))
        # At the model's own shapes (dynamic axes 1): allocates the tensors and XNNPACK's plan before the warm-up.
        self.warm_up(1, [np.zeros(tuple(d["shape"]), dtype=d["dtype"]) for d in inputs])

    def _make_predict(self, interpreter: Any, bound: list[dict[str, Any]], outputs: list[int], path: Path) -> Any:
        """The hot path, every name bound here; tensors resized and allocated only when an input shape changes."""
        set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor
        resize, allocate = interpreter.resize_tensor_input, interpreter.allocate_tensors
        inputs = [int(d["index"]) for d in bound]
        signatures = [[int(n) for n in d["shape_signature"]] for d in bound]
        shapes: list[tuple[int, ...]] = [() for _ in inputs]

        def reshape(batch: Sequence[np.ndarray]) -> None:
            # Strict: only the model's dynamic (-1) axes change. Resizing a fixed batch axis can "work" and be wrong
            # (a graph whose reshapes fold the batch into another axis returns one garbled sample).
            try:
                for i, (index, x) in enumerate(zip(inputs, batch, strict=True)):
                    resize(index, x.shape, strict=True)
                    shapes[i] = x.shape
                allocate()
            except (ValueError, RuntimeError) as e:
                shapes[:] = [() for _ in inputs]
                raise PredictorError(
                    f"LiteRT could not run {path} on inputs shaped {[list(x.shape) for x in batch]}: the model's "
                    f"inputs are shaped {signatures} (-1: any size) ({e}).",
                    hint="Give each input the per-sample shape the model takes (spec.inputs[].shape); a model with a "
                    "fixed batch size needs --batch-size equal to it.",
                ) from e

        def failed(batch: Sequence[np.ndarray], e: Exception) -> PredictorError:
            found = ", ".join(f"{x.dtype}{list(x.shape)}" for x in batch)
            return PredictorError(
                f"LiteRT rejected the inputs ({found}) of {path}: {e}",
                hint="Check spec.inputs (count, shapes, dtypes) in the Model manifest against the model.",
            )

        if len(inputs) == 1 and len(outputs) == 1:  # the common case, without loops
            (first,), (last,) = inputs, outputs

            def predict_one(batch: Sequence[np.ndarray]) -> list[np.ndarray]:
                x = batch[0]
                try:
                    if x.shape != shapes[0]:
                        reshape(batch)
                    set_tensor(first, x)
                    invoke()
                except (ValueError, RuntimeError) as e:  # set_tensor: a dtype or shape it lacks; invoke: a kernel
                    raise failed(batch, e) from e
                return [get_tensor(last)]

            return predict_one

        def predict(batch: Sequence[np.ndarray]) -> list[np.ndarray]:
            try:
                if any(x.shape != shape for x, shape in zip(batch, shapes, strict=True)):
                    reshape(batch)
                for index, x in zip(inputs, batch, strict=True):
                    set_tensor(index, x)
                invoke()
            except (ValueError, RuntimeError) as e:  # as above; zip: a wrong number of inputs
                raise failed(batch, e) from e
            return [get_tensor(index) for index in outputs]

        return predict

    def close(self) -> None:
        super().close()
        self._interpreter = None
