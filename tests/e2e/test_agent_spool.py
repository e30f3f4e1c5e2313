"""NATS that dies for good: the agent keeps everything it could not publish in its run folder, ``mlmodelscope runs
import`` stores it exactly once (however often it runs), and a dead NATS is a line, not a stream of tracebacks.

Real processes throughout: nats-server (killed with SIGKILL, never restarted), the collector on SQLite, the agent
(``mlmodelscope agent run``) and the CLI. The truth is what the agent kept (the spool file) and the counts it
declared in ``run_finished``; the collector's database must hold exactly that.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlmodelscope.agent.bus.publisher import PublishError, PublisherSettings, RunPublisher
from mlmodelscope.agent.bus.spool import UnpublishedSpool, read_spool
from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from mlmodelscope.core.messages import Envelope, RunFinished, SpanBatch, decode
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support.cli import clean_environment, run_cli
from tests.support.paths import ASSETS
from tests.support.pipeline_processes import (
    AgentProcess,
    CollectorProcess,
    ProcessReaper,
    open_database,
    read_stream,
    scalar,
    stored_queries,
    stored_span_ids,
    stream_last_seq,
    write_spec,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _spans(run_id: str, first: int, count: int) -> list[Span]:
    return [
        Span(run_id=run_id, span_id=i, name="predict", level=TraceLevel.MODEL, start_ns=i * 10, end_ns=i * 10 + 5)
        for i in range(first, first + count)
    ]


def _spooled(path: Path) -> list[Envelope]:
    return [decode(data) for _, data in read_spool(path)]


def test_the_publisher_keeps_every_unacknowledged_message_once_nats_is_gone(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    spool = UnpublishedSpool(tmp_path / "run" / "unpublished", "run-s")
    settings = PublisherSettings(nats_server.url, batch_size=10, give_up_after_s=1.0, connect_timeout_s=0.2)
    publisher = RunPublisher("run-s", settings, spool)
    publisher.start()
    publisher.publish_spans(_spans("run-s", 1, 100))  # 10 messages
    wait_for(lambda: stream_last_seq(nats_server.url) == 10, timeout_s=20, what="10 messages in the stream")
    delivered = set(read_stream(nats_server.url, "run-s").message_ids)
    nats_server.kill()

    publisher.publish_spans(_spans("run-s", 101, 100))  # 10 more, never delivered
    publisher.publish(RunFinished(status="succeeded", span_count=200, query_count=0))
    with pytest.raises(PublishError) as raised:
        publisher.close()

    message = str(raised.value)
    assert str(spool.path) in message and "mlmodelscope runs import" in message, message
    assert f"cannot connect to NATS at {nats_server.url}" not in message  # it was connected, then lost
    kept = _spooled(spool.path)
    kept_ids = [envelope.message_id for envelope in kept]
    everything = {f"run-s:spans:{i}" for i in range(20)} | {"run-s:run_finished:0"}
    assert len(kept_ids) == len(set(kept_ids)), "a message was kept twice"
    assert set(kept_ids) | delivered == everything  # nothing lost
    assert {f"run-s:spans:{i}" for i in range(10, 20)} | {"run-s:run_finished:0"} <= set(kept_ids)
    kept_spans = {s.span_id for e in kept if isinstance(e.payload, SpanBatch) for s in e.payload.spans}
    assert set(range(101, 201)) <= kept_spans


def test_an_agent_whose_nats_dies_for_good_keeps_the_run_and_import_stores_it_exactly_once(
    tmp_path: Path, nats_server: EmbeddedNatsServer, reaper: ProcessReaper
) -> None:
    collector = CollectorProcess(tmp_path / "collector", nats_server.url, reaper)
    collector.start()
    run_dir = tmp_path / "data" / "runs" / "spooled"
    run_dir.mkdir(parents=True)
    spec = write_spec(
        run_dir / "spec.json",
        run_id="spooled",
        nats_url=nats_server.url,
        assets=ASSETS,
        workdir=tmp_path,
        give_up_after_s=1.0,
        settings={"scenario": "single-stream", "mode": "both", "min_duration_s": 3.0},
    )
    agent = AgentProcess.start(spec, tmp_path, reaper)
    # Mid-run: the collector has stored the run's start, the agent is still evaluating.
    wait_for(
        lambda: (collector.get_json("/api/v1/runs/spooled") or {}).get("status") == "running",
        timeout_s=60,
        what="the collector to store run_started",
    )
    assert agent.running
    nats_server.kill()  # for good
    code = agent.wait(timeout_s=120)

    stderr = agent.stderr
    assert code == 2, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr and "nats: encountered error" not in stderr, stderr
    spool_file = run_dir / "unpublished" / "spooled.jsonl"
    assert str(spool_file) in stderr and "mlmodelscope runs import" in stderr, stderr
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 3, stderr  # a line or two, no flood
    kept = _spooled(spool_file)
    (finished,) = [e.payload for e in kept if isinstance(e.payload, RunFinished)]
    assert finished.status == "succeeded" and finished.result is not None and finished.result.performance is not None
    assert finished.result.performance.latency.count > 0
    assert finished.span_count > 0 and finished.query_count > 0
    collector.stop()

    database_url = f"sqlite:///{collector.db_path}"
    first = run_cli("runs", "import", str(tmp_path / "data"), "--database-url", database_url, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    second = run_cli("runs", "import", str(run_dir), "--database-url", database_url, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 message(s) stored" in second.stdout and f"{len(kept)} already stored" in second.stdout, second.stdout

    with open_database(collector.db_path) as db:
        status, spans, queries = db.execute(
            "SELECT status, expected_span_count, expected_query_count FROM runs WHERE run_id = 'spooled'"
        ).fetchone()
        assert (status, spans, queries) == ("succeeded", finished.span_count, finished.query_count)
        span_ids = stored_span_ids(db, "spooled")
        assert len(span_ids) == len(set(span_ids)) == finished.span_count
        assert len(stored_queries(db, "spooled")) == finished.query_count
        stored_ids = [row[0] for row in db.execute("SELECT message_id FROM ingested_messages")]
        assert len(stored_ids) == len(set(stored_ids))
        assert {e.message_id for e in kept} <= set(stored_ids)
        assert scalar(db, "SELECT COUNT(*) FROM dead_letters") == 0


def test_the_cli_progress_subscriber_prints_no_traceback_when_nats_dies(
    tmp_path: Path, nats_server: EmbeddedNatsServer
) -> None:
    """nats-py's default error callback logs a traceback per failed reconnect (59-310 per kill, before)."""
    script = (
        "import sys, time\n"
        "from mlmodelscope.cli.local import BusProgress\n"
        "bus = BusProgress()\n"
        "thread = bus.follow(sys.argv[1])\n"
        "time.sleep(1.0)\n"
        "print('listening', flush=True)\n"
        "sys.stdin.readline()\n"  # NATS is killed now
        "time.sleep(3.0)\n"
        "bus.stop()\n"
        "thread.join(5)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, nats_server.url],
        env=clean_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "listening"
        nats_server.kill()
        time.sleep(0.2)
        process.stdin.write("go\n")
        process.stdin.flush()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "nats: encountered error" not in stderr, stderr
    assert len(stderr.splitlines()) <= 1, stderr


def test_import_names_each_line_it_cannot_store_and_keeps_the_rest(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from mlmodelscope.core.messages import RunStarted, encode, message_id

    started = RunStarted(
        evaluation_id="e",
        model="m",
        framework="f",
        dataset="d",
        scenario="single-stream",
        mode="performance",
        batch_size=1,
        arch="amd64",
        accelerator="cpu",
        trace_level="model",
        epoch_offset_ns=0,
        started_at=datetime.now(UTC),
    )
    envelope = Envelope(message_id=message_id("hand", "run_started", 0), run_id="hand", sequence=0, payload=started)
    spool = tmp_path / "runs" / "hand" / "unpublished" / "hand.jsonl"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(encode(envelope) + b"\n" + b'{"schema_version": 1, "run_id": "hand"}\n')
    database_url = f"sqlite:///{tmp_path / 'c.db'}"

    run = run_cli("runs", "import", str(tmp_path / "runs"), "--database-url", database_url, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 message(s) stored" in run.stdout and "1 rejected" in run.stdout, run.stdout
    assert f"{spool}:2: malformed" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr
    with open_database(tmp_path / "c.db") as db:
        assert scalar(db, "SELECT status FROM runs WHERE run_id = 'hand'") == "running"

    missing = run_cli("runs", "import", str(tmp_path / "nowhere"), "--database-url", database_url, cwd=tmp_path)
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr, missing.stderr
