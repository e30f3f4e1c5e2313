"""Export the trained digits CNN as an MXNet artifact (symbol + params in a tar), from the PyTorch weights.

Why this script exists
----------------------
MXNet 1.9.1 runs in its own environment (``.venv-mxnet``: it needs numpy < 1.24), where torch is not installed, so
``scripts/build_digits.py`` cannot export to MXNet itself. Instead the trained weights travel as an ``.npz`` whose
keys are torch's ``state_dict`` keys, and this script, run with the MXNet environment's Python, rebuilds the same
network in gluon and exports it::

    .venv/bin/python -c "import numpy as np, torch; \\
        m = torch.jit.load('assets/artifacts/digits/digits_cnn.torchscript.pt'); \\
        np.savez('/tmp/w.npz', **{k: v.numpy() for k, v in m.state_dict().items()})"
    .venv-mxnet/bin/python scripts/digits_mxnet.py --weights /tmp/w.npz --out assets/artifacts/digits

The network (``build_digits.build_model``): ``nn.Sequential`` of Conv(1->16, 3x3, pad 1) [0], ReLU [1],
MaxPool 2 [2], Conv(16->32, 3x3, pad 1) [3], ReLU [4], AdaptiveAvgPool(1) [5], Flatten [6], Linear(32->10) [7].
MXNet is NCHW with OIHW convolution weights and (out, in) dense weights, like torch, so the arrays are copied as
they are. Input ``input`` float32 (N, 1, 8, 8) (pixels / 16), output logits (N, 10).

Output: ``<out>/digits_cnn.mxnet.tar`` holding ``digits_cnn-symbol.json`` and ``digits_cnn-0000.params``, written
deterministically (members sorted, mtime 0, uid/gid 0, no owner names, mode 0644, plain ustar headers), so the same
weights give the same bytes and the same sha256, which the script prints for the Model manifest
(``format: mxnet``, ``archive: true``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.zoo.mxnet_models import export_checkpoint, import_mxnet

ARCHIVE_NAME = "digits_cnn.mxnet.tar"
CHECKPOINT_NAME = "digits_cnn"
INPUT_NAME = "input"
INPUT_SHAPE = (1, 8, 8)
# gluon layer -> torch state_dict index (nn.Sequential position in build_digits.build_model)
TORCH_LAYERS = {"conv0": "0", "conv1": "3", "dense0": "7"}


def build_block(weights: dict[str, np.ndarray]) -> Any:
    """The digits CNN in gluon, with the given torch weights."""
    mx = import_mxnet()
    nn = mx.gluon.nn
    block = nn.HybridSequential(prefix="digits_")
    with block.name_scope():
        block.add(
            nn.Conv2D(16, 3, padding=1, in_channels=1, prefix="conv0_"),
            nn.Activation("relu"),
            nn.MaxPool2D(2, 2),
            nn.Conv2D(32, 3, padding=1, in_channels=16, prefix="conv1_"),
            nn.Activation("relu"),
            nn.GlobalAvgPool2D(),
            nn.Flatten(),
            nn.Dense(10, in_units=32, prefix="dense0_"),
        )
    block.initialize(ctx=mx.cpu())
    params = block.collect_params()
    expected = {f"{index}.{kind}" for index in TORCH_LAYERS.values() for kind in ("weight", "bias")}
    if set(weights) != expected:
        raise SystemExit(f"error: the weights have keys {sorted(weights)}, expected {sorted(expected)}.")
    for layer, index in TORCH_LAYERS.items():
        for kind in ("weight", "bias"):
            param = params[f"digits_{layer}_{kind}"]
            array = weights[f"{index}.{kind}"]
            if tuple(param.shape) != array.shape:
                raise SystemExit(f"error: {index}.{kind} has shape {array.shape}, gluon expects {param.shape}.")
            param.set_data(mx.nd.array(array, dtype=np.float32))
    return block


def write_archive(files: list[Path], archive: Path) -> None:
    """A tar of ``files`` (by name) that depends only on their names and bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files, key=lambda p: p.name):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", type=Path, required=True, help="npz of the torch state_dict (keys '0.weight', ...)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for digits_cnn.mxnet.tar")
    args = parser.parse_args(argv)
    with np.load(args.weights) as data:
        weights = {key: np.asarray(data[key], dtype=np.float32) for key in data.files}
    block = build_block(weights)
    example = np.zeros((2, *INPUT_SHAPE), dtype=np.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        files = export_checkpoint(block, [(INPUT_NAME, example)], Path(scratch), CHECKPOINT_NAME)
        archive = args.out / ARCHIVE_NAME
        write_archive(list(files), archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    print(f"{archive}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
