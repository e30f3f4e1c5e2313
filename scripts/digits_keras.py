"""The digits CNN in Keras, from the trained PyTorch weights: a ``.keras`` file and a SavedModel archive.

Why this script exists
----------------------
The TensorFlow predictor must be compared with the other frameworks on the *same* model, so the digits CNN that
``build_digits.py`` trains is rebuilt layer for layer in Keras and given PyTorch's weights (no retraining):

* conv kernels OIHW -> HWIO (``w.transpose(2, 3, 1, 0)``), ``padding="same"`` (= torch's pad 1 for 3x3);
* the Dense kernel (out, in) -> (in, out) (``w.T``); the network ends in a global average pool, so no
  flatten-order conversion is needed;
* the input stays NCHW float32 ``(N, 1, 8, 8)`` named ``input``: a ``Permute((2, 3, 1))`` first turns it into
  the NHWC Keras wants, so every framework shares one input spec. The output is raw logits ``(N, 10)``.

Outputs (in ``out_dir``):

* ``digits_cnn.keras`` -- Keras' zip format.
* ``digits_cnn.savedmodel.tar`` -- a SavedModel folder (``saved_model.pb``, ``variables/``, ``assets/``,
  ``fingerprint.pb`` at the archive's root) with a ``serve`` endpoint and a ``serving_default`` signature,
  input ``input`` float32 ``(None, 1, 8, 8)``, output ``output_0`` float32 ``(None, 10)``.

Byte-determinism (the same weights give the same bytes, run after run, in any process):

* ``.keras``: saved by the agent's ``keras_models.save_keras_deterministically`` (the zoo uses it too): Keras'
  zip is rewritten without its timestamps, ``date_saved`` and memory addresses. Every layer is named, as
  Keras' automatic names count layers process-wide. The HDF5 weights are stable.
* SavedModel: ``model.export()`` is not used, because it orders the variables by the traced function's captures,
  which differ from run to run (the checkpoint and the graph come out permuted). Instead a ``tf.Module`` tracks
  the model's variables in the model's order and a ``serve`` ``tf.function`` (what ``model.export()`` writes) is
  saved with ``tf.saved_model.save``. TensorFlow names traced functions with a process-wide counter, so the
  SavedModel is written by a fresh child process (``--savedmodel-from``) that does nothing else; and
  ``fingerprint.pb`` carries a random ``uuid``, which is replaced by one derived from the files' sha256.
  The tar lists members sorted, with mtime 0, uid/gid 0 and modes 0644/0755.

Usage::

    .venv/bin/python scripts/digits_keras.py --out /tmp/digits    # trains (build_digits.train) and exports

or, from Python, :func:`export_keras` with the state dict of ``build_digits.build_model()``'s trained model.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.zoo.keras_models import save_keras_deterministically

KERAS_NAME = "digits_cnn.keras"
SAVEDMODEL_TAR_NAME = "digits_cnn.savedmodel.tar"
INPUT_NAME = "input"
INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10
WEIGHT_KEYS = ("0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias")

_CHILD_TIMEOUT_S = 600


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_keras_model(weights: Mapping[str, Any]) -> Any:
    """The digits CNN in Keras (NCHW input via Permute) carrying the PyTorch ``weights`` (a state dict)."""
    _quiet_tensorflow()
    import keras

    missing = [key for key in WEIGHT_KEYS if key not in weights]
    if missing:
        raise KeyError(f"the digits weights lack {missing} (expected the state dict of build_digits.build_model())")
    w = {key: np.asarray(_to_numpy(weights[key]), dtype=np.float32) for key in WEIGHT_KEYS}
    layers = keras.layers
    inputs = keras.Input(shape=INPUT_SHAPE, dtype="float32", name=INPUT_NAME)
    x = layers.Permute((2, 3, 1), name="nchw_to_nhwc")(inputs)
    conv1 = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")
    x = conv1(x)
    x = layers.MaxPooling2D(2, strides=2, name="pool1")(x)
    conv2 = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")
    x = conv2(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    dense = layers.Dense(NUM_CLASSES, name="logits")
    outputs = dense(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    conv1.set_weights([w["0.weight"].transpose(2, 3, 1, 0), w["0.bias"]])
    conv2.set_weights([w["3.weight"].transpose(2, 3, 1, 0), w["3.bias"]])
    dense.set_weights([w["7.weight"].T, w["7.bias"]])
    return model


def _to_numpy(value: Any) -> Any:
    """A torch tensor (detached, on the CPU) or anything numpy already understands."""
    detach = getattr(value, "detach", None)
    return detach().cpu().numpy() if callable(detach) else value


def export_keras(weights: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``digits_cnn.keras`` and ``digits_cnn.savedmodel.tar`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_keras_model(weights)
    keras_path = out_dir / KERAS_NAME
    save_keras_deterministically(model, keras_path)
    with tempfile.TemporaryDirectory(prefix="digits-keras-") as scratch:
        folder = Path(scratch) / "savedmodel"
        _export_savedmodel_in_child(keras_path, folder)
        tar_path = out_dir / SAVEDMODEL_TAR_NAME
        tar_path.write_bytes(deterministic_tar(folder))
    return [keras_path, tar_path]


# --- SavedModel -------------------------------------------------------------------------------------------------


def _export_savedmodel_in_child(keras_path: Path, folder: Path) -> None:
    """Run ``--savedmodel-from`` in a fresh interpreter (TensorFlow's function names depend on process history)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--savedmodel-from", str(keras_path), "--out", str(folder)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"exporting the SavedModel failed ({' '.join(command)}):\n{completed.stderr[-4000:]}")


def write_savedmodel(keras_path: Path, folder: Path) -> None:
    """Load the ``.keras`` file and save it as a SavedModel with a ``serve`` endpoint (call in a fresh process)."""
    _quiet_tensorflow()
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(keras_path, compile=False)
    module = tf.Module()
    # Tracked in the model's own order: the checkpoint and the graph list variables in tracking order.
    module.model_variables = [variable.value for variable in model.variables]
    signature = [tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=INPUT_NAME)]
    module.serve = tf.function(lambda x: model(x, training=False), input_signature=signature)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    _stable_fingerprint(folder)


def _stable_fingerprint(folder: Path) -> None:
    """Replace ``fingerprint.pb``'s random uuid by one derived from the SavedModel's other files."""
    from tensorflow.core.protobuf import fingerprint_pb2

    path = folder / "fingerprint.pb"
    if not path.exists():
        return
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p != path):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + file.read_bytes())
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    fingerprint.uuid = str(int.from_bytes(digest.digest()[:16], "big"))
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def deterministic_tar(folder: Path) -> bytes:
    """The folder's contents (at the archive's root) as an uncompressed tar with no times, owners or umask."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                content = path.read_bytes()
                info.size = len(content)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


# --- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--savedmodel-from", type=Path, default=None, help="internal: write the SavedModel of this .keras into --out"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.savedmodel_from is not None:
        write_savedmodel(args.savedmodel_from, args.out)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_digits

    model, _ = build_digits.train(build_digits.load_split())
    for path in export_keras(model.state_dict(), args.out):
        print(f"sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
