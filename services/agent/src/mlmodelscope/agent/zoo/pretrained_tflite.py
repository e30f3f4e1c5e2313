"""Builder of the pretrained zoo models' TensorFlow Lite artifacts: float32, and int8 post-training-quantised.

Why this module exists: the ``tflite`` framework must run the *same* trained MobileNetV2 as the other four, so its
``.tflite`` is not trained or mapped anew: it is TensorFlow's ``TFLiteConverter`` applied to the Keras build of
``pretrained_keras`` (the pinned ``.keras`` bytes, checked before converting). Two models use it:

* ``zoo:mobilenet-v2-imagenet`` (format ``tflite``): float32 weights and activations;
* ``zoo:mobilenet-v2-imagenet-int8`` (format ``tflite`` only): full-integer post-training quantisation
  (``Optimize.DEFAULT``, builtin int8 kernels only, int8 weights and activations, int32 biases) calibrated on the
  photos of ``pretrained_calibration`` (scikit-image photos that are *not* in ``imagenet-photos``, and crops of
  them). Its interface stays float32 (a QUANTIZE op first, a DEQUANTIZE op last), so the manifest's input and
  output specs and pre-processing are the float model's.

The converted graph takes ``input`` float32 (N, 3, 224, 224) NCHW (the batch axis is dynamic: the predictor
resizes it) and gives ``logits`` (N, 1000) under those signature names (``serving_default``), like every other
format. :func:`converter_for` wraps the Keras model in a ``tf.function`` with that signature and tracks its
variables in a ``tf.Module`` so the converter freezes them (a Keras 3 model is not a trackable object the
converter walks: its weights would stay ``READ_VARIABLE`` ops); scripts/tflite_convert.py uses it for the
committed models too.

Determinism: the flatbuffer depends only on the graph, the weights and the calibration tensors, all fixed, and on
TensorFlow's process-wide function-name counters; so every conversion runs in a fresh interpreter
(``python -m mlmodelscope.agent.zoo.pretrained_tflite <model> <destination>``) and the result is checked against
the pinned digests like every other build. Building needs TensorFlow (and scikit-image for the int8 calibration)
in the building runtime; LiteRT alone runs the result but cannot convert.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlmodelscope.agent.zoo import pretrained
from mlmodelscope.core.errors import ModelLoadError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FORMAT = "tflite"
BUILD_TIMEOUT_S = 900.0


def converter_for(keras_path: Path, input_name: str, output_name: str) -> Any:
    """A ``tf.lite.TFLiteConverter`` for the one-input, one-output Keras model at ``keras_path``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(keras_path, compile=False)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelLoadError(
            f"{keras_path}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; the converter takes one "
            "of each.",
            hint="Convert a single-input, single-output Keras model.",
        )
    symbolic = model.inputs[0]
    spec = tf.TensorSpec((None, *symbolic.shape[1:]), tf.as_dtype(symbolic.dtype), name=input_name)
    serve = tf.function(lambda x: {output_name: model(x, training=False)}, input_signature=[spec])
    holder = tf.Module()
    holder.model_variables = [variable.value for variable in model.variables]  # tracked: frozen into constants
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], holder)


def file_name(model: str) -> str:
    return f"{model}.tflite"


def build_tflite(model: str, destination: Path, *, seed: int) -> Path:
    """The zoo builder of format ``tflite`` (entry point): pretrained models only."""
    if not pretrained.is_pretrained(model):
        raise ModelLoadError(
            f"zoo:{model} has no TFLite build: the zoo converts only its pretrained models "
            f"({', '.join(sorted(pretrained.PRETRAINED))}) to TFLite.",
            hint=f"Convert its Keras build by hand (`scripts/tflite_convert.py --model {model} --out m.tflite`) and "
            "name the file, with its sha256, as the manifest's tflite artifact.",
        )
    return build(model, destination, seed=seed)


def build(model: str, destination: Path, *, seed: int, check: bool = True) -> Path:
    """Convert pretrained ``model`` into ``<destination>/<model>.tflite`` in a fresh interpreter, then check it
    against the pinned digests (``check=False``: only when making the pins)."""
    spec = pretrained.pretrained_model(model, seed=seed)
    if check:
        pretrained.check_format(spec, FORMAT)
    command = [sys.executable, "-m", __name__, model, str(destination)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired as e:
        raise ModelLoadError(
            f"converting zoo:{model} to TFLite took longer than {BUILD_TIMEOUT_S:.0f} s.",
            hint="The machine is overloaded, or the converter hangs; run the command by hand to see: "
            f"{' '.join(command)}",
        ) from e
    if done.returncode != 0:
        raise ModelLoadError(
            f"converting zoo:{model} to TFLite failed (exit {done.returncode}): {done.stderr[-2000:]}",
            hint="The TFLite conversion needs TensorFlow (and scikit-image for int8) in this runtime; the output "
            "above has the cause.",
        )
    if check:
        pretrained.check_build(spec, FORMAT, destination)
    return destination / file_name(model)


def _convert(model: str, destination: Path) -> None:
    """The body of the fresh interpreter: the pinned Keras build of the float model, converted."""
    from mlmodelscope.agent.zoo import keras_models, pretrained_keras

    spec = pretrained.pretrained_model(model, seed=0)
    source = pretrained.pretrained_model(spec.keras_source, seed=0)
    with tempfile.TemporaryDirectory(prefix="tflite-source-") as scratch:
        folder = Path(scratch)
        keras_path = folder / f"{source.name}.keras"
        keras_models.save_keras_deterministically(pretrained_keras.trained_model(source.name), keras_path)
        pretrained.check_build(source, "keras", folder)  # converting the pinned model, nothing else
        converter = converter_for(keras_path, INPUT_NAME, OUTPUT_NAME)
        if spec.quantization == "int8":
            _quantise_int8(converter)
        elif spec.quantization != "float32":
            raise ModelLoadError(
                f"zoo:{model}: unknown quantization '{spec.quantization}' (float32 or int8).",
                hint="This is a bug in zoo/pretrained.py.",
            )
        content = bytes(converter.convert())
    (destination / file_name(model)).write_bytes(content)


def _quantise_int8(converter: Any) -> None:
    import tensorflow as tf

    from mlmodelscope.agent.zoo.pretrained_calibration import calibration_inputs

    inputs = calibration_inputs()

    def representative() -> Iterator[list[Any]]:
        for i in range(len(inputs)):
            yield [inputs[i : i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


if __name__ == "__main__":
    _convert(sys.argv[1], Path(sys.argv[2]))
