"""The JetStream consumer: a durable pull consumer that stores each message, commits, and only then acks.

Delivery is at-least-once end to end: a message is acked only after its ingesting transaction committed, so a
crash between the two means a redelivery, which ingestion recognises by its message id. What happens to each
message:

* stored (inserted or duplicate)  -> ``ack``
* not storable (malformed, too large, invalid, misaddressed, a rewrite of a finished run) -> dead-lettered with
  its reason, then ``term`` (never redelivered)
* database unavailable -> ``nak`` with a delay: redelivered later however long the outage lasts, nothing is lost
* any other error while storing it -> ``nak`` with a delay until the message has been delivered
  ``max_deliveries`` times (JetStream's ``num_delivered``); then it is a poison message: dead-lettered with
  reason ``insert_failed`` and the error, logged once (with its traceback), and ``term``

The bound is the collector's, not the server's: a server-side ``max_deliver`` would also count the
redeliveries of a database outage and, past it, silently stop delivering messages that were never stored. So the
durable consumer keeps ``max_deliver=-1`` (an existing one needs no update).

The stream is created when missing (with a de-duplication window, so a re-published ``Nats-Msg-Id`` is dropped by
the server). Connection problems end the session; the loop reconnects after a delay until ``stop()``. Database
work runs in a worker thread so the API on the same event loop stays responsive. Consumer lag (``num_pending``)
is read from the server every ``lag_refresh_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mlmodelscope.collector.errors import DatabaseUnavailableError
from mlmodelscope.collector.metrics import CollectorMetrics
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.collector.storage.ingest import Ingestor, IngestOutcome, Rejection
from mlmodelscope.collector.storage.message_checks import decode_envelope
from mlmodelscope.core.jetstream import ensure_stream
from mlmodelscope.core.messages import MSG_ID_HEADER, STREAM_NAME, STREAM_SUBJECTS, Envelope

log = logging.getLogger(__name__)

DeliveryResult = IngestOutcome | Rejection | Exception
STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class Delivery:
    """One delivered message as storage sees it: the bytes, where they travelled, and JetStream's counts."""

    data: bytes
    subject: str
    msg_id_header: str | None
    stream_sequence: int | None
    deliveries: int

    @classmethod
    def of(cls, message: Msg) -> Delivery:
        try:
            metadata = message.metadata
            stream_sequence, deliveries = metadata.sequence.stream, metadata.num_delivered
        except Exception:  # not a JetStream message (no metadata in its reply subject)
            stream_sequence, deliveries = None, 1
        header = (message.headers or {}).get(MSG_ID_HEADER)
        return cls(message.data, message.subject, header, stream_sequence, deliveries)


