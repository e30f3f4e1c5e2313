"""End to end, with real processes, while things fail: nats-server (JetStream on a data folder), the collector in its
own process on a SQLite file, and the agent (``mlmodelscope agent run --spec``) evaluating digits-cnn with
MODEL-level tracing, so a run publishes tens of thousands of spans and query records.

* the collector is SIGKILLed mid-run (while the agent evaluates, or while it is ingesting the spans) and
  restarted on the same database: every span and query record is stored exactly once and the Prometheus counters
  equal the true counts;
* nats-server is restarted (graceful stop, start on the same port and data folder) while the agent evaluates or
  while it publishes its spans: nothing is lost, nothing is stored twice, the agent exits 0;
* the agent pointed at a closed port gives up after its ``give_up_after_s`` and exits 2 naming the NATS URL.

The truth everything is compared with is what the agent put into the stream (read back from JetStream, each stored
message once), the counts the agent declared in ``run_finished``, and LoadGen's own counts in the result.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.cli.nats_server import EmbeddedNatsServer, free_port
from mlmodelscope.collector.metrics import LATENCY_BUCKETS_NS, LATENCY_BUCKETS_S, REJECT_REASONS
from tests.support.paths import ASSETS
from tests.support.pipeline_processes import (
    AgentProcess,
    CollectorProcess,
    ProcessReaper,
    consumer_idle,
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

AGENT_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 60.0
NATS_DOWN_S = 1.0
MIN_QUERIES = 12_000
RUN_SETTINGS = {"scenario": "single-stream", "mode": "both", "min_duration_s": 2.0, "min_query_count": MIN_QUERIES}


@dataclass
class Pipeline:
    nats: EmbeddedNatsServer
    collector: CollectorProcess
    workdir: Path
    reaper: ProcessReaper

    def start_agent(self, run_id: str, **overrides: Any) -> AgentProcess:
        # A run of a known size, however fast this machine is: LoadGen goes on until MIN_QUERIES as well as 2 s.
        overrides.setdefault("settings", RUN_SETTINGS)
        spec = write_spec(
            self.workdir / "spec.json",
            run_id=run_id,
            nats_url=self.nats.url,
            assets=ASSETS,
            workdir=self.workdir,
            **overrides,
        )
        return AgentProcess.start(spec, self.workdir, self.reaper)

    def run(self, run_id: str) -> dict[str, Any] | None:
        detail: dict[str, Any] | None = self.collector.get_json(f"/api/v1/runs/{run_id}")
        return detail


@pytest.fixture
def pipeline(tmp_path: Path, nats_server: EmbeddedNatsServer, reaper: ProcessReaper) -> Iterator[Pipeline]:
    collector = CollectorProcess(tmp_path / "collector", nats_server.url, reaper)
    collector.start()
    try:
        yield Pipeline(nats_server, collector, tmp_path, reaper)
    finally:
        collector.stop()


# --- waiting and checking --------------------------------------------------------------------------------------


def wait_until_settled(pipeline: Pipeline, run_id: str) -> dict[str, Any]:
    """The run is succeeded and complete, and the durable consumer has nothing left to deliver or to be acked
    (so late redeliveries, which are duplicates, have been handled before anything is counted)."""

    def settled() -> dict[str, Any] | None:
        detail = pipeline.run(run_id)
        if detail is None or detail["status"] != "succeeded" or detail["complete"] is not True:
            return None
        if not consumer_idle(pipeline.nats.url):
            return None
        lag = pipeline.collector.metrics().get(("mlmodelscope_consumer_lag_messages", frozenset()))
        return detail if lag == 0 else None

    def describe() -> str:
        return f"run {run_id} to be stored completely; last seen: {pipeline.run(run_id)}"

    try:
        return wait_for(settled, timeout_s=SETTLE_TIMEOUT_S, what=f"run {run_id}", interval_s=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}: {describe()}") from None


def assert_stored_exactly_once(pipeline: Pipeline, run_id: str, detail: dict[str, Any]) -> None:
    """Stream (what the agent published) == database == API == /metrics, with no duplicates anywhere."""
    stream = read_stream(pipeline.nats.url, run_id)
    finished = stream.run_finished
    assert finished is not None and finished["status"] == "succeeded", finished
    span_count, query_count = finished["span_count"], finished["query_count"]

    # What the agent published: each message once in the stream, and exactly the counts it declared.
    assert len(stream.message_ids) == len(set(stream.message_ids))
    assert stream.kinds["run_started"] == 1 and stream.kinds["run_finished"] == 1, stream.kinds
    assert len(stream.span_ids) == len(set(stream.span_ids)) == span_count
    assert len(stream.query_keys) == len(set(stream.query_keys)) == query_count
    assert query_count >= MIN_QUERIES, f"the run is too small to test anything: {query_count} queries"
    assert span_count > query_count  # one predict span per query, plus the run's own spans

    # LoadGen's own counts agree with the query records: every call of both modes was recorded.
    result = json.loads((pipeline.workdir / "result.json").read_text(encoding="utf-8"))
    performance_queries = sum(1 for mode, _ in stream.query_keys if mode == "performance")
    assert performance_queries == result["performance"]["latency"]["count"]
    assert stream.query_items - performance_queries == result["accuracy"]["count"] == 450  # batch size 1

    # The API.
    assert detail["expected_span_count"] == detail["received_span_count"] == span_count
    assert detail["expected_query_count"] == detail["received_query_count"] == query_count
    # finished_at is the agent's finish time (sent in run_finished), not when the collector ingested it.
    assert finished.get("finished_at") is not None, "the agent sent no finished_at"
    assert datetime.fromisoformat(detail["finished_at"]) == datetime.fromisoformat(finished["finished_at"])

    with open_database(pipeline.collector.db_path) as db:
        assert scalar(db, "PRAGMA integrity_check") == "ok"
        run = db.execute(
            "SELECT status, expected_span_count, expected_query_count, model, framework, arch, accelerator, "
            "scenario, batch_size, accuracy_top1, throughput_samples_per_s FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        assert run[:3] == ("succeeded", span_count, query_count)
        assert scalar(db, "SELECT COUNT(*) FROM runs") == 1

        # Spans: exactly the published ones, each once.
        span_ids = stored_span_ids(db, run_id)
        assert len(span_ids) == len(set(span_ids)) == span_count
        span_rows = len(span_ids)
        assert set(span_ids) == set(stream.span_ids)

        # Query records: exactly the published ones, each once (derived from the columnar MODEL spans).
        queries = stored_queries(db, run_id)
        assert len(queries) == len({(mode, seq) for mode, seq, _, _ in queries}) == query_count
        assert {(mode, seq) for mode, seq, _, _ in queries} == set(stream.query_keys)
        items = sum(count for _, _, count, _ in queries)
        assert items == stream.query_items
        latencies = [latency for mode, _, _, latency in queries if mode == "performance"]
        assert sorted(latencies) == sorted(stream.performance_latencies_ns)

        # Messages: every published message id ingested once, nothing dead-lettered.
        ingested = dict(db.execute("SELECT kind, COUNT(*) FROM ingested_messages GROUP BY kind").fetchall())
        assert ingested == dict(stream.kinds)
        stored_ids = {row[0] for row in db.execute("SELECT message_id FROM ingested_messages")}
        assert stored_ids == set(stream.message_ids)
        assert scalar(db, "SELECT COUNT(*) FROM dead_letters") == 0
        duplicates = db.execute("SELECT value FROM counters WHERE name = 'messages_duplicate'").fetchone()
        duplicates = 0 if duplicates is None else duplicates[0]

    # /metrics equals the true counts (seeded from the database at each start, then advanced per commit).
    samples = pipeline.collector.metrics()

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    labels = dict(
        zip(("model", "framework", "arch", "accelerator", "scenario", "batch_size"), map(str, run[3:9]), strict=True)
    )
    assert value("mlmodelscope_spans_ingested_total") == span_rows
    for kind, count in ingested.items():
        assert value("mlmodelscope_messages_ingested_total", kind=kind) == count, kind
    assert value("mlmodelscope_messages_duplicate_total") == duplicates
    for reason in REJECT_REASONS:
        assert value("mlmodelscope_messages_rejected_total", reason=reason) == 0
        assert value("mlmodelscope_dead_letters_total", reason=reason) == 0
    inference_series = [key for key in samples if key[0] == "mlmodelscope_inferences_total"]
    assert inference_series == [("mlmodelscope_inferences_total", frozenset(labels.items()))]
    assert value("mlmodelscope_inferences_total", **labels) == items
    histogram = "mlmodelscope_inference_latency_seconds"
    assert value(f"{histogram}_count", **labels) == len(latencies) == performance_queries
    assert value(f"{histogram}_bucket", **labels, le="+Inf") == len(latencies)
    for bound_s, bound_ns in zip(LATENCY_BUCKETS_S, LATENCY_BUCKETS_NS, strict=True):
        expected = sum(1 for latency in latencies if latency <= bound_ns)
        assert value(f"{histogram}_bucket", **labels, le=repr(bound_s)) == expected, bound_s
    assert math.isclose(value(f"{histogram}_sum", **labels) or 0.0, sum(latencies) / 1e9, rel_tol=1e-9)
    assert value("mlmodelscope_accuracy_top1_ratio", **labels) == pytest.approx(result["accuracy"]["top1"])
    assert run[9] == pytest.approx(result["accuracy"]["top1"])
    throughput = result["performance"]["throughput"]["samples_per_s"]
    assert value("mlmodelscope_throughput_samples_per_second", **labels) == pytest.approx(throughput)
    assert run[10] == pytest.approx(throughput)
    assert value("mlmodelscope_consumer_lag_messages") == 0


def finish_agent(agent: AgentProcess) -> None:
    code = agent.wait(AGENT_TIMEOUT_S)
    assert code == 0, f"the agent exited with {code}:\n{agent.stderr}"
    assert '"status": "succeeded"' in agent.stderr, agent.stderr


def stored_status(pipeline: Pipeline, run_id: str) -> str | None:
    with open_database(pipeline.collector.db_path) as db:
        row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])


# --- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kill_while", ["evaluating", "ingesting"])
def test_collector_killed_mid_run_stores_everything_exactly_once(pipeline: Pipeline, kill_while: str) -> None:
    """SIGKILL the collector once it has the run's run_started and progress (the agent still evaluating; the
    collector stays dead until the agent has published everything), or once it is part-way through the spans
    (restarted at once, with fetched-but-unacked and committed-but-unacked messages redelivered)."""
    run_id = f"kill-{kill_while}"
    agent = pipeline.start_agent(run_id)

    def kill_point() -> dict[str, Any] | None:
        detail = pipeline.run(run_id)
        if detail is None or detail["status"] == "succeeded":
            return None
        if kill_while == "evaluating":
            progress = detail["progress"]
            return detail if progress and progress["completed_queries"] > 0 else None
        return detail if detail["received_span_count"] > 0 else None

    detail = wait_for(kill_point, timeout_s=AGENT_TIMEOUT_S, what=f"the collector to be {kill_while} {run_id}")
    pipeline.collector.kill()
    # The kill came before run_finished was ingested (read from the database the dead collector left behind).
    assert stored_status(pipeline, run_id) == "running"
    if kill_while == "evaluating":
        assert agent.running, "the agent finished before the collector was killed"
        # The agent streams its spans as it evaluates, so some may already be stored; the rest arrive after the
        # restart, and assert_stored_exactly_once checks that none is lost or doubled.
        finish_agent(agent)  # the agent does not need the collector: it only talks to NATS
        pipeline.collector.start()
    else:
        pipeline.collector.start()
        finish_agent(agent)

    detail = wait_until_settled(pipeline, run_id)
    assert_stored_exactly_once(pipeline, run_id, detail)


@pytest.mark.parametrize("restart_while", ["evaluating", "publishing"])
def test_nats_restarted_mid_run_loses_nothing(pipeline: Pipeline, restart_while: str) -> None:
    """Stop nats-server gracefully and start it again on the same port and data folder, while the agent evaluates
    (publishing progress) or while it publishes its spans: the agent retries, the collector reconnects."""
    run_id = f"nats-{restart_while}"
    url = pipeline.nats.url
    spans_subject = f"mlmodelscope.runs.{run_id}.span_columns"
    progress_subject = f"mlmodelscope.runs.{run_id}.progress"
    agent = pipeline.start_agent(run_id)

    if restart_while == "evaluating":
        wait_for(
            lambda: stream_last_seq(url, subject=progress_subject) > 0,
            timeout_s=AGENT_TIMEOUT_S,
            what="the agent's first progress message",
        )
    else:
        wait_for(
            lambda: stream_last_seq(url, subject=spans_subject) > 0,
            timeout_s=AGENT_TIMEOUT_S,
            what="the agent's first span batch",
        )
    before = stream_last_seq(url, strict=True)
    pipeline.nats.stop()
    assert agent.running, "the agent finished before NATS was stopped"
    time.sleep(NATS_DOWN_S)
    pipeline.nats.start()

    finish_agent(agent)
    # The restart really was in the middle: the agent published more after it.
    assert stream_last_seq(url, strict=True) > before
    # (While evaluating, the streamer may already have published span batches: streaming goes on across the
    # restart, and assert_stored_exactly_once checks none is lost or doubled.)
    detail = wait_until_settled(pipeline, run_id)
    assert pipeline.collector.running
    assert pipeline.collector.starts == 1  # the collector rode out the restart by itself
    assert_stored_exactly_once(pipeline, run_id, detail)


@dataclass(frozen=True)
class UnreachableRun:
    url: str
    give_up_after_s: float
    code: int
    stderr: str
    elapsed_s: float
    exited_at: float  # wall clock, comparable with file times
    output_dir: Path


@pytest.fixture(scope="module")
def unreachable_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnreachableRun]:
    """One agent run against a closed port (bound, then released: nothing listens there), shared by two tests."""
    workdir = tmp_path_factory.mktemp("unreachable")
    url = f"nats://127.0.0.1:{free_port()}"
    give_up_after_s = 1.0
    spec = write_spec(
        workdir / "spec.json",
        run_id="unreachable",
        nats_url=url,
        assets=ASSETS,
        workdir=workdir,
        give_up_after_s=give_up_after_s,
        settings={"scenario": "single-stream", "mode": "performance", "min_duration_s": 1.5},
    )
    reaper = ProcessReaper()
    try:
        agent = AgentProcess.start(spec, workdir, reaper)
        code = agent.wait(timeout_s=60)
        exited_at = time.time()
        elapsed_s = time.monotonic() - agent.started_s
        yield UnreachableRun(url, give_up_after_s, code, agent.stderr, elapsed_s, exited_at, workdir / "out")
    finally:
        reaper.reap()


def test_agent_with_unreachable_nats_exits_2_naming_the_url(unreachable_run: UnreachableRun) -> None:
    run = unreachable_run
    assert run.code == 2, f"exit code {run.code}:\n{run.stderr}"
    assert run.url in run.stderr, run.stderr
    assert "error:" in run.stderr and "NATS" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert run.give_up_after_s <= run.elapsed_s < 30, f"gave up after {run.elapsed_s:.1f} s"


def test_agent_with_unreachable_nats_fails_as_soon_as_the_evaluation_ends(unreachable_run: UnreachableRun) -> None:
    """NATS was unreachable for the whole evaluation (longer than give_up_after_s), so the publisher has given up by
    the time the evaluation ends, and the agent fails at once instead of waiting for acks that cannot come."""
    run = unreachable_run
    assert run.code == 2
    evaluation_ended_at = (run.output_dir / "loadgen-performance" / "mlperf_log_detail.txt").stat().st_mtime
    assert run.exited_at - evaluation_ended_at < run.give_up_after_s + 3.0  # now: + ack_timeout_s (5 s) + ~1 s
    assert f"cannot connect to NATS at {run.url}" in run.stderr, run.stderr
