"""Local mode end to end: embedded NATS, the collector and agent processes, as `mlmodelscope evaluate` runs them."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from mlmodelscope.core.tracing.chrome import validate_chrome_trace
from tests.support.cli import run_cli
from tests.support.paths import REPO
from tests.support.traces import measured_model_spans, profiled_model_spans

pytestmark = pytest.mark.slow

ORT_OPS = {"Conv2D", "MaxPool", "GlobalAvgPool", "MatMul"}  # canonical op types (core.tracing.op_types)


def _evaluate(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    output = tmp_path / "r.json"
    run = run_cli(
        "--cache-dir",
        str(tmp_path / "cache"),
        "evaluate",
        "-m",
        "digits-cnn",
        "--min-duration",
        "0.5s",
        "--output",
        str(output),
        *args,
        cwd=REPO,
        data_dir=tmp_path / "data",
    )
    assert run.returncode == 0, run.stderr + run.stdout
    return json.loads(output.read_text())  # type: ignore[no-any-return]


def test_framework_trace_nests_onnxruntime_nodes_under_every_query(tmp_path: Path) -> None:
    result = _evaluate(tmp_path, "-f", "onnxruntime", "--mode", "performance", "--trace-level", "framework")
    assert result["trace_level"] == "framework"
    trace_path = tmp_path / "trace.json"
    exported = run_cli("trace", "export", result["id"], "-o", str(trace_path), cwd=REPO, data_dir=tmp_path / "data")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(trace_path.read_text())
    validate_chrome_trace(document)  # the structure Perfetto's JSON importer accepts
    spans = [e for e in document["traceEvents"] if e["ph"] == "X"]
    children = defaultdict(list)
    for span in spans:
        children[span["args"]["parent_id"]].append(span)
    model_spans = measured_model_spans([s for s in spans if s["name"] == "predict"], result)
    assert len(model_spans) == result["performance"]["queries"]
    window = profiled_model_spans(model_spans, result)
    # Calls after the declared window (--framework-trace-calls) carry no operator spans, by design.
    assert all(not children[s["args"]["span_id"]] for s in model_spans[len(window) :])
    for parent in window:
        kids = children[parent["args"]["span_id"]]
        assert {k["args"].get("op_type") for k in kids} >= ORT_OPS, kids
        for kid in kids:  # on the timeline, each node lies inside its query
            assert parent["ts"] <= kid["ts"] and kid["ts"] + kid["dur"] <= parent["ts"] + parent["dur"]
    names = {s["name"] for s in spans}
    assert {"evaluation", "artifact_fetch", "model_load", "warmup", "performance_run"} <= names


def test_runs_stay_listable_and_frameworks_run_in_parallel(tmp_path: Path) -> None:
    output = tmp_path / "r.json"
    run = run_cli(
        "evaluate",
        "-m",
        "digits-cnn",
        "-f",
        "onnxruntime,null",
        "--min-duration",
        "0.5s",
        "--output",
        str(output),
        cwd=REPO,
        data_dir=tmp_path / "data",
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(output.read_text())
    results = summary["results"]
    assert {r["framework"]["name"] for r in results} == {"onnxruntime", "null"}
    assert summary["reference_framework"] == "onnxruntime"
    (null_vs_ort,) = summary["agreement"]  # the null predictor answers zeros: uniform probabilities
    assert null_vs_ort["framework"].startswith("null") and null_vs_ort["max_abs_probability_diff"] > 0.5
    assert len({r["environment"]["hostname"] for r in results}) == 1
    listed = run_cli("runs", "list", cwd=REPO, data_dir=tmp_path / "data")
    assert listed.returncode == 0, listed.stderr
    for result in results:
        assert result["id"] in listed.stdout
    assert "2 of 2 runs" in listed.stdout


def test_trace_export_of_an_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    run = run_cli("trace", "export", "no-such-run", "-o", str(tmp_path / "t.json"), cwd=REPO, data_dir=tmp_path / "d")
    assert run.returncode == 1
    assert "answered 404: no run 'no-such-run'" in run.stderr and "mlmodelscope runs list" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "t.json").exists()


def test_batch_size_sweep_reports_throughput_per_batch_and_the_optimal_batch(tmp_path: Path) -> None:
    summary = _evaluate(tmp_path, "-f", "onnxruntime", "--mode", "performance", "--batch-size", "4,1")
    assert [r["requested_settings"]["batch_size"] for r in summary["results"]] == [1, 4]
    (sweep,) = summary["batch_sweeps"]
    points = sweep["points"]
    assert [p["batch_size"] for p in points] == [1, 4]
    for point, result in zip(points, summary["results"], strict=True):
        assert point["samples_per_s"] == result["performance"]["throughput"]["samples_per_s"]
        assert point["run_id"] == result["id"] and result["id"].endswith(f"-b{point['batch_size']}")
    gain = points[1]["samples_per_s"] / points[0]["samples_per_s"] - 1
    assert sweep["optimal_batch_size"] == (1 if gain < 0.05 else 4)
    assert sweep["saturated"] == (gain < 0.05)
    assert summary["agreement"] == []  # one framework: nothing to compare


def test_the_local_collector_ingests_at_a_lower_priority_once_started(tmp_path: Path) -> None:
    """Every thread of a started local collector has COLLECTOR_NICENESS: the agents beside it come first."""
    import psutil

    from mlmodelscope.cli.local import COLLECTOR_NICENESS, CollectorProcess
    from mlmodelscope.cli.nats_server import EmbeddedNatsServer

    with EmbeddedNatsServer(tmp_path / "nats") as server:
        collector = CollectorProcess(f"sqlite:///{tmp_path / 'c.db'}", server.url, tmp_path / "c.log")
        collector.start()  # ready: its lifespan (which lowers the priority) has run
        try:
            assert collector.pid is not None
            threads = psutil.Process(collector.pid).threads()
            assert {psutil.Process(thread.id).nice() for thread in threads} == {COLLECTOR_NICENESS}
        finally:
            collector.stop()
