"""Reading an evaluation's exported MODEL spans the way its result says to: which LoadGen test they belong to and
which of them the framework profiler covered. Shared by the tests of every framework's traced evaluation."""

from __future__ import annotations

from typing import Any


def repeated_test_spans(result: dict[str, Any]) -> int:
    """MODEL spans of a first LoadGen test that ran out of queries and was repeated, streamed before the repeat:
    they stay in the trace, before the repeated test's spans (0 when the test was not repeated)."""
    schedule = result["performance"].get("schedule") or {}
    return int(schedule.get("discarded_streamed_spans", 0))


def measured_model_spans(model_spans: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The exported MODEL spans of the performance test the result measured, in time order."""
    ordered = sorted(model_spans, key=lambda s: s["ts"])
    return ordered[repeated_test_spans(result) :]


def profiled_model_spans(model_spans: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured MODEL spans (``measured_model_spans``) that have operator spans: the first ``profiled_calls``.

    The framework trace is complete, except after a repeated LoadGen test: the profiler cannot be restarted
    (ONNX Runtime ends profiling for good), so the first test's calls used part of the window and the trace says
    so (partial, or failed when they used all of it)."""
    trace = result["framework_trace"]
    if repeated_test_spans(result) or (result["performance"].get("schedule") or {}).get("discarded_test_queries"):
        assert trace["status"] in ("complete", "partial", "failed"), trace
        assert trace["status"] == "complete" or "repeated" in (trace["reason"] or ""), trace
    else:
        assert trace["status"] == "complete", trace
        assert trace["profiled_calls"] == min(trace["window_calls"], len(model_spans)) > 0, trace
    return model_spans[: trace["profiled_calls"]]
