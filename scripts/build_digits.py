"""Build the small, real "digits" model that MLModelScope's end-to-end tests and demos evaluate.

Why this script exists
----------------------
The platform needs at least one *real* trained model with a *real* labelled data set that fits in the repository,
runs offline on a laptop CPU in milliseconds, and gives a known, meaningful accuracy. scikit-learn ships the UCI
handwritten digits (1797 greyscale 8x8 images, pixel values 0..16, 10 classes) inside its wheel, so no download is
needed. This script trains a tiny CNN on a fixed split of that data, exports it to ONNX and writes the held-out test
split next to it, so that ``assets/artifacts/digits/`` can be rebuilt byte-for-byte by anyone with the pinned
toolchain::

    .venv/bin/python scripts/build_digits.py            # writes assets/artifacts/digits/
    .venv/bin/python scripts/build_digits.py --out /tmp/digits --epochs 40

Outputs (in ``--out``):

* ``digits_cnn.onnx`` -- opset 17, one self-contained file. Input ``input``: float32 ``(batch, 1, 8, 8)``, pixel
  values divided by 16 (so in [0, 1]). Output ``logits``: float32 ``(batch, 10)``, raw logits (no softmax; the model
  manifest declares softmax as post-processing).
* ``digits_test.npz`` -- ``images``: float32 ``(450, 8, 8, 1)`` RAW values 0..16 (HWC, one channel);
  ``labels``: int64 ``(450,)``.
* ``digits_cnn.torchscript.pt`` -- the same trained weights as TorchScript (``torch.jit.trace`` of the eval-mode
  model, ``torch.jit.save``); same input and output as the ONNX file, any batch size. Byte-stable between runs in the
  same checkout; its debug records hold the absolute paths of torch's module sources, so another checkout or
  virtualenv location gives different bytes for the same weights.
* ``digits_cnn.keras`` and ``digits_cnn.savedmodel.tar`` -- the same weights for TensorFlow (scripts/digits_keras.py:
  a Keras model whose first layer permutes NCHW to NHWC, so the input spec is shared), byte-deterministic.
* ``digits_cnn.mxnet.tar`` -- the same weights as MXNet symbol + params (scripts/digits_mxnet.py, run in
  ``.venv-mxnet`` because MXNet 1.9 needs numpy < 1.24), byte-deterministic.
* ``labels.txt`` -- ``0`` .. ``9``, one per line (line index == class index).
* ``SHA256SUMS`` -- ``sha256sum`` format for the files above.

The split is ``train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)`` (1347 train / 450 test).

Structure: :func:`build_model` is the single architecture definition, :func:`train` returns the trained model and
:func:`export_onnx` / :func:`export_torchscript` / :func:`export_other_frameworks` serialise it, all from the *same*
trained weights; the layer shapes needed to rebuild the network elsewhere are documented in :func:`build_model`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "assets" / "artifacts" / "digits"

SEED = 0
TEST_SIZE = 0.25
NUM_CLASSES = 10
PIXEL_MAX = 16.0
DEFAULT_EPOCHS = 100
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
OPSET = 17
MIN_TOP1 = 0.90

ONNX_NAME = "digits_cnn.onnx"
TORCHSCRIPT_NAME = "digits_cnn.torchscript.pt"
MXNET_NAME = "digits_cnn.mxnet.tar"
MXNET_PYTHON = Path(__file__).resolve().parent.parent / ".venv-mxnet" / "bin" / "python"
TEST_NAME = "digits_test.npz"
LABELS_NAME = "labels.txt"
SUMS_NAME = "SHA256SUMS"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class Split:
    """The fixed train/test split. Images are float32 (N, 8, 8) raw values 0..16; labels int64 (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split() -> Split:
    """Load scikit-learn's bundled digits and apply the documented, stratified 75/25 split."""
    digits = load_digits()
    images = digits.images.astype(np.float32)  # (1797, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    return Split(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Raw (N, 8, 8) or (N, 8, 8, 1) images with values 0..16 -> float32 (N, 1, 8, 8) in [0, 1] (the model's input)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) / np.float32(PIXEL_MAX), dtype=np.float32)


def seed_everything(seed: int = SEED) -> None:
    """Make training bit-reproducible on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def build_model() -> nn.Module:
    """The one architecture definition (PyTorch layout: NCHW activations).

    ==== ========================================== ============== =========================================
    idx  layer                                      output shape   parameters (PyTorch layout)
    ==== ========================================== ============== =========================================
    -    input                                      (N, 1, 8, 8)
    0    Conv2d(1, 16, kernel 3, stride 1, pad 1)   (N, 16, 8, 8)  weight (16, 1, 3, 3), bias (16,)
    1    ReLU                                       (N, 16, 8, 8)
    2    MaxPool2d(kernel 2, stride 2)              (N, 16, 4, 4)
    3    Conv2d(16, 32, kernel 3, stride 1, pad 1)  (N, 32, 4, 4)  weight (32, 16, 3, 3), bias (32,)
    4    ReLU                                       (N, 32, 4, 4)
    5    AdaptiveAvgPool2d(1) (global average)      (N, 32, 1, 1)
    6    Flatten                                    (N, 32)
    7    Linear(32, 10)                             (N, 10)        weight (10, 32), bias (10,)
    ==== ========================================== ============== =========================================

    4,010 parameters in total. Output is raw logits (no softmax). Rebuilding elsewhere: Keras wants conv kernels as
    HWIO (``w.transpose(2, 3, 1, 0)``) with ``padding="same"`` and Dense kernels as (in, out) (``w.T``); because the
    network ends in a global average pool, no flatten-order conversion is needed. MXNet Gluon uses the PyTorch layouts.
    """
    torch.manual_seed(SEED)  # parameter initialisation is part of the definition
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, NUM_CLASSES),
    )


def train(split: Split, epochs: int = DEFAULT_EPOCHS) -> tuple[nn.Module, float]:
    """Train :func:`build_model` on the train split; return the model (in eval mode) and the wall time in seconds."""
    seed_everything()
    model = build_model()
    x = torch.from_numpy(to_model_input(split.x_train))
    y = torch.from_numpy(split.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)

    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), BATCH_SIZE):
            idx = order[i : i + BATCH_SIZE]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    return model, time.perf_counter() - start


def torch_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Run the PyTorch model on raw images (values 0..16) and return float32 logits."""
    with torch.no_grad():
        return model(torch.from_numpy(to_model_input(images))).numpy()


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export ``model`` to one self-contained, deterministic ONNX file (legacy TorchScript-based exporter)."""
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    with warnings.catch_warnings():
        # The legacy exporter announces its own deprecation; that is expected and only noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", module=r"torch\.onnx.*")
        torch.onnx.export(
            model,
            (dummy,),
            buffer,
            dynamo=False,
            export_params=True,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    # Strip anything that could carry run- or machine-specific text (source locations, paths); keep producer info.
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(proto, full_check=True)
    path.write_bytes(proto.SerializeToString(deterministic=True))


def export_torchscript(model: nn.Module, path: Path) -> None:
    """Save ``model`` (eval mode) as TorchScript by tracing it; the same weights as :func:`export_onnx`.

    Tracing rather than ``torch.jit.script``: the network has no control flow, and a traced Sequential serialises
    byte-identically run after run, while scripting names its classes ``___torch_mangle_<n>`` with a per-process
    counter. The batch axis stays dynamic (nothing in the graph depends on it); :func:`verify_torchscript` checks it.
    """
    model.eval()
    dummy = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    with torch.no_grad():
        traced = torch.jit.trace(model, (dummy,))
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    path.write_bytes(buffer.getvalue())


def verify_torchscript(path: Path, images: np.ndarray, reference: np.ndarray) -> None:
    """Reload the TorchScript file and check it against the in-memory PyTorch model at several batch sizes."""
    loaded = torch.jit.load(str(path), map_location="cpu")
    loaded.eval()
    x = torch.from_numpy(to_model_input(images))
    with torch.no_grad():
        logits = loaded(x).numpy()
        assert logits.shape == reference.shape and logits.dtype == np.float32, (logits.shape, logits.dtype)
        max_diff = float(np.max(np.abs(logits - reference)))
        assert max_diff <= 1e-5, f"TorchScript and PyTorch disagree by {max_diff}"
        for batch in (1, 7):
            part = loaded(x[:batch]).numpy()
            assert part.shape == (batch, NUM_CLASSES), part.shape
            assert np.allclose(part, logits[:batch], atol=1e-5), f"batch {batch} differs from the full batch"


def export_other_frameworks(model: nn.Module, out: Path) -> list[Path]:
    """The same trained weights for TensorFlow (``.keras``, SavedModel tar) and MXNet (symbol + params tar).

    Keras is built in this environment (scripts/digits_keras.py); MXNet needs numpy < 1.24, so its export runs in
    the MXNet environment (``.venv-mxnet``, made by ``make setup``) from the weights written to a temporary .npz.
    """
    from digits_keras import export_keras

    weights = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    written = export_keras(weights, out)
    if not MXNET_PYTHON.exists():
        raise SystemExit(f"{MXNET_PYTHON} is missing: run `make setup` (it creates the MXNet environment).")
    with tempfile.TemporaryDirectory() as scratch:
        weights_path = Path(scratch) / "weights.npz"
        np.savez(weights_path, **weights)
        subprocess.run(
            [
                str(MXNET_PYTHON),
                str(Path(__file__).with_name("digits_mxnet.py")),
                "--weights",
                str(weights_path),
                "--out",
                str(out),
            ],
            check=True,
        )
    return [*written, out / MXNET_NAME]


def write_test_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the test split with ``np.savez`` (uncompressed; zipfile stamps members 1980-01-01, so bytes are stable)."""
    with path.open("wb") as f:
        np.savez(
            f,
            images=np.ascontiguousarray(images, dtype=np.float32),
            labels=np.ascontiguousarray(labels, dtype=np.int64),
        )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == labels[:, None], axis=1)))


