"""Issue 4's acceptance, end to end through the CLI in local mode (agents as processes, MXNet in its own runtime).

* The digits CNN, the same trained weights in four formats, evaluated on ONNX Runtime, PyTorch, TensorFlow and
  MXNet in parallel: identical top-1, 100% top-1 agreement with the reference, max |dp| <= 1e-4.
* ResNet-50 from the model zoo (random weights, built on demand in each framework's runtime) evaluated on all four
  with --trace-level framework: every query's predict span has the framework's layer/op spans inside it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.core.tracing.chrome import validate_chrome_trace
from tests.support.cli import run_cli
from tests.support.paths import REPO
from tests.support.traces import measured_model_spans, profiled_model_spans

pytestmark = [pytest.mark.slow, pytest.mark.mxnet]

FRAMEWORKS = ("onnxruntime", "pytorch", "tensorflow", "mxnet")


def _evaluate(tmp_path: Path, *args: str, timeout_s: float = 900) -> dict[str, Any]:
    output = tmp_path / "summary.json"
    run = run_cli(
        "--cache-dir",
        str(tmp_path / "cache"),
        "evaluate",
        "--framework",
        ",".join(FRAMEWORKS),
        "--output",
        str(output),
        *args,
        cwd=REPO,
        data_dir=tmp_path / "data",
        timeout_s=timeout_s,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    return json.loads(output.read_text())  # type: ignore[no-any-return]


def test_digits_agree_across_all_four_frameworks(tmp_path: Path) -> None:
    summary = _evaluate(tmp_path, "--model", "digits-cnn", "--mode", "accuracy")
    results = {r["framework"]["name"]: r for r in summary["results"]}
    assert set(results) == set(FRAMEWORKS), summary["failures"]
    top1 = {name: r["accuracy"]["top1"] for name, r in results.items()}
    assert len(set(top1.values())) == 1, top1
    assert top1["onnxruntime"] == pytest.approx(0.9889, abs=5e-5)
    assert summary["reference_framework"] == "onnxruntime"
    compared = {a["framework"].split()[0]: a for a in summary["agreement"]}
    assert set(compared) == {"pytorch", "tensorflow", "mxnet"}
    for name, measured in compared.items():
        assert measured["samples"] == 450, name
        assert measured["top1_agreement"] == 1.0, (name, measured)
        assert measured["max_abs_probability_diff"] <= 1e-4, (name, measured)
        assert measured["mean_js_divergence"] < 1e-8, (name, measured)


def _children_by_parent(spans: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    children: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        children[span["args"]["parent_id"]].append(span)
    return children


def test_resnet50_has_layer_spans_in_every_framework(tmp_path: Path) -> None:
    summary = _evaluate(
        tmp_path,
        "--model",
        "resnet50",
        "--mode",
        "performance",
        "--trace-level",
        "framework",
        "--min-duration",
        "1s",
        "--min-queries",
        "5",
        "--warmup",
        "5",
        "--parallel",
        "2",
    )
    results = {r["framework"]["name"]: r for r in summary["results"]}
    assert set(results) == set(FRAMEWORKS), summary["failures"]
    for name, result in results.items():
        trace_path = tmp_path / f"{name}.trace.json"
        exported = run_cli("trace", "export", result["id"], "-o", str(trace_path), cwd=REPO, data_dir=tmp_path / "data")
        assert exported.returncode == 0, exported.stderr
        document = json.loads(trace_path.read_text())
        validate_chrome_trace(document)
        spans = [e for e in document["traceEvents"] if e["ph"] == "X"]
        children = _children_by_parent(spans)
        model_spans = measured_model_spans([s for s in spans if s["name"] == "predict"], result)
        assert len(model_spans) == result["performance"]["queries"], name
        for parent in profiled_model_spans(model_spans, result):
            kids = [k for k in children[parent["args"]["span_id"]] if k["cat"] == "framework"]
            assert len(kids) >= 20, (name, len(kids))  # ResNet-50 runs dozens of convolutions per query
            for kid in kids:
                assert parent["ts"] <= kid["ts"] and kid["ts"] + kid["dur"] <= parent["ts"] + parent["dur"], name
            # Canonical op types (core.tracing.op_types), the same names in every framework and on every CPU:
            # ONNX Runtime's Conv/Gemm, aten::conv2d/aten::linear, TensorFlow's (oneDNN) fused Conv2D/MatMul and
            # MXNet's _sg_mkldnn_conv/_sg_mkldnn_fully_connected.
            op_types = {str(k["args"]["op_type"]) for k in kids if "op_type" in k["args"]}
            assert {"Conv2D", "MatMul"} <= op_types, (name, sorted(op_types))
