"""SIGTERM to an agent (a deleted pod, a cancelled Evaluation) in the middle of its LoadGen performance run: it
stops, publishes the run as ``cancelled`` with what its finished phases recorded, and exits by itself, long before
LoadGen would have ended the test. Real processes: nats-server, the collector on SQLite, ``mlmodelscope agent run``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from mlmodelscope.agent.run import EXIT_CANCELLED
from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from tests.support.paths import ASSETS
from tests.support.pipeline_processes import (
    AgentProcess,
    CollectorProcess,
    ProcessReaper,
    open_database,
    read_stream,
    scalar,
    stored_span_ids,
    write_spec,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# Server scenario at a fixed arrival rate: LoadGen's test lasts its minimum duration in real time (and generates
# only rate x duration queries up front), so an agent that waited for LoadGen would take at least this long.
PERFORMANCE_RUN_S = 120.0
TARGET_QPS = 100


def test_sigterm_mid_performance_run_publishes_the_run_cancelled_and_exits(
    tmp_path: Path, reaper: ProcessReaper
) -> None:
    nats = EmbeddedNatsServer(tmp_path / "nats")
    nats.start()
    try:
        collector = CollectorProcess(tmp_path / "collector", nats.url, reaper)
        collector.start()
        spec = write_spec(
            tmp_path / "spec.json",
            run_id="sigterm",
            nats_url=nats.url,
            assets=ASSETS,
            workdir=tmp_path,
            progress_interval_s=0.2,
            settings={
                "scenario": "server",
                "mode": "both",
                "target_qps": TARGET_QPS,
                "min_duration_s": PERFORMANCE_RUN_S,
            },
        )
        agent = AgentProcess.start(spec, tmp_path, reaper)

        def in_performance_run() -> bool:
            detail = collector.get_json("/api/v1/runs/sigterm") or {}
            progress = detail.get("progress") or {}
            return progress.get("phase") == "performance" and (progress.get("completed_queries") or 0) > 0

        wait_for(in_performance_run, timeout_s=120, what="the performance run to be under way", interval_s=0.2)
        agent.process.send_signal(signal.SIGTERM)
        signalled_s = time.monotonic()
        code = agent.wait(timeout_s=PERFORMANCE_RUN_S / 2)  # well before LoadGen's test could end
        took_s = time.monotonic() - signalled_s

        stderr = agent.stderr
        assert code == EXIT_CANCELLED, f"exit code {code} after {took_s:.1f} s:\n{stderr}"
        assert "Traceback" not in stderr, stderr
        assert "cancelled" in stderr and "SIGTERM" in stderr, stderr

        def finished() -> dict[str, object] | None:
            detail = collector.get_json("/api/v1/runs/sigterm")
            return detail if detail is not None and detail.get("complete") else None

        detail = wait_for(finished, timeout_s=60, what="the cancelled run to be stored completely")
        assert detail["status"] == "cancelled", detail
        assert "SIGTERM" in str(detail["error"]) and "performance" in str(detail["error"]), detail
        stream = read_stream(nats.url, "sigterm")
        assert stream.run_finished is not None and stream.run_finished["status"] == "cancelled"
        assert stream.run_finished["result"] is None
        # What it had: the finished phases, the whole accuracy run among them (its queries, one per item).
        accuracy_queries = [key for key in stream.query_keys if key[0] == "accuracy"]
        assert len(accuracy_queries) == 450
        assert stream.run_finished["query_count"] == len(stream.query_keys)
        # The trace of what it had is readable (the phases still open when it stopped are simply absent).
        trace = collector.get_json("/api/v1/runs/sigterm/trace")
        assert trace is not None and any(e.get("name") == "accuracy_run" for e in trace["traceEvents"])
        with open_database(collector.db_path) as db:
            assert scalar(db, "SELECT status FROM runs WHERE run_id = 'sigterm'") == "cancelled"
            spans = len(stored_span_ids(db, "sigterm"))
            assert spans == stream.run_finished["span_count"]
    finally:
        nats.kill()