def verify_onnx(path: Path, images: np.ndarray, labels: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Check the ONNX file with onnxruntime: accuracy, dynamic batch, agreement with PyTorch. Return (top-1, top-5)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    inputs = session.get_inputs()
    outputs = session.get_outputs()
    assert [i.name for i in inputs] == [INPUT_NAME], inputs
    assert [o.name for o in outputs] == [OUTPUT_NAME], outputs
    assert list(inputs[0].shape) == ["batch", 1, 8, 8], inputs[0].shape
    assert list(outputs[0].shape) == ["batch", NUM_CLASSES], outputs[0].shape

    x = to_model_input(images)
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    assert logits.shape == (len(x), NUM_CLASSES) and logits.dtype == np.float32, (logits.shape, logits.dtype)
    max_diff = float(np.max(np.abs(logits - reference)))
    assert max_diff <= 1e-4, f"onnxruntime and PyTorch disagree by {max_diff}"
    for batch in (1, 7):
        (part,) = session.run([OUTPUT_NAME], {INPUT_NAME: x[:batch]})
        assert part.shape == (batch, NUM_CLASSES), part.shape
        assert np.allclose(part, logits[:batch], atol=1e-5), f"batch {batch} differs from the full batch"

    top1 = topk_accuracy(logits, labels, 1)
    top5 = topk_accuracy(logits, labels, 5)
    assert top1 >= MIN_TOP1, f"test top-1 {top1:.4f} is below the required {MIN_TOP1}"
    return top1, top5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.epochs < 1:
        print("--epochs must be at least 1", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    split = load_split()
    print(f"digits: {len(split.x_train)} train / {len(split.x_test)} test images, {args.epochs} epochs")
    model, train_seconds = train(split, epochs=args.epochs)
    reference = torch_logits(model, split.x_test)
    torch_top1 = topk_accuracy(reference, split.y_test, 1)

    onnx_path = out / ONNX_NAME
    test_path = out / TEST_NAME
    labels_path = out / LABELS_NAME
    torchscript_path = out / TORCHSCRIPT_NAME
    export_onnx(model, onnx_path)
    export_torchscript(model, torchscript_path)
    other_formats = export_other_frameworks(model, out)
    write_test_npz(test_path, split.x_test[..., np.newaxis].astype(np.float32), split.y_test.astype(np.int64))
    labels_path.write_text("".join(f"{c}\n" for c in range(NUM_CLASSES)), encoding="utf-8")

    top1, top5 = verify_onnx(onnx_path, split.x_test, split.y_test, reference)
    verify_torchscript(torchscript_path, split.x_test, reference)

    sums = {p.name: sha256(p) for p in (onnx_path, torchscript_path, *other_formats, test_path, labels_path)}
    (out / SUMS_NAME).write_text("".join(f"{h}  {n}\n" for n, h in sums.items()), encoding="utf-8")

    for name, digest in sums.items():
        print(f"sha256 {digest}  {name} ({(out / name).stat().st_size} bytes)")
    print(f"test top-1 (onnxruntime): {top1:.4f} ({round(top1 * len(split.y_test))}/{len(split.y_test)})")
    print(f"test top-5 (onnxruntime): {top5:.4f}")
    print(f"test top-1 (PyTorch):     {torch_top1:.4f}")
    print(f"train time: {train_seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
