"""Publishing a run's messages to NATS JetStream: batched, de-duplicable, acknowledged, never silently dropped.

The agent's evaluation code is synchronous (LoadGen blocks its thread), so the publisher is a synchronous facade
over an asyncio sender running in its own thread. ``publish`` puts an envelope into a bounded buffer and returns;
the sender publishes each one with its ``Nats-Msg-Id`` header and waits for JetStream's acknowledgement,
retrying with backoff through disconnects (a NATS restart), so a re-sent message is dropped by JetStream's
de-duplication window and by the collector. When NATS stays unreachable for ``give_up_after_s`` the sender
stops, and every later ``publish`` / ``close`` raises ``PublishError`` saying how many messages were not sent:
the run fails loudly instead of losing data quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats

from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.jetstream import ensure_stream
from mlmodelscope.core.messages import (
    MAX_MESSAGE_BYTES,
    MSG_ID_HEADER,
    Envelope,
    Payload,
    QueryBatch,
    QueryRecord,
    SpanBatch,
    encode,
    message_id,
)
from mlmodelscope.core.tracing.spans import Span

_MAX_BACKOFF_S = 1.0


class PublishError(MLModelScopeError):
    """Messages of a run could not be delivered to NATS."""


@dataclass(frozen=True)
class PublisherSettings:
    nats_url: str
    max_buffered_messages: int = 10_000
    ack_timeout_s: float = 5.0
    give_up_after_s: float = 60.0
    connect_timeout_s: float = 2.0
    batch_size: int = 2_000


class RunPublisher:
    """Publishes one run's envelopes in order; see the module docstring for the delivery guarantees."""

    def __init__(self, run_id: str, settings: PublisherSettings) -> None:
        self.run_id = run_id
        self.settings = settings
        self._buffer: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue(settings.max_buffered_messages)
        self._sequences: dict[str, int] = {}
        self._failure: PublishError | None = None
        self._thread = threading.Thread(target=self._run_sender, name=f"publisher-{run_id}", daemon=True)
        self.sent = 0
        self._started = False

    # --- the synchronous side --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._started = True

    def publish(self, payload: Payload) -> Envelope:
        """Queue one message; PublishError if it is over the size limit or NATS has been unreachable too long."""
        envelope, data = self._envelope(payload)
        if len(data) > MAX_MESSAGE_BYTES:
            raise PublishError(
                f"a '{payload.kind}' message of run {self.run_id} is {len(data)} bytes, over the "
                f"{MAX_MESSAGE_BYTES} limit.",
                hint="Publish spans and queries through publish_spans/publish_queries, which split batches.",
            )
        self._enqueue(envelope, data)
        return envelope

    def publish_spans(self, spans: Sequence[Span]) -> int:
        """Publish in batches that each fit one message; returns the number of messages."""
        return self._publish_split(list(spans), lambda chunk: SpanBatch(spans=chunk))

    def publish_queries(self, records: Sequence[QueryRecord]) -> int:
        return self._publish_split(list(records), lambda chunk: QueryBatch(queries=chunk))

    def _publish_split(self, items: list[Any], make: Callable[[list[Any]], Payload]) -> int:
        """Batches of at most ``batch_size`` items, halved until each encodes under the size limit."""
        pending = [items[i : i + self.settings.batch_size] for i in range(0, len(items), self.settings.batch_size)]
        sent = 0
        while pending:
            chunk = pending.pop(0)
            self._raise_if_failed()
            envelope = self._peek_envelope(make(chunk))
            data = encode(envelope)
            if len(data) > MAX_MESSAGE_BYTES and len(chunk) > 1:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
                continue
            if len(data) > MAX_MESSAGE_BYTES:
                raise PublishError(f"one item of run {self.run_id} encodes to {len(data)} bytes, over the limit.")
            self._sequences[envelope.payload.kind] = envelope.sequence + 1
            self._enqueue(envelope, data)
            sent += 1
        return sent

    def _peek_envelope(self, payload: Payload) -> Envelope:
        """The envelope ``payload`` would get next, without consuming its sequence number."""
        sequence = self._sequences.get(payload.kind, 0)
        return Envelope(
            message_id=message_id(self.run_id, payload.kind, sequence),
            run_id=self.run_id,
            sequence=sequence,
            payload=payload,
        )

    def _envelope(self, payload: Payload) -> tuple[Envelope, bytes]:
        self._raise_if_failed()
        envelope = self._peek_envelope(payload)
        self._sequences[payload.kind] = envelope.sequence + 1
        return envelope, encode(envelope)

    def _enqueue(self, envelope: Envelope, data: bytes) -> None:
        try:
            self._buffer.put((envelope.subject, envelope.message_id, data), timeout=self.settings.give_up_after_s)
        except queue.Full as e:
            raise PublishError(
                f"NATS at {self.settings.nats_url} accepted nothing for {self.settings.give_up_after_s:g} s; "
                f"{self._buffer.qsize()} messages of run {self.run_id} are waiting.",
                hint="Check that NATS runs and is reachable; the run's data was not lost silently: it was not sent.",
            ) from e

    def close(self, timeout_s: float | None = None) -> None:
        """Wait until every buffered message is acknowledged; PublishError if that cannot happen."""
        if not self._started:
            return
        wait_s = timeout_s if timeout_s is not None else self.settings.give_up_after_s + self.settings.ack_timeout_s
        deadline = time.monotonic() + wait_s
        while self._thread.is_alive():
            try:
                self._buffer.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        self._raise_if_failed()
        if self._thread.is_alive():
            raise PublishError(
                f"{self._buffer.qsize()} messages were still unsent to NATS at {self.settings.nats_url} "
                f"after {wait_s:g} s.",
                hint="Check that NATS runs with JetStream enabled and is reachable.",
            )

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    # --- the asyncio sender ---------------------------------------------------------------------------------

    def _run_sender(self) -> None:
        try:
            asyncio.run(self._send_all())
        except PublishError as e:
            self._failure = e
        except Exception as e:  # anything else still must not vanish with the thread
            self._failure = PublishError(f"the publisher of run {self.run_id} failed: {e!r}")
            self._failure.__cause__ = e

    async def _connect(self) -> Any:
        deadline = time.monotonic() + self.settings.give_up_after_s
        while True:
            # nats-py's first connect retries forever with max_reconnect_attempts=-1: bound it ourselves.
            left_s = max(deadline - time.monotonic(), 0.05)
            try:
                return await asyncio.wait_for(self._open(), timeout=left_s)
            except Exception as e:
                if time.monotonic() >= deadline:
                    raise PublishError(
                        f"cannot connect to NATS at {self.settings.nats_url} for {self.settings.give_up_after_s:g} s.",
                        hint="Check the NATS URL and that the server runs.",
                    ) from e
                await asyncio.sleep(0.2)

    async def _open(self) -> Any:
        return await nats.connect(
            self.settings.nats_url,
            connect_timeout=self.settings.connect_timeout_s,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            allow_reconnect=True,
            error_cb=_ignore,
            disconnected_cb=_ignore_event,
            reconnected_cb=_ignore_event,
        )

    async def _send_all(self) -> None:
        client = await self._connect()
        try:
            js = client.jetstream()
            await self._retrying(lambda: ensure_stream(js), what="creating the stream")
            loop = asyncio.get_running_loop()
            while True:
                item = await loop.run_in_executor(None, self._buffer.get)
                if item is None:
                    return
                subject, msg_id, data = item
                timeout_s, headers = self.settings.ack_timeout_s, {MSG_ID_HEADER: msg_id}
                await self._retrying(
                    functools.partial(js.publish, subject, data, timeout=timeout_s, headers=headers),
                    what=f"message {msg_id}",
                )
                self.sent += 1
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _retrying(self, attempt: Any, *, what: str) -> Any:
        deadline = time.monotonic() + self.settings.give_up_after_s
        backoff_s = 0.05
        while True:
            try:
                return await attempt()
            except Exception as e:
                if time.monotonic() > deadline:
                    raise PublishError(
                        f"NATS at {self.settings.nats_url} did not acknowledge {what} for "
                        f"{self.settings.give_up_after_s:g} s ({e!r}); {self._buffer.qsize()} more messages unsent.",
                        hint="Check that NATS runs with JetStream enabled and is reachable.",
                    ) from e
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)


async def _ignore(_error: Exception) -> None:
    """nats-py logs connection errors itself through this callback; the sender's retries handle them."""


async def _ignore_event() -> None:
    """Disconnect/reconnect notifications: the sender's retries already cover them."""