class JetStreamConsumer:
    """Runs as one asyncio task (``start``/``stop``) inside the app's lifespan."""

    def __init__(self, settings: CollectorSettings, ingestor: Ingestor, metrics: CollectorMetrics | None) -> None:
        if settings.nats_url is None:
            raise ValueError("JetStreamConsumer needs settings.nats_url")
        self._url = settings.nats_url
        self._settings = settings
        self._ingestor = ingestor
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: Client | None = None
        self._subscribed = False
        self.delivered = 0  # messages handled since start (any outcome): for tests and logs

    @property
    def connected(self) -> bool:
        """Connected to NATS with the durable consumer bound: what /readyz reports."""
        return self._subscribed and self._client is not None and self._client.is_connected

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="mlmodelscope-collector-consumer")

    async def stop(self) -> None:
        """Let the batch being stored finish, then end (a fetch still waiting for messages ends at once); cancel
        at once when not subscribed (e.g. while waiting for a server). Cancelling is always safe: an unacked
        message is redelivered and de-duplicated."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        grace_s = self._settings.fetch_timeout_s + STOP_GRACE_S if self._subscribed else 0.0
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(
                    "JetStream consumer at %s stopped (%s: %s); reconnecting in %.1f s",
                    self._url,
                    type(e).__name__,
                    e,
                    self._settings.reconnect_delay_s,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.reconnect_delay_s)

    async def _session(self) -> None:
        settings = self._settings
        client = await nats.connect(
            self._url,
            name="mlmodelscope-collector",
            connect_timeout=5,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=settings.reconnect_delay_s,
            error_cb=self._on_error,
            token=settings.nats_token.get_secret_value() if settings.nats_token is not None else None,
        )
        self._client = client
        try:
            js = client.jetstream()
            if await ensure_stream(js, duplicate_window_s=settings.duplicate_window_s):
                log.info("created JetStream stream %s for %s", STREAM_NAME, STREAM_SUBJECTS)
            subscription = await js.pull_subscribe(
                STREAM_SUBJECTS,
                durable=settings.durable_name,
                stream=STREAM_NAME,
                config=ConsumerConfig(
                    durable_name=settings.durable_name,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=settings.ack_wait_s,
                    max_deliver=-1,  # bounded by the collector, for errors that are not an outage (see above)
                ),
            )
            self._subscribed = True
            log.info("consuming %s from %s as durable '%s'", STREAM_SUBJECTS, self._url, settings.durable_name)
            next_lag_refresh = 0.0
            while not self._stopping.is_set():
                if time.monotonic() >= next_lag_refresh:
                    await self._refresh_lag(subscription)
                    next_lag_refresh = time.monotonic() + settings.lag_refresh_s
                messages = await self._fetch_unless_stopping(subscription)
                if messages:
                    await self._handle(messages)
        finally:
            self._subscribed = False
            self._client = None
            with contextlib.suppress(Exception):
                await client.close()

    async def _fetch_unless_stopping(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next batch (empty when none came within the fetch timeout, or when ``stop`` was called while
        waiting: a fetch cut short acks nothing, so whatever it had received is redelivered to the next collector
        and de-duplicated; a batch already fetched is always stored and acked before the loop ends)."""
        settings = self._settings
        fetch = asyncio.ensure_future(subscription.fetch(settings.fetch_batch_size, timeout=settings.fetch_timeout_s))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
        try:
            return list(await fetch)
        except (TimeoutError, asyncio.CancelledError):  # nats' TimeoutError, or asyncio's that nats-py may raise
            if fetch.cancelled() and not self._stopping.is_set():
                raise  # this task itself is being cancelled
            return []

    async def _refresh_lag(self, subscription: JetStreamContext.PullSubscription) -> None:
        if self._metrics is None:
            return
        info = await subscription.consumer_info()
        self._metrics.set_consumer_lag(info.num_pending or 0)

    async def _handle(self, messages: Sequence[Msg]) -> None:
        batch = [Delivery.of(message) for message in messages]
        results = await asyncio.to_thread(self._store_all, batch)
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, IngestOutcome):
                await message.ack()
            elif isinstance(result, Rejection):
                await message.term()
            else:
                await message.nak(delay=self._settings.nak_delay_s)
        self.delivered += len(messages)

    def _store_all(self, batch: Sequence[Delivery]) -> list[DeliveryResult]:
        """Store each message in its own transaction; after the database fails once, the rest are naked too."""
        results: list[DeliveryResult] = []
        for delivery in batch:
            if results and isinstance(results[-1], DatabaseUnavailableError):
                results.append(results[-1])
                continue
            try:
                results.append(
                    self._ingestor.ingest_bytes(
                        delivery.data,
                        subject=delivery.subject,
                        msg_id_header=delivery.msg_id_header,
                        stream_sequence=delivery.stream_sequence,
                        deliveries=delivery.deliveries,
                    )
                )
            except DatabaseUnavailableError as e:
                log.warning("database unavailable, message on '%s' will be redelivered: %s", delivery.subject, e)
                results.append(e)
            except Exception as e:
                results.append(self._failed(delivery, e))
        return results

    def _failed(self, delivery: Delivery, error: Exception) -> DeliveryResult:
        """Storing failed, not because the database is down: redeliver (nak) until ``max_deliveries``, then
        dead-letter it as a poison message (logged once, by the dead-lettering, with the traceback)."""
        max_deliveries = self._settings.max_deliveries
        if delivery.deliveries < max_deliveries:
            log.debug(
                "storing the message on '%s' failed on delivery %d of %d (%s: %s); it will be redelivered",
                delivery.subject,
                delivery.deliveries,
                max_deliveries,
                type(error).__name__,
                error,
            )
            return error
        summary = str(error).strip().splitlines()[0] if str(error).strip() else ""
        detail = f"poison message: storing it failed on each of its {delivery.deliveries} deliveries: "
        detail += f"{type(error).__name__}: {summary}"
        try:
            return self._ingestor.reject(
                "insert_failed",
                detail,
                subject=delivery.subject,
                data=delivery.data,
                envelope=_envelope_or_none(delivery.data),
                stream_sequence=delivery.stream_sequence,
                deliveries=delivery.deliveries,
                error=error,
            )
        except DatabaseUnavailableError as e:
            return e  # recorded on a later delivery, once the database is back
        except Exception:
            log.exception("could not record the dead letter of stream message %s", delivery.stream_sequence)
            return Rejection("insert_failed", detail)  # terminated all the same: never redelivered forever

    async def _on_error(self, error: Exception) -> None:
        log.warning("NATS connection error: %s", error)


def _envelope_or_none(data: bytes) -> Envelope | None:
    """The envelope of a message that decoded once already (for the dead letter's run and message id)."""
    try:
        return decode_envelope(data)
    except Exception:
        return None
