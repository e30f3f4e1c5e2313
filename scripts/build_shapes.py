"""Build the real "shapes" fixtures: a COCO test split, a trained detector and a trained segmenter, 4 formats each.

Why this script exists
----------------------
MLModelScope's object-detection and semantic-segmentation paths (COCO datasets, box/mask post-processing, COCO mAP,
mIoU, cross-framework agreement) need real trained models and exactly labelled data that fit in the repository,
are made offline, and give known figures. This script makes them in a few minutes on two CPU cores, from fixed
seeds, and writes ``assets/artifacts/shapes/``::

    .venv/bin/python scripts/build_shapes.py                      # writes assets/artifacts/shapes/
    .venv/bin/python scripts/build_shapes.py --out /tmp/shapes

* data (shapes_data.py): 160 x 120 scenes, scikit-image photographs with 1-4 circles / squares / triangles, exact
  boxes and instance masks (polygons, and RLE for one annotation in three); ``TRAIN_IMAGES`` to train on,
  ``TEST_IMAGES`` written as ``shapes-coco.tar.gz`` (``images/NNNN.jpg`` + ``annotations.json``, a byte-deterministic
  tar.gz: sorted members, mtime 0, uid/gid 0, gzip mtime 0 and no file name);
* models (shapes_nets.py, trained by shapes_train.py): ``shapes_detector`` (letterboxed 128 x 128 input, outputs
  ``boxes`` (N, 1024, 4) cxcywh pixels and ``scores`` (N, 1024, 3), no NMS) and ``shapes_segmenter`` (128 x 128
  resized input, output ``mask`` (N, 4, 128, 128) logits); batch norm folded before export;
* exports of the same weights: ONNX opset 17 (``.onnx``), TorchScript (``.torchscript.pt``, traced), Keras
  (``.keras``, shapes_keras.py) and MXNet (``.mxnet.tar``, shapes_mxnet.py in ``.venv-mxnet``); each is reloaded and
  compared with the PyTorch model (max |diff| printed, bounded by ``TOLERANCE``);
* ``labels.txt`` (circle, square, triangle), ``segmenter_labels.txt`` (background first), ``metrics.json`` (the
  reference figures, shapes_eval.py, on the ONNX outputs) and ``SHA256SUMS``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import multiprocessing
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shapes_data
import shapes_eval
import shapes_train
from shapes_arch import DETECTOR_CONVS, INPUT_HW, SEGMENTER_CONVS
from shapes_nets import conv_weights, fold_batch_norm

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "assets" / "artifacts" / "shapes"
MXNET_PYTHON = REPO_ROOT / ".venv-mxnet" / "bin" / "python"
TRAIN_IMAGES = 1200
TEST_IMAGES = 200
DETECTOR_EPOCHS = 24
SEGMENTER_EPOCHS = 16
OPSET = 17
MIN_MAP_50 = 0.5
MIN_MIOU = 0.33  # what it reaches: it separates shapes from background, not yet circle/square/triangle
TOLERANCE = {"boxes": 2e-3, "scores": 1e-4, "mask": 1e-3}  # max |export - torch|; boxes are pixels (0..128)
MODELS = {"shapes_detector": ("boxes", "scores"), "shapes_segmenter": ("mask",)}
ARCHIVE_NAME = "shapes-coco.tar.gz"
LABELS_NAME = "labels.txt"
SEGMENTER_LABELS_NAME = "segmenter_labels.txt"
METRICS_NAME = "metrics.json"
SUMS_NAME = "SHA256SUMS"
INPUT_NAME = "input"


def dataset_archive(scenes: list[shapes_data.Scene]) -> tuple[bytes, dict[str, Any]]:
    """The test split as a deterministic tar.gz (images/NNNN.jpg + annotations.json) and its COCO document."""
    names = [f"{i:04d}.jpg" for i in range(1, len(scenes) + 1)]
    document = shapes_data.coco_document(scenes, names)
    members = {f"images/{name}": scene.jpeg() for name, scene in zip(names, scenes, strict=True)}
    members["annotations.json"] = shapes_data.coco_json(document)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in sorted([*members, "images"]):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
            if name == "images":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
                continue
            info.size = len(members[name])
            archive.addfile(info, io.BytesIO(members[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as compressed:
        compressed.write(tar_bytes.getvalue())
    return out.getvalue(), document


def export_onnx(model: nn.Module, outputs: tuple[str, ...], path: Path) -> None:
    """One self-contained ONNX file (legacy exporter, dynamic batch), doc strings stripped."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, *INPUT_HW),),
            buffer,
            dynamo=False,
            export_params=True,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(proto, full_check=True)
    path.write_bytes(proto.SerializeToString(deterministic=True))


def export_torchscript(model: nn.Module, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (torch.zeros(1, 3, *INPUT_HW),))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    path.write_bytes(buffer.getvalue())


