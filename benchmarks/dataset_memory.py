"""Does memory stay bounded by the performance sample count, whatever the dataset's size?

Two folder datasets of random-content JPEGs of mixed sizes in class sub-folders (10,000 and 256 images, generated
in a temporary folder), one tiny ONNX classifier that takes 3x224x224 float32 (GlobalAveragePool + MatMul, seeded
weights) behind a full ImageNet-style pre-processing (decode RGB, resize 256 covering, center crop 224, normalize,
CHW, float32). Each dataset is evaluated in performance mode with performance_sample_count 256 through the agent
path (``python -m mlmodelscope.agent --spec run.json``, one process per run, no NATS), and the peak RSS of that
process (``os.wait4``'s ru_maxrss) is compared: the sample library keeps only LoadGen's loaded set in RAM, so the
10,000-image run must not need much more than the 256-image one, although its fully pre-processed dataset
(10000 x 3 x 224 x 224 x 4 bytes, 6 GB) would not fit. The sample cache is off, so both runs decode.

Target (issue 14): ratio <= 1.3. Usage: ``python benchmarks/dataset_memory.py [--images N] [--seconds S]``; the
last line is ``rss ratio <N>/256: X.XX``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.run_contract import ResolvedResources, RunSpec

CLASSES = 10
LOADED_SET = 256
SIDE = 224
REPO = Path(__file__).resolve().parent.parent


def build_model(path: Path) -> None:
    """GlobalAveragePool(3x224x224) -> Flatten -> MatMul(3x10): cheap, so the run measures the harness's memory."""
    weights = np.random.default_rng(0).standard_normal((3, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny-224",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _jpeg(index: int, folder: Path) -> None:
    """A smooth random image (8x8 noise upsampled) of a mixed size; small files, real decoding work."""
    rng = np.random.default_rng(index)
    width, height = int(rng.integers(160, 481)), int(rng.integers(160, 481))
    small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    path = folder / f"class{index % CLASSES}" / f"{index:05d}.jpg"
    small.resize((width, height), Image.Resampling.BICUBIC).save(path, format="JPEG", quality=85)


def write_dataset(folder: Path, images: int) -> None:
    for k in range(CLASSES):
        (folder / f"class{k}").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        list(pool.map(lambda i: _jpeg(i, folder), range(images)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifests(root: Path, sizes: list[int]) -> None:
    for sub in ("models", "datasets", "frameworks", "data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    build_model(root / "data" / "tiny224.onnx")
    (root / "frameworks" / "onnxruntime.yaml").write_text((REPO / "assets/frameworks/onnxruntime.yaml").read_text())
    (root / "models" / "tiny-224.yaml").write_text(
        f"""apiVersion: mlmodelscope.org/v1alpha1
kind: Model
metadata: {{name: tiny-224}}
spec:
  task: image_classification
  framework: {{name: onnxruntime}}
  artifacts:
    - {{uri: ../data/tiny224.onnx, sha256: {_sha256(root / "data" / "tiny224.onnx")}, format: onnx}}
  inputs:
    - name: input
      type: image
      shape: [3, {SIDE}, {SIDE}]
      dtype: float32
      preprocess:
        - decode: {{color_mode: RGB}}
        - resize: {{size: [256, 256], keep_aspect_ratio: true}}
        - crop: {{size: [{SIDE}, {SIDE}]}}
        - normalize: {{mean: [123.675, 116.28, 103.53], scale: [58.395, 57.12, 57.375]}}
        - layout: CHW
        - dtype: float32
  outputs:
    - name: logits
      shape: [{CLASSES}]
      postprocess: [{{softmax: {{}}}}, {{top_k: {{k: 5}}}}]
  attributes: {{weights: random}}
"""
    )
    for size in sizes:
        (root / "datasets" / f"jpegs-{size}.yaml").write_text(
            f"""apiVersion: mlmodelscope.org/v1alpha1
kind: Dataset
metadata: {{name: jpegs-{size}}}
spec:
  task: image_classification
  size: {size}
  source: {{kind: folder, uri: jpegs-{size}}}
"""
        )


def peak_rss_bytes(root: Path, dataset: str, seconds: float) -> tuple[int, dict[str, object]]:
    """Run the agent on ``dataset`` in its own process; (its peak RSS, the result's performance summary)."""
    registry = load_registry([root])
    run = root / "runs" / dataset
    run.mkdir(parents=True)
    spec = RunSpec(
        run_id=f"memory-{dataset}",
        evaluation_id=f"memory-{dataset}",
        model="tiny-224",
        framework="onnxruntime",
        dataset=dataset,
        resources=ResolvedResources.from_registry(registry, "tiny-224", "onnxruntime", dataset),
        intra_op_threads=2,
        settings={  # type: ignore[arg-type]
            "scenario": "single-stream",
            "mode": "performance",
            "min_duration_s": seconds,
            "min_query_count": 100,
            "performance_sample_count": LOADED_SET,
            "sample_cache": False,
        },
        cache_dir=root / "cache",
        output_dir=run / "out",
    )
    (run / "run.json").write_text(spec.model_dump_json())
    command = [sys.executable, "-m", "mlmodelscope.agent", "--spec", str(run / "run.json"), "-o", str(run / "r.json")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the agent run on {dataset} failed: {stderr[-2000:]}")
    performance = json.loads((run / "r.json").read_text())["performance"]
    summary = {
        "valid": performance["verdict"]["valid"],
        "performance_sample_count": performance["effective_settings"].get("performance_sample_count"),
        "queries": performance["queries"],
    }
    return usage.ru_maxrss * 1024, summary  # Linux: ru_maxrss is in KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="Images in the large dataset.")
    parser.add_argument("--seconds", type=float, default=2.0, help="min_duration of each performance run.")
    args = parser.parse_args(argv)
    sizes = [args.images, LOADED_SET]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_manifests(root, sizes)
        for size in sizes:
            write_dataset(root / "datasets" / f"jpegs-{size}", size)
        peaks = {}
        for size in sizes:
            peaks[size], summary = peak_rss_bytes(root, f"jpegs-{size}", args.seconds)
            print(
                f"{size:>6} images, performance_sample_count {LOADED_SET}: peak RSS {peaks[size] / 2**20:8.1f} MiB "
                f"{summary}"
            )
    full = args.images * 3 * SIDE * SIDE * 4
    loaded = LOADED_SET * 3 * SIDE * SIDE * 4
    print(
        f"fully pre-processed {args.images}-image dataset: {full / 2**20:.1f} MiB ({full} bytes); "
        f"one loaded set of {LOADED_SET}: {loaded / 2**20:.1f} MiB"
    )
    print(f"rss ratio {args.images}/{LOADED_SET}: {peaks[args.images] / peaks[LOADED_SET]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
