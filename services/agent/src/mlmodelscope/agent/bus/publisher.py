"""Publishing a run's messages to NATS JetStream: batched, de-duplicable, acknowledged, never silently dropped.

The agent's evaluation code is synchronous (LoadGen blocks its thread), so the publisher is a synchronous facade
over an asyncio sender running in its own thread. ``publish`` puts an envelope into a bounded buffer and returns;
the sender publishes each one with its ``Nats-Msg-Id`` header and waits for JetStream's acknowledgement,
retrying with backoff through disconnects (a NATS restart), so a re-sent message is dropped by JetStream's
de-duplication window and by the collector. When NATS stays unreachable for ``give_up_after_s`` the sender
stops. With a spool (``UnpublishedSpool``) every message not acknowledged by then, and every one published later,
is written to the run folder instead, and ``close`` raises ``PublishError`` naming the file to import; without one,
every later ``publish`` / ``close`` raises ``PublishError`` saying how many messages were not sent. Either way the
run fails loudly instead of losing data quietly, and a dead NATS is one log line, not a traceback per reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlmodelscope.agent.bus.column_messages import column_messages
from mlmodelscope.agent.bus.connection import quiet_nats_logging
from mlmodelscope.agent.bus.errors import PublishError
from mlmodelscope.agent.bus.first_connect import first_connect
from mlmodelscope.agent.bus.spool import UnpublishedSpool
from mlmodelscope.core.jetstream import ensure_stream
from mlmodelscope.core.messages import (
    MAX_MESSAGE_BYTES,
    MSG_ID_HEADER,
    Envelope,
    Payload,
    QueryBatch,
    QueryMode,
    QueryRecord,
    SpanBatch,
    encode,
    message_id,
)
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.spans import Span

_MAX_BACKOFF_S = 1.0
_BUFFER_POLL_S = 0.1  # the sender's blocking read of the buffer wakes up this often (so the process can exit)


@dataclass(frozen=True)
class PublisherSettings:
    nats_url: str
    max_buffered_messages: int = 10_000
    ack_timeout_s: float = 5.0
    give_up_after_s: float = 60.0
    connect_timeout_s: float = 2.0
    batch_size: int = 2_000
    token: str | None = field(default=None, repr=False)


class RunPublisher:
    """Publishes one run's envelopes in order; see the module docstring for the delivery guarantees."""

    def __init__(self, run_id: str, settings: PublisherSettings, spool: UnpublishedSpool | None = None) -> None:
        self.run_id = run_id
        self.settings = settings
        self.spool = spool
        self._buffer: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue(settings.max_buffered_messages)
        self._sequences: dict[str, int] = {}
        self._failure: PublishError | None = None
        self._lock = threading.Lock()  # the switch to spooling vs. enqueueing: no message falls between them
        self._in_flight: bytes | None = None
        self._thread = threading.Thread(target=self._run_sender, name=f"publisher-{run_id}", daemon=True)
        self.sent = 0
        self._spool_broken = False
        self.buffered_bytes = 0  # encoded bytes queued and not acknowledged yet (the streamer's bound)
        self._started = False

    # --- the synchronous side --------------------------------------------------------------------------------

    def start(self) -> None:
        quiet_nats_logging()
        self._thread.start()
        self._started = True

    @property
    def everything_kept(self) -> bool:
        """Every message queued so far is acknowledged, queued, or in the spool (no spool write failed)."""
        return self._failure is None or (self.spool is not None and not self._spool_broken)

    @property
    def delivering(self) -> bool:
        """False once NATS was given up on (messages then go to the spool, or raise)."""
        return self._failure is None

    def publish(self, payload: Payload) -> Envelope:
        """Queue one message; PublishError if it is over the size limit or NATS has been unreachable too long."""
        envelope, data = self._envelope(payload)
        if len(data) > MAX_MESSAGE_BYTES:
            raise PublishError(
                f"a '{payload.kind}' message of run {self.run_id} is {len(data)} bytes, over the "
                f"{MAX_MESSAGE_BYTES} limit.",
                hint="Publish spans and queries through publish_spans/publish_queries, which split batches.",
            )
        self._enqueue(envelope.subject, envelope.message_id, data)
        return envelope

    def publish_spans(self, spans: Sequence[Span]) -> int:
        """Publish in batches that each fit one message; returns the number of messages."""
        return self.publish_encoded(self.encode_batches(list(spans), lambda chunk: SpanBatch(spans=chunk)))

    def publish_span_columns(self, spans: Sequence[Span], query_parents: Sequence[tuple[int, QueryMode]] = ()) -> int:
        """Publish ``spans`` as columnar ``span_columns`` messages (the MODEL spans under ``query_parents`` are the
        query records: no query message is needed); returns the number of messages."""
        if not spans:
            return 0
        self._raise_if_failed_without_spool()
        columns = SpanColumns.from_spans(spans)
        return self.publish_raw(column_messages(self.run_id, columns, query_parents, self.reserve_sequence))

    def publish_queries(self, records: Sequence[QueryRecord]) -> int:
        return self.publish_encoded(self.encode_batches(list(records), lambda chunk: QueryBatch(queries=chunk)))

    def publish_encoded(self, messages: Sequence[tuple[Envelope, bytes]]) -> int:
        """Queue envelopes encoded before (``encode_batches``, a spill file read back); returns how many."""
        return self.publish_raw([(envelope.subject, envelope.message_id, data) for envelope, data in messages])

    def publish_raw(self, messages: Sequence[tuple[str, str, bytes]]) -> int:
        """Queue (subject, message id, envelope bytes) encoded elsewhere (the span streamer's fast encoder)."""
        for subject, msg_id, data in messages:
            self._raise_if_failed_without_spool()
            self._enqueue(subject, msg_id, data)
        return len(messages)

    def reserve_sequence(self, kind: str) -> int:
        """The next sequence number of ``kind`` (so its message id), taken by a message encoded elsewhere."""
        sequence = self._sequences.get(kind, 0)
        self._sequences[kind] = sequence + 1
        return sequence

    def encode_batches(self, items: list[Any], make: Callable[[list[Any]], Payload]) -> list[tuple[Envelope, bytes]]:
        """Envelopes of at most ``batch_size`` items, halved until each encodes under the size limit; each takes
        the next sequence number of its kind (so its message id), whether it is then queued or spilled.
        One thread per kind: the drainer owns spans and queries while a run goes on."""
        size = self.settings.batch_size
        pending = [items[i : i + size] for i in range(0, len(items), size)]
        encoded = []
        while pending:
            chunk = pending.pop(0)
            envelope = self._peek_envelope(make(chunk))
            data = encode(envelope)
            if len(data) > MAX_MESSAGE_BYTES and len(chunk) > 1:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
                continue
            if len(data) > MAX_MESSAGE_BYTES:
                raise PublishError(f"one item of run {self.run_id} encodes to {len(data)} bytes, over the limit.")
            self._sequences[envelope.payload.kind] = envelope.sequence + 1
            encoded.append((envelope, data))
        return encoded

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
        self._raise_if_failed_without_spool()
        envelope = self._peek_envelope(payload)
        self._sequences[payload.kind] = envelope.sequence + 1
        return envelope, encode(envelope)

    def _enqueue(self, subject: str, msg_id: str, data: bytes) -> None:
        """Into the sender's buffer, or into the spool once NATS was given up on; waits while the buffer is full
        and declares NATS unreachable when nothing was taken from it for ``give_up_after_s``."""
        deadline = time.monotonic() + self.settings.give_up_after_s
        while True:
            with self._lock:
                if self._failure is not None:
                    self._keep(data, self._failure)
                    return
                try:
                    self._buffer.put_nowait((subject, msg_id, data))
                    self.buffered_bytes += len(data)
                    return
                except queue.Full:
                    pass
            if time.monotonic() > deadline:
                self._fail(
                    PublishError(
                        f"NATS at {self.settings.nats_url} accepted nothing for {self.settings.give_up_after_s:g} s; "
                        f"{self._buffer.qsize()} messages of run {self.run_id} are waiting.",
                        hint="Check that NATS runs and is reachable.",
                    )
                )
            else:
                time.sleep(0.01)

    def _fail(self, error: PublishError) -> None:
        """Give NATS up: the first failure wins; the message in flight and every buffered one go to the spool."""
        with self._lock:
            if self._failure is None:
                self._failure = error
            in_flight, self._in_flight = self._in_flight, None
            if in_flight is not None:
                self._keep(in_flight, error)
            while True:
                try:
                    item = self._buffer.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._keep(item[2], error)
            self.buffered_bytes = 0

    def _keep(self, data: bytes, cause: PublishError) -> None:
        """Spool one message (caller holds the lock); without a spool the caller sees ``cause``."""
        if self.spool is None:
            raise cause
        try:
            self.spool.add(data)
        except OSError as e:
            self._spool_broken = True
            raise PublishError(
                f"{cause.message} The unsent messages cannot be kept in {self.spool.path} either: {e.strerror}.",
                hint="Free disk space or fix the run folder's permissions, and check that NATS is reachable.",
            ) from e

    def close(self, timeout_s: float | None = None) -> None:
        """Wait until every buffered message is acknowledged; PublishError if that cannot happen (naming the spool
        file that then holds the unsent messages)."""
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
        if self._thread.is_alive():
            self._fail(
                PublishError(
                    f"{self._buffer.qsize()} messages were still unsent to NATS at {self.settings.nats_url} "
                    f"after {wait_s:g} s.",
                    hint="Check that NATS runs with JetStream enabled and is reachable.",
                )
            )
        else:
            self._fail_if_failed()
        failure = self._failure
        if failure is None:
            return
        if self.spool is None or self.spool.count == 0:
            raise failure
        try:
            self.spool.close()
        except OSError as e:
            self._spool_broken = True
            raise PublishError(f"{failure.message} The spool {self.spool.path} cannot be written: {e}.") from e
        raise PublishError(
            f"{failure.message} The {self.spool.count} unsent messages (the run's result among them) are kept in "
            f"{self.spool.path}.",
            hint=f"Import them once NATS is back: `mlmodelscope runs import {self.spool.directory.parent}`.",
        ) from failure

    def _fail_if_failed(self) -> None:
        """After the sender ended: move whatever is still buffered to the spool if it had failed."""
        if self._failure is not None:
            self._fail(self._failure)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _raise_if_failed_without_spool(self) -> None:
        if self.spool is None:
            self._raise_if_failed()

    # --- the asyncio sender ---------------------------------------------------------------------------------

    def _run_sender(self) -> None:
        try:
            asyncio.run(self._send_all())
        except PublishError as e:
            self._fail_quietly(e)
        except Exception as e:  # anything else still must not vanish with the thread
            failure = PublishError(f"the publisher of run {self.run_id} failed: {e!r}")
            failure.__cause__ = e
            self._fail_quietly(failure)

    def _fail_quietly(self, error: PublishError) -> None:
        """``_fail`` from the sender thread: a spool that cannot be written is reported by ``close``."""
        try:
            self._fail(error)
        except PublishError as e:
            with self._lock:
                self._failure = e

    async def _send_all(self) -> None:
        client = await first_connect(
            self.settings.nats_url,
            self.run_id,
            self.settings.token,
            connect_timeout_s=self.settings.connect_timeout_s,
            give_up_after_s=self.settings.give_up_after_s,
        )
        try:
            js = client.jetstream()
            await self._retrying(lambda: ensure_stream(js), what="creating the stream")
            loop = asyncio.get_running_loop()
            while True:
                # A bounded wait: an executor thread blocked forever on the buffer would keep the process from
                # exiting (the interpreter joins executor threads at exit).
                item = await loop.run_in_executor(None, self._next_item)
                if item is None:
                    return
                if isinstance(item, bool):
                    continue
                subject, msg_id, data = item
                with self._lock:
                    if self._failure is not None:  # given up on while this item was taken: it is spooled here
                        self._keep(data, self._failure)
                        return
                    self._in_flight = data
                timeout_s, headers = self.settings.ack_timeout_s, {MSG_ID_HEADER: msg_id}
                await self._retrying(
                    functools.partial(js.publish, subject, data, timeout=timeout_s, headers=headers),
                    what=f"message {msg_id}",
                )
                with self._lock:
                    self._in_flight = None
                    self.buffered_bytes = max(self.buffered_bytes - len(data), 0)
                self.sent += 1
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    def _next_item(self) -> tuple[str, str, bytes] | bool | None:
        """The next buffered item, None (the end), or False when nothing came within the poll interval."""
        try:
            return self._buffer.get(timeout=_BUFFER_POLL_S)
        except queue.Empty:
            return False

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


# PublishError lives in bus.errors (the batching and the first connect raise it too); its callers catch it from here.
__all__ = ["PublishError", "PublisherSettings", "RunPublisher"]
