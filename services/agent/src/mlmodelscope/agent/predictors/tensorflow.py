"""TensorFlow predictor: a Keras ``.keras`` file or a SavedModel folder, run as one compiled graph.

Why compiled: calling a Keras model eagerly (``model(x)``) dispatches every layer from Python, about 8x slower
than running the same model as a graph. ``load`` therefore wraps the model in a ``tf.function`` with a fixed
``input_signature`` (batch axis ``None``, the rest from the model), traces it once and keeps the *concrete*
function: calling that skips the polymorphic dispatch (signature binding, trace cache lookup) of a
``tf.function``, about 40% less per-call overhead on small models. A SavedModel is run through its ``serve``
endpoint (what ``keras.Model.export`` writes), else its ``serving_default`` signature, wrapped the same way so
both formats return one tuple of outputs in the manifest's order.

Formats are told apart by looking, not by trying loaders in turn: a folder holding ``saved_model.pb`` (or one
sub-folder that does: archives often carry a top folder) is a SavedModel; a zip with ``config.json`` is a
``.keras`` file; anything else is a ModelLoadError saying which.

TensorFlow's thread pools are sized once per process, before it runs its first op (``tf.config.threading``);
the agent runs one model per process, so ``load`` sets them first. Devices: ``cpu`` always, ``gpu`` when
TensorFlow sees one (``tf.config.list_physical_devices("GPU")``); the model is loaded and traced under
``tf.device`` so its variables and ops live there.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.profilers.tensorflow import TensorFlowProfiler
from mlmodelscope.core.errors import (
    DeviceUnavailableError,
    EvaluationError,
    FrameworkUnavailableError,
    ModelLoadError,
    PredictorError,
)
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.framework import FrameworkProfiler

log = logging.getLogger(__name__)

KERAS = "keras"
SAVEDMODEL = "savedmodel"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
SERVE_ENDPOINT = "serve"
SERVING_SIGNATURE = "serving_default"
_WARM_CALLS = 3

PredictFn = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


def _import_tensorflow() -> Any:
    # TensorFlow's C++ start-up logging (oneDNN, CPU feature notices) goes to stderr unless told otherwise; a
    # value the user set is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise FrameworkUnavailableError(
            "TensorFlow is not installed in this runtime.",
            hint="`pip install 'mlmodelscope-agent[tensorflow]'` (tensorflow[and-cuda] on a GPU node).",
        ) from e
    return tf


def artifact_format(path: Path) -> tuple[str, Path]:
    """(``keras`` or ``savedmodel``, the path to load); ModelLoadError saying what the artifact is instead."""
    if path.is_dir():
        if any((path / name).is_file() for name in SAVED_MODEL_FILES):
            return SAVEDMODEL, path
        nested = [d for d in sorted(path.iterdir()) if d.is_dir() and any((d / n).is_file() for n in SAVED_MODEL_FILES)]
        if len(nested) == 1:
            return SAVEDMODEL, nested[0]
        raise ModelLoadError(
            f"TensorFlow could not load {path}: the folder holds no saved_model.pb"
            + (f" (several sub-folders do: {', '.join(d.name for d in nested)})." if nested else "."),
            hint="Point the artifact at a SavedModel folder (or a .tar of one, declared with archive: true).",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelLoadError(
            f"TensorFlow could not load {path}: not a .keras file (a zip archive) or a SavedModel folder ({e}).",
            hint="Check the artifact's format and its sha256 in the manifest; a SavedModel archive needs "
            "archive: true so it is unpacked.",
        ) from e
    if "config.json" in members:
        return KERAS, path
    raise ModelLoadError(
        f"TensorFlow could not load {path}: a zip archive, but not a .keras file (no config.json).",
        hint="Save the model with keras.Model.save('model.keras').",
    )


class TensorFlowPredictor(Predictor):
    name = "tensorflow"

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
            if self._format == KERAS:
                model, call, specs, output_names = self._load_keras(tf, path)
            else:
                model, call, specs, output_names = self._load_savedmodel(tf, path)
            serving = self._compile(tf, call, specs, output_names, path)
        self._model = model
        self._serving = serving
        self._profiler = None
        if self.options.profile_dir is not None:
            self._profiler = TensorFlowProfiler(self.options.profile_dir)
            self._profiler.bind(tf)
        self.predict = self._make_predict(tf, serving, device)  # type: ignore[method-assign, assignment]
        # The first calls instantiate the graph (Grappler's rewrites, kernel creation): done here, outside the
        # timed warm-up, whose latencies size LoadGen's run.
        warm = [
            np.zeros(
                (1, *(d if d is not None else max(m, 1) for d, m in zip(spec.shape[1:], declared.shape, strict=True))),
                dtype=spec.dtype.as_numpy_dtype,
            )
            for spec, declared in zip(specs, self.model.inputs, strict=True)
        ]
        for _ in range(_WARM_CALLS):
            self.predict(warm)

    def framework_profiler(self) -> FrameworkProfiler | None:
        return self._profiler

    # --- loading ----------------------------------------------------------------------------------------------

    def _load_keras(self, tf: Any, path: Path) -> tuple[Any, Callable[..., Any], list[Any], list[str]]:
        import keras

        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as e:  # Keras raises ValueError, OSError, TypeError... for damaged or foreign files
            raise ModelLoadError(
                f"TensorFlow (Keras {keras.__version__}) could not load {path}: {e}",
                hint="Check that the file was saved by a compatible Keras 3 (model.save('x.keras')) and its sha256.",
            ) from e
        symbolic = list(getattr(model, "inputs", None) or [])
        if not symbolic:
            raise ModelLoadError(
                f"the Keras model {path} has no symbolic inputs (a subclassed or never-built model), so its input "
                "signature is unknown.",
                hint="Save a functional or Sequential model built with keras.Input(...).",
            )
        names = [str(t.name) for t in symbolic]
        order = self._input_order(names, path)
        specs = [
            tf.TensorSpec((None, *symbolic[i].shape[1:]), tf.as_dtype(symbolic[i].dtype), name=names[i]) for i in order
        ]
        self._check_specs(specs, path)
        declared = len(self.model.outputs)
        if len(model.outputs) != declared:
            raise ModelLoadError(
                f"the Keras model {path} has {len(model.outputs)} outputs, but the manifest declares {declared}.",
                hint="Fix spec.outputs in the Model manifest (one entry per model output, in order).",
            )
        positions = [order.index(i) for i in range(len(order))]  # manifest order -> the model's input order
        single = len(order) == 1

        def call(*inputs: Any) -> Any:
            feed = inputs[0] if single else [inputs[p] for p in positions]
            return model(feed, training=False)

        return model, call, specs, []

    def _load_savedmodel(self, tf: Any, path: Path) -> tuple[Any, Callable[..., Any], list[Any], list[str]]:
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as e:  # TF raises OSError, DecodeError, NotFoundError... for damaged folders
            raise ModelLoadError(
                f"TensorFlow could not load the SavedModel {path}: {e}",
                hint="Check that the folder is a complete SavedModel (saved_model.pb, variables/) and its sha256.",
            ) from e
        serve = getattr(loaded, SERVE_ENDPOINT, None)
        if serve is not None and hasattr(serve, "get_concrete_function"):
            try:
                concrete = serve.get_concrete_function()
            except (TypeError, ValueError):
                concrete = None  # an endpoint without an input signature: fall back to the signature
            if concrete is not None:
                # Keras exports a multi-input model's endpoint as serve([a, b]): one nested argument.
                args, _ = concrete.structured_input_signature
                flat = tf.nest.flatten(args)
                order = self._input_order([str(s.name) for s in flat], path)
                specs = [tf.TensorSpec((None, *flat[i].shape[1:]), flat[i].dtype, name=flat[i].name) for i in order]
                self._check_specs(specs, path)
                positions = [order.index(i) for i in range(len(order))]
                pack = tf.nest.pack_sequence_as

                def call_serve(*inputs: Any) -> Any:
                    return concrete(*pack(args, [inputs[p] for p in positions]))

                return loaded, call_serve, specs, []
        signature = loaded.signatures.get(SERVING_SIGNATURE)
        if signature is None:
            raise ModelLoadError(
                f"the SavedModel {path} has neither a '{SERVE_ENDPOINT}' endpoint with an input signature nor a "
                f"'{SERVING_SIGNATURE}' signature (signatures: {sorted(loaded.signatures) or 'none'}).",
                hint="Export the model with keras.Model.export() or tf.saved_model.save(..., signatures=...).",
            )
        _, kwargs = signature.structured_input_signature
        names = sorted(kwargs)
        order = self._input_order(names, path)
        feed_names = [names[i] for i in order]
        specs = [tf.TensorSpec((None, *kwargs[n].shape[1:]), kwargs[n].dtype, name=n) for n in feed_names]
        self._check_specs(specs, path)

        def call_signature(*inputs: Any) -> Any:
            return signature(**dict(zip(feed_names, inputs, strict=True)))

        return loaded, call_signature, specs, self._signature_outputs(signature, path)

    def _input_order(self, names: list[str], path: Path) -> list[int]:
        """For each declared input, the model's input position: by name when all match, else in order."""
        declared = [spec.name for spec in self.model.inputs]
        if len(names) != len(declared):
            raise ModelLoadError(
                f"the TensorFlow model {path} has {len(names)} inputs {names}, but the manifest declares "
                f"{len(declared)} {declared}.",
                hint="Fix spec.inputs in the Model manifest (one entry per model input).",
            )
        if all(name in names for name in declared):
            return [names.index(name) for name in declared]
        return list(range(len(names)))

    def _check_specs(self, specs: list[Any], path: Path) -> None:
        """The manifest's input dtypes and shapes (one sample: no batch axis; -1 is dynamic) fit the model's."""
        for spec, declared in zip(specs, self.model.inputs, strict=True):
            if spec.dtype.name != declared.dtype:
                raise ModelLoadError(
                    f"the TensorFlow model {path} takes input '{spec.name}' as {spec.dtype.name}, but the manifest "
                    f"declares '{declared.name}' as {declared.dtype}.",
                    hint="Fix spec.inputs[].dtype in the Model manifest (or its preprocess dtype step).",
                )
            sample = list(spec.shape[1:])
            fits = len(sample) == len(declared.shape) and all(
                d is None or m == -1 or d == m for d, m in zip(sample, declared.shape, strict=True)
            )
            if not fits:
                shown = [-1 if d is None else d for d in sample]
                raise ModelLoadError(
                    f"the TensorFlow model {path} takes input '{spec.name}' shaped {shown} per sample, but the "
                    f"manifest declares '{declared.name}' as {declared.shape}.",
                    hint="Fix spec.inputs[].shape in the Model manifest (one sample, without the batch axis).",
                )

    def _signature_outputs(self, signature: Any, path: Path) -> list[str]:
        """The signature's output keys in the manifest's order: by name, or ``output_<n>`` numerically."""
        keys = list(signature.structured_outputs)
        declared = [spec.name for spec in self.model.outputs]
        if len(keys) != len(declared):
            raise ModelLoadError(
                f"the SavedModel {path} signature '{SERVING_SIGNATURE}' has {len(keys)} outputs {sorted(keys)}, but "
                f"the manifest declares {len(declared)} {declared}.",
                hint="Fix spec.outputs in the Model manifest (one entry per model output).",
            )
        if all(name in keys for name in declared):
            return declared
        if len(keys) == 1:
            return keys
        if all(k.startswith("output_") and k[len("output_") :].isdigit() for k in keys):
            return sorted(keys, key=lambda k: int(k[len("output_") :]))
        raise ModelLoadError(
            f"the SavedModel {path} signature '{SERVING_SIGNATURE}' has outputs {sorted(keys)}; the manifest's "
            f"{declared} do not say which is which.",
            hint="Name spec.outputs[] in the Model manifest after the signature's output keys.",
        )

    def _compile(self, tf: Any, call: Callable[..., Any], specs: list[Any], output_names: list[str], path: Path) -> Any:
        """``call`` as a ConcreteFunction of the fixed input signature returning a tuple of declared outputs."""
        declared = len(self.model.outputs)

        def serve(*inputs: Any) -> tuple[Any, ...]:
            result = call(*inputs)
            if isinstance(result, dict):
                outputs = [result[name] for name in output_names] if output_names else list(result.values())
            elif isinstance(result, list | tuple):
                outputs = list(result)
            else:
                outputs = [result]
            if len(outputs) != declared:
                raise PredictorError(
                    f"the TensorFlow model {path} returned {len(outputs)} outputs, but the manifest declares "
                    f"{declared}.",
                    hint="Fix spec.outputs in the Model manifest.",
                )
            return tuple(outputs)

        try:
            return tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()
        except PredictorError as e:
            raise ModelLoadError(e.message, hint=e.hint) from e
        except Exception as e:  # tracing errors: shape or dtype conflicts inside the model
            raise ModelLoadError(
                f"TensorFlow could not build the serving graph of {path} for inputs {specs}: {e}",
                hint="Check spec.inputs (names, shapes, dtypes) in the Model manifest against the model.",
            ) from e

    # --- running ----------------------------------------------------------------------------------------------

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
            # Inputs arrive as host arrays: converting them under the device scope copies them there once.
            device_scope = tf.device

            def run(*inputs: Any) -> Any:
                with device_scope(device):
                    return serving(*inputs)

        # On the CPU the graph's ops were placed when it was traced (under tf.device): no scope per call.
        profiler = self._profiler
        if profiler is not None:
            marker = profiler.marker

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
        device = self.options.device
        if device == "cpu":
            return "/CPU:0"
        if device == "gpu":
            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                raise DeviceUnavailableError(
                    f"device 'gpu' needs a GPU TensorFlow can use, but TensorFlow {tf.__version__} sees none.",
                    hint="Install tensorflow[and-cuda] on a GPU node (tensorflow-cpu has no GPU support), "
                    "or use --device cpu.",
                )
            if self.options.device_index >= len(gpus):
                raise DeviceUnavailableError(
                    f"device index {self.options.device_index} asked for, but TensorFlow sees {len(gpus)} GPU(s).",
                    hint=f"Use a device index below {len(gpus)}.",
                )
            return f"/GPU:{self.options.device_index}"
        raise DeviceUnavailableError(
            f"TensorFlow has no backend for device '{device}'.", hint="Use --device cpu or gpu."
        )

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
            except RuntimeError as e:
                # Settable only before TensorFlow initialises its runtime (the first op), once per process.
                log.warning(
                    "TensorFlow %s threads stay %d (0 = TensorFlow's choice), not %d: TensorFlow already ran in "
                    "this process (%s)",
                    what,
                    get(),
                    wanted,
                    e,
                )

    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        raise RuntimeError("TensorFlowPredictor.predict called before load()")

    def close(self) -> None:
        if self._profiler is not None:
            try:
                self._profiler.stop()  # a run that failed between start() and stop() must not leave TF profiling
            except EvaluationError as e:
                log.warning("%s", e)
        self._model = None
        self._serving = None
        if "predict" in self.__dict__:
            del self.__dict__["predict"]
