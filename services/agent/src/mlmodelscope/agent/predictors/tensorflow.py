"""TensorFlow predictor: a Keras ``.keras`` file or a SavedModel folder, run as one compiled graph.

Calling a Keras model eagerly dispatches every layer from Python (~8x slower than a graph), so ``load`` wraps the
model in a ``tf.function`` with a fixed input signature (batch axis ``None``), traces it once and keeps the
*concrete* function, which also skips a ``tf.function``'s polymorphic dispatch (~40% less per-call overhead on small
models). A SavedModel runs through its ``serve`` endpoint (what ``keras.Model.export`` writes), else its
``serving_default`` signature, wrapped the same way so both formats return the outputs in the manifest's order
(reading the formats: predictors/tensorflow_formats.py). Thread pools are sized once per process, before the first
op, so ``load`` sets them first; the model is loaded and traced under ``tf.device`` so its variables live there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor, PredictFn
from mlmodelscope.agent.predictors.signature import count_mismatch
from mlmodelscope.agent.predictors.tensorflow_formats import KERAS, artifact_format, load_keras, load_savedmodel
from mlmodelscope.agent.profilers.tensorflow import TensorFlowProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, EvaluationError, ModelLoadError, PredictorError

log = logging.getLogger(__name__)

_WARM_CALLS = 3
TENSORFLOW = FrameworkPackage("TensorFlow", "tensorflow", "tensorflow", "(tensorflow[and-cuda] on a GPU node)")


def _import_tensorflow() -> Any:
    # TensorFlow's C++ start-up logging goes to stderr unless told otherwise; a value the user set is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return TENSORFLOW.load()


class TensorFlowPredictor(FrameworkPredictor):
    name = "tensorflow"
    package = TENSORFLOW

    _model: Any = None
    _serving: Any = None
    _format: str = ""
    _profiler: TensorFlowProfiler | None = None

    @classmethod
    def library_version(cls) -> str:
        return str(_import_tensorflow().__version__)

    @property
    def serving_function(self) -> Any:
        """The compiled graph ``predict`` runs (a ``ConcreteFunction``); None before ``load``."""
        return self._serving

    def load(self, artifact_path: Path) -> None:
        tf = _import_tensorflow()
        self._set_threads(tf)
        device = self._device(tf)
        self._format, path = artifact_format(artifact_path)
        with tf.device(device):
            loader = load_keras if self._format == KERAS else load_savedmodel
            self._model, call, specs, output_names = loader(tf, path, self.model)
            self._serving = self._compile(tf, call, specs, output_names, path)
        self._profiler = None
        if self.options.profile_dir is not None:
            self._profiler = TensorFlowProfiler(self.options.profile_dir)
            self._profiler.bind(tf)
        self.bind_predict(self._make_predict(tf, self._serving, device))
        # The first calls instantiate the graph (Grappler's rewrites, kernel creation): at the model's own shapes.
        shapes = [
            (1, *(d if d is not None else max(m, 1) for d, m in zip(spec.shape[1:], declared.shape, strict=True)))
            for spec, declared in zip(specs, self.model.inputs, strict=True)
        ]
        self.warm_up(
            _WARM_CALLS, [np.zeros(s, spec.dtype.as_numpy_dtype) for s, spec in zip(shapes, specs, strict=True)]
        )

    def _compile(self, tf: Any, call: Callable[..., Any], specs: list[Any], output_names: list[str], path: Path) -> Any:
        """``call`` as a ConcreteFunction of the fixed input signature returning a tuple of declared outputs."""
        declared = self.model.outputs

        def serve(*inputs: Any) -> tuple[Any, ...]:
            result = call(*inputs)
            if isinstance(result, dict):
                outputs = [result[name] for name in output_names] if output_names else list(result.values())
            else:
                outputs = list(result) if isinstance(result, list | tuple) else [result]
            if len(outputs) != len(declared):
                raise count_mismatch(f"the TensorFlow model {path}", "output", len(outputs), declared, verb="returned")
            return tuple(outputs)

        try:
            return tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()
        except ModelLoadError:
            raise
        except Exception as e:  # tracing errors: shape or dtype conflicts inside the model
            raise ModelLoadError(
                f"TensorFlow could not build the serving graph of {path} for inputs {specs}: {e}",
                hint="Check spec.inputs (names, shapes, dtypes) in the Model manifest against the model.",
            ) from e

    def _make_predict(self, tf: Any, serving: Any, device: str) -> PredictFn:
        """The hot path, with every name bound here: one closure per case."""
        errors = (TypeError, ValueError, tf.errors.InvalidArgumentError)
        model_format = self._format

        def failed(inputs: Sequence[np.ndarray], e: Exception) -> PredictorError:
            shapes = ", ".join(f"{x.dtype}{list(x.shape)}" for x in inputs)
            return PredictorError(
                f"TensorFlow rejected the inputs ({shapes}) of the {model_format} model: {e}",
                hint="Check spec.inputs (count, shapes, dtypes) in the Model manifest against the model.",
            )

        run = serving
        if device.startswith("/GPU"):
            # Inputs arrive as host arrays: converting them under the device scope copies them there once. On the
            # CPU the graph's ops were placed when it was traced (under tf.device): no scope per call.
            device_scope = tf.device

            def run(*inputs: Any) -> Any:
                with device_scope(device):
                    return serving(*inputs)

        if self._profiler is not None:
            marker = self._profiler.marker

            def predict_profiled(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
                try:
                    with marker():
                        return [t.numpy() for t in run(*inputs)]
                except errors as e:
                    raise failed(inputs, e) from e

            return predict_profiled

        def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
            try:
                return [t.numpy() for t in run(*inputs)]
            except errors as e:
                raise failed(inputs, e) from e

        return predict

    def _device(self, tf: Any) -> str:
        device, index = self.options.device, self.options.device_index
        if device == "cpu":
            return "/CPU:0"
        if device != "gpu":
            raise self.no_backend()
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            raise DeviceUnavailableError(
                f"device 'gpu' needs a GPU TensorFlow can use, but TensorFlow {tf.__version__} sees none.",
                hint="Install tensorflow[and-cuda] on a GPU node (tensorflow-cpu has no GPU support), "
                "or use --device cpu.",
            )
        if index >= len(gpus):
            raise DeviceUnavailableError(
                f"device index {index} asked for, but TensorFlow sees {len(gpus)} GPU(s).",
                hint=f"Use a device index below {len(gpus)}.",
            )
        return f"/GPU:{index}"

    def _set_threads(self, tf: Any) -> None:
        threading = tf.config.threading
        wanted_pools = (
            ("intra-op", self.options.intra_op_threads, threading.get_intra_op_parallelism_threads,
             threading.set_intra_op_parallelism_threads),
            ("inter-op", self.options.inter_op_threads, threading.get_inter_op_parallelism_threads,
             threading.set_inter_op_parallelism_threads),
        )  # fmt: skip
        for what, wanted, get, set_threads in wanted_pools:
            if wanted is None or get() == wanted:
                continue
            try:
                set_threads(wanted)
            except RuntimeError as e:  # settable only before TensorFlow runs its first op, once per process
                log.warning(
                    "TensorFlow %s threads stay %d (0 = TensorFlow's choice), not %d: TensorFlow already ran in "
                    "this process (%s)", what, get(), wanted, e,
                )  # fmt: skip

    def close(self) -> None:
        if self._profiler is not None:
            try:
                self._profiler.stop()  # a run that failed between start() and stop() must not leave TF profiling
            except EvaluationError as e:
                log.warning("%s", e)
        super().close()
        self._model = None
        self._serving = None
