"""How the TensorFlow predictor reads its two artifact formats: a Keras ``.keras`` file and a SavedModel folder.

Formats are told apart by looking, not by trying loaders in turn: a folder holding ``saved_model.pb`` (or one
sub-folder that does: archives often carry a top folder) is a SavedModel; a zip with ``config.json`` is a ``.keras``
file. Each loader returns the same four things (``Loaded``), its inputs checked against the manifest, so that
predictors/tensorflow.py compiles and runs both alike.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlmodelscope.agent.predictors.signature import check_count, check_tensor, match_names
from mlmodelscope.core.errors import ModelLoadError
from mlmodelscope.core.manifests.model_spec import ModelSpec

KERAS = "keras"
SAVEDMODEL = "savedmodel"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
SERVE_ENDPOINT = "serve"
SERVING_SIGNATURE = "serving_default"
# The model, a call taking the inputs in the manifest's order, their TensorSpecs (batch axis None), the output keys
# of a signature (empty: the outputs in the order returned).
Loaded = tuple[Any, Callable[..., Any], list[Any], list[str]]


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


def load_keras(tf: Any, path: Path, model_spec: ModelSpec) -> Loaded:
    """A ``.keras`` file: the model called with its inputs in the manifest's order, outputs as it returns them."""
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
    specs, positions = _input_specs(tf, [(str(t.name), t.shape, t.dtype) for t in symbolic], path, model_spec)
    check_count(f"the Keras model {path}", "output", len(model.outputs), model_spec.outputs)
    single = len(specs) == 1

    def call(*inputs: Any) -> Any:
        return model(inputs[0] if single else [inputs[p] for p in positions], training=False)

    return model, call, specs, []


def load_savedmodel(tf: Any, path: Path, model_spec: ModelSpec) -> Loaded:
    """A SavedModel folder: its ``serve`` endpoint, else its ``serving_default`` signature (outputs by key)."""
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TF raises OSError, DecodeError, NotFoundError... for damaged folders
        raise ModelLoadError(
            f"TensorFlow could not load the SavedModel {path}: {e}",
            hint="Check that the folder is a complete SavedModel (saved_model.pb, variables/) and its sha256.",
        ) from e
    serve = getattr(loaded, SERVE_ENDPOINT, None)
    concrete = None
    if serve is not None and hasattr(serve, "get_concrete_function"):
        try:
            concrete = serve.get_concrete_function()
        except (TypeError, ValueError):
            concrete = None  # an endpoint without an input signature: fall back to the signature
    if concrete is not None:
        # Keras exports a multi-input model's endpoint as serve([a, b]): one nested argument.
        args, _ = concrete.structured_input_signature
        flat = tf.nest.flatten(args)
        specs, positions = _input_specs(tf, [(str(s.name), s.shape, s.dtype) for s in flat], path, model_spec)
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
    specs, _ = _input_specs(tf, [(n, kwargs[n].shape, kwargs[n].dtype) for n in names], path, model_spec)
    feed_names = [str(spec.name) for spec in specs]

    def call_signature(*inputs: Any) -> Any:
        return signature(**dict(zip(feed_names, inputs, strict=True)))

    return loaded, call_signature, specs, _signature_outputs(signature, path, model_spec)


def _input_specs(
    tf: Any, tensors: list[tuple[str, Any, Any]], path: Path, model_spec: ModelSpec
) -> tuple[list[Any], list[int]]:
    """The model's (name, shape, dtype) inputs as batch-``None`` TensorSpecs in the manifest's order, checked
    against it, and for each model input its position in that order."""
    model = f"the TensorFlow model {path}"
    order = match_names(model, "input", [name for name, _, _ in tensors], model_spec.inputs, positional="same_count")
    specs = []
    for i, declared in zip(order, model_spec.inputs, strict=True):
        name, shape, dtype = tensors[i]
        spec = tf.TensorSpec((None, *shape[1:]), tf.as_dtype(dtype), name=name)
        sample = [-1 if d is None else d for d in spec.shape]
        check_tensor(model, "input", name, spec.dtype.name, sample, declared)
        specs.append(spec)
    return specs, [order.index(i) for i in range(len(order))]


def _signature_outputs(signature: Any, path: Path, model_spec: ModelSpec) -> list[str]:
    """The signature's output keys in the manifest's order: by name, or ``output_<n>`` numerically."""
    keys = list(signature.structured_outputs)
    declared = [spec.name for spec in model_spec.outputs]
    check_count(f"the SavedModel {path} signature '{SERVING_SIGNATURE}'", "output", sorted(keys), model_spec.outputs)
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
