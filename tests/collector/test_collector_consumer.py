"""The JetStream consumer against a real nats-server: store then ack, reject bad messages and keep going, nak while
the database is down, and no duplicates across a collector restart."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import nats
import pytest
from sqlalchemy import func, select

from mlmodelscope.cli.nats_server import EmbeddedNatsServer, free_port
from mlmodelscope.collector.consumer import JetStreamConsumer
from mlmodelscope.collector.metrics import CollectorMetrics
from mlmodelscope.collector.storage import schema
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.migrations import migrate
from mlmodelscope.core.messages import MSG_ID_HEADER, STREAM_NAME, Envelope, encode
from tests.support.collector import (
    LABELS,
    RunningApp,
    add_poison_trigger,
    full_run,
    metric_samples,
    running_app,
    sample,
    settings_for,
    span_batch,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def publish(server: EmbeddedNatsServer, envelopes: list[Envelope], *, with_msg_id: bool = True) -> None:
    client = await nats.connect(server.url)
    try:
        js = client.jetstream()
        for envelope in envelopes:
            headers = {MSG_ID_HEADER: envelope.message_id} if with_msg_id else None
            await js.publish(envelope.subject, encode(envelope), headers=headers, stream=STREAM_NAME)
    finally:
        await client.close()


async def publish_raw(server: EmbeddedNatsServer, subject: str, data: bytes) -> None:
    client = await nats.connect(server.url)
    try:
        await client.jetstream().publish(subject, data, stream=STREAM_NAME)
    finally:
        await client.close()


def table_count(running: RunningApp, table: str) -> int:
    with running.runtime.database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(schema.metadata.tables[table])).scalar_one())


async def test_consumer_stores_rejects_and_survives_a_restart(nats_server: EmbeddedNatsServer, sqlite_url: str) -> None:
    settings = settings_for(sqlite_url, nats_url=nats_server.url)
    run_1 = full_run("run-1", spans=5, queries=10)
    run_2 = full_run("run-2", spans=3, queries=4)

    async with running_app(settings) as running:
        await eventually(lambda: _ready(running), what="the consumer to connect")  # creates the stream
        await publish(nats_server, run_1)

        async def run_1_stored() -> bool:
            response = await running.client.get("/api/v1/runs/run-1")
            return response.status_code == 200 and response.json()["status"] == "succeeded"

        await eventually(run_1_stored, what="run-1 to be stored")
        # A malformed and an oversized message, then a good one: both rejected, the good one still consumed.
        await publish_raw(nats_server, "mlmodelscope.runs.bad.spans", b"{not json")
        await publish_raw(nats_server, "mlmodelscope.runs.big.spans", b"x" * 600_000)
        await publish(nats_server, run_2[:2])

        async def run_2_spans() -> bool:
            return table_count(running, "spans") == 8

        await eventually(run_2_spans, what="run-2's spans after the rejected messages")
        samples = metric_samples((await running.client.get("/metrics")).text)
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="malformed") == 1
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="too_large") == 1
        assert table_count(running, "dead_letters") == 2

        async def no_lag() -> bool:
            lag = sample(
                metric_samples((await running.client.get("/metrics")).text), "mlmodelscope_consumer_lag_messages"
            )
            return lag == 0

        await eventually(no_lag, what="consumer lag 0")
        ready = (await running.client.get("/readyz")).json()
        assert ready == {"ready": True, "database": "ok", "nats": "ok"}

    # Restart: a new app on the same database and the same durable consumer. Republish everything: with the
    # Nats-Msg-Id header JetStream drops them (inside its duplicate window); without it they reach the collector,
    # which drops them by message id.
    async with running_app(settings) as restarted:
        await eventually(lambda: _ready(restarted), what="the restarted consumer to connect")
        await publish(nats_server, run_1 + run_2)  # de-duplicated by the server: only run-2's last 3 are new
        await publish(nats_server, run_1 + run_2[:2], with_msg_id=False)  # redelivered copies: 7 duplicates

        async def all_seen() -> bool:
            samples = metric_samples((await restarted.client.get("/metrics")).text)
            return sample(samples, "mlmodelscope_messages_duplicate_total") == 7 and (
                table_count(restarted, "queries") == 14
            )

        await eventually(all_seen, what="the republished messages")
        assert table_count(restarted, "spans") == 8
        assert table_count(restarted, "queries") == 14
        assert table_count(restarted, "ingested_messages") == 10
        assert table_count(restarted, "runs") == 2
        run_2_row = (await restarted.client.get("/api/v1/runs/run-2")).json()
        assert (run_2_row["status"], run_2_row["complete"]) == ("succeeded", True)
        samples = metric_samples((await restarted.client.get("/metrics")).text)
        assert sample(samples, "mlmodelscope_spans_ingested_total") == 8
        assert sample(samples, "mlmodelscope_inferences_total", **LABELS) == 14
        assert sample(samples, "mlmodelscope_inference_latency_seconds_count", **LABELS) == 14
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="malformed") == 1
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="too_large") == 1


async def _ready(running: RunningApp) -> bool:
    return (await running.client.get("/readyz")).status_code == 200


async def test_database_down_naks_and_nothing_is_lost(nats_server: EmbeddedNatsServer, tmp_path: Path) -> None:
    """With the database unreachable the message is not acked (redelivered); a healthy collector later stores it."""
    settings = settings_for(f"sqlite:///{tmp_path / 'c.db'}", nats_url=nats_server.url, durable_name="shared")
    down = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    broken = JetStreamConsumer(settings, Ingestor(down, CollectorMetrics()), CollectorMetrics())
    await broken.start()
    try:
        await eventually(_connected(broken), what="the consumer to connect")
        await publish(nats_server, [span_batch("run-x", range(1, 4))])
        await eventually(_delivered(broken, 2), what="a redelivery after the nak")
    finally:
        await broken.stop()
        down.dispose()

    healthy_db = Database(settings.database_url)
    migrate(healthy_db)
    metrics = CollectorMetrics()
    healthy = JetStreamConsumer(settings, Ingestor(healthy_db, metrics), metrics)
    await healthy.start()
    try:

        async def stored() -> bool:
            return metrics.snapshot().spans_ingested == 3

        await eventually(stored, what="the message to be stored once the database is back")
    finally:
        await healthy.stop()
        healthy_db.dispose()


def _connected(consumer: JetStreamConsumer):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return consumer.connected

    return check


def _delivered(consumer: JetStreamConsumer, at_least: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return consumer.delivered >= at_least

    return check


async def test_consumer_waits_for_nats_and_connects_when_it_comes(tmp_path: Path) -> None:
    """Started before NATS: readiness says not connected (503) and the API works; once a server listens on the
    configured port the consumer connects by itself, creates the stream and consumes."""
    port = free_port()
    settings = settings_for(f"sqlite:///{tmp_path / 'c.db'}", nats_url=f"nats://127.0.0.1:{port}")
    async with running_app(settings) as running:
        response = await running.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["nats"] == "not connected"
        assert (await running.client.get("/api/v1/runs")).status_code == 200
        server = EmbeddedNatsServer(tmp_path / "nats", port=port)
        server.start()
        try:
            await eventually(lambda: _ready(running), what="the consumer to connect to the late server")
            await publish(server, [span_batch("late", range(1, 3))])

            async def stored() -> bool:
                return table_count(running, "spans") == 2

            await eventually(stored, what="the message to be stored")
        finally:
            server.stop()


async def test_a_poison_message_is_dead_lettered_after_bounded_deliveries(
    nats_server: EmbeddedNatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A message whose insert fails is redelivered ``max_deliveries`` times, then dead-lettered once (table, API,
    metric, one log record with the traceback) and terminated; messages behind it are stored; after a restart
    nothing is redelivered and the counter is the same."""
    database_path = tmp_path / "c.db"
    settings = settings_for(f"sqlite:///{database_path}", nats_url=nats_server.url, max_deliveries=3)
    poison = span_batch("poison-run", range(1, 4))
    async with running_app(settings) as running:
        await eventually(lambda: _ready(running), what="the consumer to connect")
        add_poison_trigger(database_path, "poison-run")
        caplog.clear()
        await publish(nats_server, [poison, span_batch("good-run", range(1, 3))])

        async def dead_lettered() -> bool:
            response = await running.client.get("/api/v1/dead-letters")
            return response.status_code == 200 and response.json()["total"] == 1

        await eventually(dead_lettered, what="the poison message to be dead-lettered")
        await eventually(_consumer_idle(nats_server), what="nothing left to deliver or to ack")
        listed = (await running.client.get("/api/v1/dead-letters", params={"reason": "insert_failed"})).json()
        assert listed["total"] == 1
        letter = listed["items"][0]
        assert letter["reason"] == "insert_failed"
        assert letter["message_id"] == poison.message_id
        assert letter["run_id"] == "poison-run"
        assert letter["deliveries"] == 3
        assert "refused for the test" in letter["detail"]
        assert "3 deliveries" in letter["detail"]
        assert table_count(running, "spans") == 2  # the good run's, stored behind the poison message
        samples = metric_samples((await running.client.get("/metrics")).text)
        assert sample(samples, "mlmodelscope_dead_letters_total", reason="insert_failed") == 1
        # Logged once, with the reason and the traceback (earlier failed deliveries log at DEBUG only).
        logged = [r for r in caplog.records if r.levelno >= logging.INFO and "poison-run" in r.getMessage()]
        assert len(logged) == 1
        assert logged[0].levelno == logging.ERROR
        assert "insert_failed" in logged[0].getMessage() and "refused for the test" in logged[0].getMessage()
        assert logged[0].exc_info is not None
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r is not logged[0]]

    caplog.clear()
    async with running_app(settings) as restarted:
        await eventually(lambda: _ready(restarted), what="the restarted consumer to connect")
        await publish(nats_server, [span_batch("after-restart", range(1, 2))])

        async def stored() -> bool:
            return table_count(restarted, "spans") == 3

        await eventually(stored, what="a message after the restart")
        samples = metric_samples((await restarted.client.get("/metrics")).text)
        assert sample(samples, "mlmodelscope_dead_letters_total", reason="insert_failed") == 1
        assert table_count(restarted, "dead_letters") == 1
        assert not [r for r in caplog.records if "poison-run" in r.getMessage()]


