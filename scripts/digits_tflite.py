"""The digits CNN as TensorFlow Lite flatbuffers: float32, and int8 post-training-quantised.

Why this script exists
----------------------
The ``tflite`` framework (ai-edge-litert's interpreter) must be compared with the other frameworks on the *same*
trained model, so the committed ``digits_cnn.keras`` (scripts/digits_keras.py: PyTorch's weights in Keras, NCHW
input through a ``Permute``) is converted with TensorFlow's ``TFLiteConverter``; nothing is retrained:

* ``digits_cnn.tflite`` -- float32 weights and activations. Input ``input`` float32 ``(-1, 1, 8, 8)`` (dynamic
  batch: the predictor resizes it), output ``logits`` float32 ``(-1, 10)``, raw logits. The names are the
  flatbuffer's signature names (``serving_default``): scripts/tflite_convert.py wraps the model in a function
  taking ``input`` and returning ``{"logits": ...}``, so the manifest's input and output specs are shared with
  every other format.
* ``digits_cnn.int8.tflite`` -- full-integer post-training quantisation (``Optimize.DEFAULT`` with a
  representative dataset of the 1347 *train* images, builtin int8 kernels only): int8 weights and activations,
  int32 biases; its interface stays float32 (a QUANTIZE op first, a DEQUANTIZE op last), so the same manifest
  input and output specs and pre-processing apply. Calibrated on the train split, scored on the test split.

Byte-determinism: the converter's output depends only on the graph and the calibration data, which are fixed
(the same ``.keras`` bytes, the train images in split order); each flatbuffer is converted in a fresh child
process (``--convert``) so TensorFlow's process-wide function-name counters cannot leak into the bytes. Two runs
gave identical files (see the README of assets/artifacts/digits).

Usage::

    .venv/bin/python scripts/digits_tflite.py                   # writes into assets/artifacts/digits/
    .venv/bin/python scripts/digits_tflite.py --out /tmp/digits # elsewhere (the .keras is read from the assets)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "assets" / "artifacts" / "digits"
KERAS_PATH = DIGITS / "digits_cnn.keras"
FLOAT32_NAME = "digits_cnn.tflite"
INT8_NAME = "digits_cnn.int8.tflite"
SUMS_NAME = "SHA256SUMS"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SHAPE = (1, 8, 8)
VARIANTS = {"float32": FLOAT32_NAME, "int8": INT8_NAME}
_CHILD_TIMEOUT_S = 600


def _calibration_images() -> np.ndarray:
    """The digits *train* split as the model sees it: float32 (1347, 1, 8, 8) in [0, 1], in split order."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_digits

    return build_digits.to_model_input(build_digits.load_split().x_train)


def convert(keras_path: Path, variant: str) -> bytes:
    """The ``.keras`` model as a TFLite flatbuffer (``float32`` or ``int8``); call in a fresh process."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tensorflow as tf
    from tflite_convert import converter_for

    converter = converter_for(keras_path, INPUT_NAME, OUTPUT_NAME)
    if variant == "int8":
        images = _calibration_images()

        def representative() -> Iterator[list[Any]]:
            for i in range(len(images)):
                yield [images[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif variant != "float32":
        raise ValueError(f"unknown variant {variant!r} (float32 or int8)")
    return bytes(converter.convert())


def _convert_in_child(keras_path: Path, variant: str, out: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, str(Path(__file__).resolve()), "--convert", variant, "--keras", str(keras_path)]
    command += ["--out", str(out)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"converting {variant} failed ({' '.join(command)}):\n{completed.stderr[-4000:]}")


def export_tflite(keras_path: Path, out_dir: Path) -> list[Path]:
    """Write ``digits_cnn.tflite`` and ``digits_cnn.int8.tflite`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for variant, name in VARIANTS.items():
        _convert_in_child(keras_path, variant, out_dir / name)
        paths.append(out_dir / name)
    return paths


def evaluate(path: Path, threads: int = 1) -> tuple[float, float]:
    """(top-1 on the committed test split, p50 ms of one batch-1 invoke) of a .tflite through bare LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    with np.load(DIGITS / "digits_test.npz") as data:
        x = np.ascontiguousarray(data["images"].transpose(0, 3, 1, 2) / np.float32(16.0), dtype=np.float32)
        labels = data["labels"]
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    top1 = float(np.mean(np.argmax(interpreter.get_tensor(outp["index"]), axis=1) == labels))
    interpreter.resize_tensor_input(inp["index"], [1, *INPUT_SHAPE], strict=True)
    interpreter.allocate_tensors()
    latencies = []
    for i in range(2000):
        start = time.perf_counter_ns()
        interpreter.set_tensor(inp["index"], x[i % len(x)][np.newaxis])
        interpreter.invoke()
        interpreter.get_tensor(outp["index"])
        latencies.append(time.perf_counter_ns() - start)
    return top1, float(np.median(latencies[100:])) / 1e6


def update_sums(out_dir: Path, paths: list[Path]) -> None:
    """Replace (or add) the lines of ``paths`` in ``out_dir/SHA256SUMS``, keeping every other line."""
    sums = out_dir / SUMS_NAME
    names = {p.name for p in paths}
    kept = [line for line in (sums.read_text().splitlines() if sums.exists() else []) if line.split()[-1] not in names]
    added = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in paths]
    sums.write_text("".join(f"{line}\n" for line in [*kept, *added]), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DIGITS, help="output folder (default: assets/artifacts/digits)")
    parser.add_argument("--keras", type=Path, default=KERAS_PATH, help="the .keras model to convert")
    parser.add_argument("--convert", choices=sorted(VARIANTS), help="internal: write one variant to --out (a file)")
    args = parser.parse_args(argv)
    if args.convert:
        args.out.write_bytes(convert(args.keras, args.convert))
        return 0
    paths = export_tflite(args.keras, args.out)
    update_sums(args.out, paths)
    for path in paths:
        top1, p50_ms = evaluate(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"sha256 {digest}  {path.name} ({path.stat().st_size} bytes)")
        print(f"  test top-1 {top1:.4f} ({round(top1 * 450)}/450), batch-1 invoke p50 {p50_ms:.4f} ms (1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