def run_onnx(path: Path, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return [np.asarray(a) for a in session.run(None, {INPUT_NAME: x})]


def run_torchscript(path: Path, x: np.ndarray) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        result = loaded(torch.from_numpy(x))
    return [r.numpy() for r in (result if isinstance(result, tuple) else (result,))]


def run_torch(model: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        result = model(torch.from_numpy(x))
    return [r.numpy() for r in (result if isinstance(result, tuple) else (result,))]


def export_mxnet(
    weights: dict[str, dict[str, np.ndarray]], inputs: dict[str, np.ndarray], out: Path
) -> dict[str, list[np.ndarray]]:
    """Both MXNet tars (shapes_mxnet.py in .venv-mxnet) and their outputs on ``inputs`` (per model)."""
    if not MXNET_PYTHON.exists():
        raise SystemExit(f"{MXNET_PYTHON} is missing: run `make setup` (it creates the MXNet environment).")
    results: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        paths = {name: Path(scratch) / f"{name}.npz" for name in MODELS}
        for name, path in paths.items():
            np.savez(path, **weights[name])
        check = Path(scratch) / "check.npz"
        np.savez(check, **inputs)
        command = [str(MXNET_PYTHON), str(Path(__file__).with_name("shapes_mxnet.py")), "--out", str(out)]
        command += ["--detector", str(paths["shapes_detector"]), "--segmenter", str(paths["shapes_segmenter"])]
        completed = subprocess.run([*command, "--check", str(check)], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise SystemExit(f"the MXNet export failed ({' '.join(command)}):\n{completed.stderr[-4000:]}")
        with np.load(check.with_suffix(".out.npz")) as data:
            for model in MODELS:
                results[model] = [data[f"{model}_{i}"] for i in range(len(MODELS[model]))]
    return results


def compare(model: str, framework: str, got: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float]:
    """Max |diff| per output; fails the build past ``TOLERANCE``."""
    diffs = {}
    for name, a, b in zip(MODELS[model], got, reference, strict=True):
        assert a.shape == b.shape, (model, framework, name, a.shape, b.shape)
        diff = float(np.max(np.abs(a.astype(np.float64) - b)))
        assert diff <= TOLERANCE[name], f"{model} {framework} {name}: max |diff| {diff} > {TOLERANCE[name]}"
        diffs[name] = diff
    print(f"  {model:17s} {framework:12s} " + "  ".join(f"{n} max|diff| {d:.2e}" for n, d in diffs.items()))
    return diffs


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    parser.add_argument("--detector-epochs", type=int, default=DETECTOR_EPOCHS)
    parser.add_argument("--segmenter-epochs", type=int, default=SEGMENTER_EPOCHS)
    parser.add_argument(
        "--trained-cache",
        type=Path,
        default=None,
        help="development: save the trained models here, or load them from here when the file exists",
    )
    return parser.parse_args(argv)


def _train_job(kind: str, train_images: int, epochs: int) -> tuple[nn.Module, float]:
    """Train one model in its own process (seeded there; the scenes are made there too) and fold its batch norm."""
    shapes_train.seed_everything()
    scenes = shapes_data.scenes("train", train_images)
    if kind == "detector":
        model, seconds = shapes_train.train_detector(shapes_train.detector_data(scenes), epochs, _log(kind))
    else:
        model, seconds = shapes_train.train_segmenter(shapes_train.segmenter_data(scenes), epochs, _log(kind))
    return fold_batch_norm(model), seconds


def _log(kind: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        print(f"{kind}:{line}", flush=True)

    return log


def _test_inputs(test_scenes: list[shapes_data.Scene]) -> dict[str, np.ndarray]:
    """Each model's float32 NCHW input for the test scenes (its own pre-processing)."""
    detector = shapes_train.to_input(shapes_train.detector_data(test_scenes).images)
    segmenter = shapes_train.to_input(shapes_train.segmenter_data(test_scenes).images)
    return {"shapes_detector": detector.contiguous().numpy(), "shapes_segmenter": segmenter.contiguous().numpy()}


def train_both(
    args: argparse.Namespace,
) -> tuple[dict[str, nn.Module], dict[str, np.ndarray], list[shapes_data.Scene], dict[str, float]]:
    """Both trained (folded) models, their test inputs, the test scenes and the training wall times.

    The two trainings run side by side in two spawned processes (two threads each); each is a pure function of
    its arguments, so running them apart changes no bit of the result.
    """
    if args.trained_cache is not None and args.trained_cache.exists():
        cached = torch.load(args.trained_cache, weights_only=False)
        test_scenes = shapes_data.scenes("test", TEST_IMAGES)
        return cached["models"], _test_inputs(test_scenes), test_scenes, cached["seconds"]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        detector_job = pool.submit(_train_job, "detector", args.train_images, args.detector_epochs)
        segmenter_job = pool.submit(_train_job, "segmenter", args.train_images, args.segmenter_epochs)
        print(
            f"training on {args.train_images} scenes: detector {args.detector_epochs} epochs, "
            f"segmenter {args.segmenter_epochs} epochs (in parallel)",
            flush=True,
        )
        test_scenes = shapes_data.scenes("test", TEST_IMAGES)
        inputs = _test_inputs(test_scenes)
        detector, detector_s = detector_job.result()
        segmenter, segmenter_s = segmenter_job.result()
    models = {"shapes_detector": detector, "shapes_segmenter": segmenter}
    return models, inputs, test_scenes, {"detector": detector_s, "segmenter": segmenter_s}


def export_all(
    models: dict[str, nn.Module], inputs: dict[str, np.ndarray], out: Path
) -> tuple[list[Path], list[np.ndarray], list[np.ndarray]]:
    """Every format of both models, each checked against PyTorch; returns the files and the ONNX outputs."""
    from shapes_keras import export_keras, run_keras

    reference = {name: run_torch(model, inputs[name]) for name, model in models.items()}
    files: list[Path] = []
    onnx_outputs: dict[str, list[np.ndarray]] = {}
    for name, model in models.items():
        onnx_path, ts_path = out / f"{name}.onnx", out / f"{name}.torchscript.pt"
        export_onnx(model, MODELS[name], onnx_path)
        export_torchscript(model, ts_path)
        onnx_outputs[name] = run_onnx(onnx_path, inputs[name])
        compare(name, "onnxruntime", onnx_outputs[name], reference[name])
        compare(name, "torchscript", run_torchscript(ts_path, inputs[name]), reference[name])
        files += [onnx_path, ts_path]
    weights = {
        "shapes_detector": {k: v.numpy() for k, v in conv_weights(models["shapes_detector"], DETECTOR_CONVS).items()},
        "shapes_segmenter": {
            k: v.numpy() for k, v in conv_weights(models["shapes_segmenter"], SEGMENTER_CONVS).items()
        },
    }
    keras_files = export_keras(weights["shapes_detector"], weights["shapes_segmenter"], out)
    for name, path in zip(MODELS, keras_files, strict=True):
        compare(name, "keras", run_keras(path, inputs[name]), reference[name])
    for name, outputs in export_mxnet(weights, inputs, out).items():
        compare(name, "mxnet", outputs, reference[name])
    files += [*keras_files, *(out / f"{name}.mxnet.tar" for name in MODELS)]
    return files, onnx_outputs["shapes_detector"], onnx_outputs["shapes_segmenter"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shapes_train.seed_everything()
    models, inputs, test_scenes, seconds = train_both(args)
    if args.trained_cache is not None:
        torch.save({"models": models, "seconds": seconds}, args.trained_cache)
    archive, document = dataset_archive(test_scenes)
    (out / ARCHIVE_NAME).write_bytes(archive)
    (out / LABELS_NAME).write_text("".join(f"{c}\n" for c in shapes_data.CLASSES), encoding="utf-8")
    (out / SEGMENTER_LABELS_NAME).write_text(
        "".join(f"{c}\n" for c in ("background", *shapes_data.CLASSES)), encoding="utf-8"
    )
    files, (boxes, scores), (mask,) = export_all(models, inputs, out)
    detection = shapes_eval.coco_detection_metrics(document, boxes, scores)
    truth = np.stack([scene.semantic_mask() for scene in test_scenes])
    segmentation = shapes_eval.segmentation_metrics(truth, shapes_eval.semantic_predictions(mask))
    metrics = {
        "detection": detection,
        "segmentation": segmentation,
        "test_images": TEST_IMAGES,
        "annotations": len(document["annotations"]),
    }
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    names = [*files, out / ARCHIVE_NAME, out / LABELS_NAME, out / SEGMENTER_LABELS_NAME, out / METRICS_NAME]
    (out / SUMS_NAME).write_text("".join(f"{sha256(p)}  {p.name}\n" for p in names), encoding="utf-8")
    for path in names:
        print(f"sha256 {sha256(path)}  {path.name} ({path.stat().st_size} bytes)")
    print("detection (onnxruntime): " + ", ".join(f"{k} {detection[k]:.4f}" for k in shapes_eval.COCO_STATS))
    print(
        f"segmentation (onnxruntime): mean IoU {segmentation['mean_iou']:.4f} "
        f"(shapes only {segmentation['mean_iou_shapes']:.4f}), pixel accuracy {segmentation['pixel_accuracy']:.4f}"
    )
    print(f"train time: detector {seconds['detector']:.0f} s, segmenter {seconds['segmenter']:.0f} s")
    assert detection["map_50"] >= MIN_MAP_50, f"detector mAP@0.5 {detection['map_50']:.4f} < {MIN_MAP_50}"
    assert segmentation["mean_iou"] >= MIN_MIOU, f"segmenter mean IoU {segmentation['mean_iou']:.4f} < {MIN_MIOU}"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
