"""Export the trained shapes detector and segmenter as MXNet artifacts (symbol + params tars), from torch weights.

Why this script exists
----------------------
MXNet 1.9.1 runs in its own environment (``.venv-mxnet``, numpy < 1.24, no torch), so ``build_shapes.py`` writes
the batch-norm-folded weights to an ``.npz`` per model (keys ``<conv>.weight`` OIHW, ``<conv>.bias``, the tables of
``shapes_arch.py``) and runs this script with that environment's Python::

    .venv-mxnet/bin/python scripts/shapes_mxnet.py --detector /tmp/det.npz --segmenter /tmp/seg.npz \\
        --out assets/artifacts/shapes [--check /tmp/check.npz]

The gluon blocks are the torch forward passes op for op: MXNet is NCHW with OIHW kernels and symmetric padding,
like torch; nearest 2x upsampling is ``repeat`` along H and W; the detector's cell grid is a gluon ``Constant``
(saved in the params). Outputs: ``shapes_detector.mxnet.tar`` (``shapes_detector-symbol.json`` +
``shapes_detector-0000.params``; outputs boxes, scores by position) and ``shapes_segmenter.mxnet.tar`` (mask),
written deterministically (sorted members, mtime 0, uid/gid 0, ustar headers). ``--check`` runs each exported model on
the array of that npz named after it and writes the outputs next to it (``<check>.out.npz``, keys
``<model>_<output index>``), for the build's cross-framework comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from shapes_arch import DETECTOR_CONVS, GRID, INPUT_HW, NUM_CLASSES, SEGMENTER_CONVS, STRIDE, ConvSpec, grid_cells

from mlmodelscope.agent.zoo.mxnet_models import import_mxnet

INPUT_NAME = "input"
DETECTOR = "shapes_detector"
SEGMENTER = "shapes_segmenter"


def _convs(nn: Any, block: Any, specs: tuple[ConvSpec, ...]) -> dict[str, Any]:
    layers = {}
    for spec in specs:
        conv = nn.Conv2D(
            spec.cout,
            spec.kernel,
            strides=spec.stride,
            padding=spec.kernel // 2,
            in_channels=spec.cin,
            activation="relu" if spec.relu else None,
            prefix=f"{spec.name}_",
        )
        block.register_child(conv, spec.name)
        layers[spec.name] = conv
    return layers


def _up(F: Any, x: Any) -> Any:
    return F.repeat(F.repeat(x, repeats=2, axis=2), repeats=2, axis=3)


def blocks() -> tuple[Any, Any]:
    """The detector and segmenter gluon blocks (parameters uninitialised)."""
    mx = import_mxnet()
    nn = mx.gluon.nn

    class Detector(mx.gluon.HybridBlock):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(prefix="shapes_det_")
            with self.name_scope():
                self.convs = _convs(nn, self, DETECTOR_CONVS)
                self.grid = self.params.get_constant("grid", mx.nd.array(grid_cells()))

        def hybrid_forward(self, F: Any, x: Any, grid: Any) -> Any:
            c = self.convs
            c1 = c["stem"](x)
            c2 = c["block2"](c["down2"](c1))
            c3 = c["block3"](c["down3"](c2))
            c4 = c["block4"](c["down4"](c3))
            u3 = c["up3"](F.concat(_up(F, c4), c3, dim=1))
            u2 = c["up2"](F.concat(_up(F, u3), c2, dim=1))
            head = c["head"](u2)
            centre = F.broadcast_add(c["offset"](head), grid) * float(STRIDE)
            extent = F.exp(c["size"](head)) * float(STRIDE)
            boxes = F.reshape(
                F.transpose(F.concat(centre, extent, dim=1), axes=(0, 2, 3, 1)), shape=(0, GRID * GRID, 4)
            )
            scores = F.reshape(
                F.transpose(F.sigmoid(c["heat"](head)), axes=(0, 2, 3, 1)), shape=(0, GRID * GRID, NUM_CLASSES)
            )
            return boxes, scores

    class Segmenter(mx.gluon.HybridBlock):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(prefix="shapes_seg_")
            with self.name_scope():
                self.convs = _convs(nn, self, SEGMENTER_CONVS)

        def hybrid_forward(self, F: Any, x: Any) -> Any:
            c = self.convs
            e1 = c["enc1"](x)
            e2 = c["enc2b"](c["enc2"](e1))
            e3 = c["enc3b"](c["enc3"](e2))
            e4 = c["enc4b"](c["enc4"](e3))
            d3 = c["dec3"](F.concat(_up(F, e4), e3, dim=1))
            d2 = c["dec2"](F.concat(_up(F, d3), e2, dim=1))
            d1 = c["dec1"](F.concat(_up(F, d2), e1, dim=1))
            d0 = c["dec0"](F.concat(_up(F, d1), x, dim=1))
            return c["logits"](d0)

    return Detector(), Segmenter()


def load_weights(block: Any, weights: dict[str, np.ndarray], specs: tuple[ConvSpec, ...]) -> None:
    mx = import_mxnet()
    block.initialize(ctx=mx.cpu())
    expected = {f"{s.name}.{kind}" for s in specs for kind in ("weight", "bias")}
    if set(weights) != expected:
        raise SystemExit(f"error: the weights have keys {sorted(weights)}, expected {sorted(expected)}.")
    for spec in specs:
        conv = block.convs[spec.name]
        for kind, param in (("weight", conv.weight), ("bias", conv.bias)):
            array = weights[f"{spec.name}.{kind}"]
            if param.shape and tuple(param.shape) != array.shape:
                raise SystemExit(f"error: {spec.name}.{kind} has shape {array.shape}, gluon expects {param.shape}.")
            param.set_data(mx.nd.array(array, dtype=np.float32))


def export_checkpoint(block: Any, example: np.ndarray, destination: Path, name: str) -> tuple[Path, Path]:
    """``<name>-symbol.json`` + ``<name>-0000.params`` of ``block``, with the data input named ``input``.

    The agent zoo's ``export_checkpoint`` does the same for one-output blocks; the detector has two outputs.
    """
    mx = import_mxnet()
    block.hybridize()
    result = block(mx.nd.array(example))
    for array in result if isinstance(result, list | tuple) else [result]:
        array.wait_to_read()
    outputs = block(mx.sym.var(INPUT_NAME))
    symbol = mx.sym.Group(list(outputs)) if isinstance(outputs, list | tuple) else outputs
    params = {p.name: p for p in block.collect_params().values()}
    saved: dict[str, Any] = {}
    for prefix, names in (("arg", symbol.list_arguments()), ("aux", symbol.list_auxiliary_states())):
        for param_name in names:
            if param_name in params:
                saved[f"{prefix}:{param_name}"] = params[param_name].data(mx.cpu())
    missing = [n for n in symbol.list_arguments() if n not in params and n != INPUT_NAME]
    if missing:
        raise SystemExit(f"error: exporting {name}: graph arguments {missing} are neither parameters nor the input.")
    symbol_path, params_path = destination / f"{name}-symbol.json", destination / f"{name}-0000.params"
    # gluon names a Constant's initializer after id() of a Python object: drop the number for stable bytes (the
    # params file holds the value; loading never reads the initializer's name).
    symbol_path.write_text(re.sub(r'"(Constant_[A-Za-z0-9_]*?)_\d+"', r'"\1"', symbol.tojson()))
    mx.nd.save(str(params_path), dict(sorted(saved.items())))
    return symbol_path, params_path


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


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: np.asarray(data[key], dtype=np.float32) for key in data.files}


def _run_exported(files: tuple[Path, Path], x: np.ndarray) -> list[np.ndarray]:
    """Load symbol + params as the MXNet predictor does (SymbolBlock) and run it."""
    mx = import_mxnet()
    net = mx.gluon.SymbolBlock.imports(str(files[0]), [INPUT_NAME], str(files[1]), ctx=mx.cpu())
    result = net(mx.nd.array(x))
    results = result if isinstance(result, list | tuple) else [result]
    return [r.asnumpy() for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, required=True, help="npz of the detector's folded weights")
    parser.add_argument("--segmenter", type=Path, required=True, help="npz of the segmenter's folded weights")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two .mxnet.tar files")
    parser.add_argument(
        "--check", type=Path, default=None, help="npz of inputs keyed by model name: run the exports on them"
    )
    args = parser.parse_args(argv)
    detector, segmenter = blocks()
    load_weights(detector, _npz(args.detector), DETECTOR_CONVS)
    load_weights(segmenter, _npz(args.segmenter), SEGMENTER_CONVS)
    example = np.zeros((2, 3, *INPUT_HW), dtype=np.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, np.ndarray] = {}
    checks = {} if args.check is None else dict(np.load(args.check))
    with tempfile.TemporaryDirectory() as scratch:
        for block, name in ((detector, DETECTOR), (segmenter, SEGMENTER)):
            folder = Path(scratch) / name
            folder.mkdir()
            files = export_checkpoint(block, example, folder, name)
            archive = args.out / f"{name}.mxnet.tar"
            write_archive(list(files), archive)
            print(f"{archive}  sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()}")
            if name in checks:
                for i, array in enumerate(_run_exported(files, checks[name].astype(np.float32))):
                    outputs[f"{name}_{i}"] = array
    if args.check is not None:
        np.savez(args.check.with_suffix(".out.npz"), **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