def _consumer_idle(server: EmbeddedNatsServer):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        client = await nats.connect(server.url)
        try:
            info = await client.jetstream().consumer_info(STREAM_NAME, "mlmodelscope-collector")
            return info.num_pending == 0 and info.num_ack_pending == 0
        finally:
            await client.close()

    return check


async def test_stopping_an_idle_consumer_does_not_wait_for_its_fetch(
    nats_server: EmbeddedNatsServer, sqlite_url: str
) -> None:
    """A fetch waiting 10 minutes for messages is cut short by stop (it held nothing: nothing is lost); a message
    published afterwards is stored by the next collector."""
    settings = settings_for(sqlite_url, nats_url=nats_server.url, fetch_timeout_s=600.0)
    async with running_app(settings) as running:
        await eventually(lambda: _ready(running), what="the consumer to connect")
        consumer = running.runtime.consumer
        assert consumer is not None
        await asyncio.wait_for(consumer.stop(), timeout=60.0)  # not the fetch's 600 s (nor its 602 s of grace)
    await publish(nats_server, full_run("run-after", spans=2, queries=3))
    async with running_app(settings_for(sqlite_url, nats_url=nats_server.url)) as restarted:

        async def stored() -> bool:
            response = await restarted.client.get("/api/v1/runs/run-after")
            return response.status_code == 200 and response.json()["status"] == "succeeded"

        await eventually(stored, what="the run published after the stop")
