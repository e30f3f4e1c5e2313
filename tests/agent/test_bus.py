"""The run publisher against a real nats-server with JetStream: delivery, de-duplication, restarts, dead NATS."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import nats
import pytest

from mlmodelscope.agent.bus.publisher import PublishError, PublisherSettings, RunPublisher
from mlmodelscope.cli.nats_server import EmbeddedNatsServer, free_port
from mlmodelscope.core.messages import MSG_ID_HEADER, STREAM_NAME, Progress, decode
from mlmodelscope.core.tracing.spans import Span, TraceLevel

pytestmark = pytest.mark.slow


def _spans(run_id: str, count: int) -> list[Span]:
    return [
        Span(run_id=run_id, span_id=i + 1, name="predict", level=TraceLevel.MODEL, start_ns=i * 10, end_ns=i * 10 + 5)
        for i in range(count)
    ]


def _stored(url: str) -> list[tuple[str, bytes]]:
    """Every message in the stream, as (Nats-Msg-Id, data), read with an ephemeral ordered pull."""

    async def read() -> list[tuple[str, bytes]]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            info = await js.stream_info(STREAM_NAME)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                message = await js.get_msg(STREAM_NAME, seq)
                found.append(((message.headers or {}).get(MSG_ID_HEADER, ""), message.data))
            return found
        finally:
            await client.close()

    return asyncio.run(read())


def test_spans_arrive_once_in_batches_under_the_size_limit(nats_server: EmbeddedNatsServer) -> None:
    publisher = RunPublisher("run-a", PublisherSettings(nats_server.url, batch_size=500))
    publisher.start()
    assert publisher.publish_spans(_spans("run-a", 2_300)) == 5
    publisher.publish(Progress(phase="performance", completed_queries=10, elapsed_s=1.0))
    publisher.close()
    stored = _stored(nats_server.url)
    ids = [msg_id for msg_id, _ in stored]
    assert ids == [f"run-a:spans:{i}" for i in range(5)] + ["run-a:progress:0"]
    spans = [s for _, data in stored[:5] for s in decode(data).payload.spans]  # type: ignore[union-attr]
    assert [s.span_id for s in spans] == list(range(1, 2_301))
    assert all(len(data) < 1024 * 1024 for _, data in stored)


def test_republishing_the_same_message_ids_is_deduplicated(nats_server: EmbeddedNatsServer) -> None:
    for _ in range(2):  # a crashed agent retried from scratch re-sends the same ids
        publisher = RunPublisher("run-b", PublisherSettings(nats_server.url))
        publisher.start()
        publisher.publish_spans(_spans("run-b", 10))
        publisher.close()
    assert [msg_id for msg_id, _ in _stored(nats_server.url)] == ["run-b:spans:0"]


def test_nats_restart_mid_run_loses_nothing(nats_server: EmbeddedNatsServer) -> None:
    publisher = RunPublisher("run-c", PublisherSettings(nats_server.url, batch_size=10, give_up_after_s=30))
    publisher.start()
    spans = _spans("run-c", 400)

    def produce() -> None:
        for start in range(0, 400, 10):
            publisher.publish_spans(spans[start : start + 10])
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.1)
    nats_server.stop()  # graceful restart on the same port and data folder
    time.sleep(0.5)
    nats_server.start()
    producer.join(timeout=30)
    publisher.close()
    stored = _stored(nats_server.url)
    ids = [msg_id for msg_id, _ in stored]
    assert sorted(ids, key=lambda i: int(i.rsplit(":", 1)[1])) == [f"run-c:spans:{i}" for i in range(40)]
    assert len(ids) == len(set(ids))


def test_unreachable_nats_fails_clearly_after_the_bound(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    settings = PublisherSettings(url, max_buffered_messages=3, give_up_after_s=1.0, connect_timeout_s=0.2)
    publisher = RunPublisher("run-d", settings)
    publisher.start()
    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        for _ in range(50):
            publisher.publish(Progress(phase="x", completed_queries=0, elapsed_s=0.0))
        publisher.close()
    assert time.monotonic() - started < 15
    assert url in info.value.message
