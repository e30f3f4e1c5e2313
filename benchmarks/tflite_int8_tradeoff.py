"""What does int8 post-training quantisation of MobileNetV2 cost in accuracy, and buy in speed, under LiteRT?

The float32 ``zoo:mobilenet-v2-imagenet`` and the int8 ``zoo:mobilenet-v2-imagenet-int8`` TFLite models (built on
first use into the artifact cache, sha256-pinned; the int8 one calibrated on other scikit-image photos than these)
run side by side through bare LiteRT (``set_tensor`` / ``invoke`` / ``get_tensor``, batch 1, ``--threads``
interpreter threads) on the ``imagenet-photos`` set, pre-processed by the platform's ``Preprocessor`` with the
model manifest's steps. Printed:

* each model's top-1 / top-5 against the photos' labels (6 photos: a sanity set, not ImageNet's accuracy);
* the int8 model against the float32 one: top-1 agreement, top-5 overlap, max |dprob| of the softmax;
* the p50 latency of one batch-1 invoke (set_tensor + invoke + get_tensor) for each model, measured in
  ``--rounds`` alternating rounds of ``--invokes`` invokes each so that machine noise hits both alike, and the
  ratio int8/float32 (only the ratio means anything on a shared machine; absolute times depend on the CPU).

Usage: ``.venv/bin/python benchmarks/tflite_int8_tradeoff.py [--cache-dir DIR] [--threads 1] [--rounds 5]
[--invokes 200] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.core.artifacts.zoo import build_zoo_artifact
from mlmodelscope.core.manifests.artifact_spec import ZooRef
from mlmodelscope.core.manifests.loading import load_file
from mlmodelscope.core.manifests.resources import Model
from mlmodelscope.core.processing.postprocess import softmax
from mlmodelscope.core.processing.preprocess import Preprocessor

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "assets" / "datasets" / "imagenet-photos"
MANIFEST = REPO / "assets" / "models" / "mobilenet-v2-imagenet.yaml"
MODELS = {"float32": "mobilenet-v2-imagenet", "int8": "mobilenet-v2-imagenet-int8"}


def photos() -> tuple[list[str], np.ndarray, np.ndarray]:
    """(file names, float32 (6, 3, 224, 224) model inputs, int labels) of the imagenet-photos set."""
    (loaded,) = load_file(MANIFEST)
    model = loaded.resource
    assert isinstance(model, Model)
    preprocess = Preprocessor(model.spec.inputs[0].preprocess)
    names, labels = [], []
    for line in (PHOTOS / "labels.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, label = line.split()
            names.append(name)
            labels.append(int(label))
    inputs = preprocess.batch([(PHOTOS / name).read_bytes() for name in names])
    return names, np.asarray(inputs, dtype=np.float32), np.asarray(labels)


class Runner:
    """One .tflite model in a LiteRT interpreter at batch 1."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        (self.inp,), (self.out,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.interpreter.resize_tensor_input(self.inp["index"], [1, 3, 224, 224], strict=True)
        self.interpreter.allocate_tensors()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.inp["index"], x[np.newaxis])
        self.interpreter.invoke()
        logits: np.ndarray = np.asarray(self.interpreter.get_tensor(self.out["index"]))[0]
        return logits


def measure(args: argparse.Namespace) -> dict[str, Any]:
    names, inputs, labels = photos()
    runners, shas = {}, {}
    for variant, model in MODELS.items():
        built = build_zoo_artifact(args.cache_dir, ZooRef(name=model), "tflite")
        runners[variant], shas[variant] = Runner(built.path, args.threads), built.sha256
    probabilities = {v: softmax(np.stack([run(x) for x in inputs])) for v, run in runners.items()}
    latencies_ms: dict[str, list[float]] = {v: [] for v in runners}
    for _ in range(args.rounds):
        for variant, run in runners.items():
            for i in range(args.invokes):
                started = time.perf_counter_ns()
                run(inputs[i % len(inputs)])
                latencies_ms[variant].append((time.perf_counter_ns() - started) / 1e6)
    result: dict[str, Any] = {"photos": names, "threads": args.threads, "models": {}}
    for variant, probs in probabilities.items():
        top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
        result["models"][variant] = {
            "model": MODELS[variant],
            "sha256": shas[variant],
            "top1_class": top5[:, 0].tolist(),
            "top1": float(np.mean(top5[:, 0] == labels)),
            "top5": float(np.mean([label in row for label, row in zip(labels, top5, strict=True)])),
            "p50_ms": float(np.median(latencies_ms[variant])),
        }
    f32, i8 = probabilities["float32"], probabilities["int8"]
    f32_top5 = np.argsort(-f32, axis=1, kind="stable")[:, :5]
    i8_top5 = np.argsort(-i8, axis=1, kind="stable")[:, :5]
    result["int8_vs_float32"] = {
        "top1_agreement": float(np.mean(f32_top5[:, 0] == i8_top5[:, 0])),
        "top5_overlap": float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(f32_top5, i8_top5, strict=True)])),
        "max_abs_probability_diff": float(np.max(np.abs(f32 - i8))),
        "p50_latency_ratio": result["models"]["int8"]["p50_ms"] / result["models"]["float32"]["p50_ms"],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "artifacts", help="artifact cache")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per model")
    parser.add_argument("--invokes", type=int, default=200, help="batch-1 invokes per round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = measure(args)
    for variant, figures in result["models"].items():
        print(
            f"{variant:8s} {figures['model']}: top-1 {figures['top1']:.3f}, top-5 {figures['top5']:.3f} on "
            f"{len(result['photos'])} photos; p50 {figures['p50_ms']:.3f} ms/invoke (batch 1, "
            f"{result['threads']} thread(s))"
        )
    compared = result["int8_vs_float32"]
    print(
        f"int8 vs float32: top-1 agreement {compared['top1_agreement']:.3f}, top-5 overlap "
        f"{compared['top5_overlap']:.3f}, max |dprob| {compared['max_abs_probability_diff']:.4f}, "
        f"p50 latency ratio int8/float32 {compared['p50_latency_ratio']:.3f}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
