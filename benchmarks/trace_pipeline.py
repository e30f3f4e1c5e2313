"""How many spans per second go from an agent's publisher into the collector's database, losslessly?

Side by side, in one process run (the machine is shared and noisy, so only ratios within one run are meaningful),
on a fresh embedded ``nats-server -js`` per measurement (JetStream file storage in a temporary folder):

  ours  N MODEL ``predict`` spans of one run (built by ``Tracer.materialize_model_spans``, as the agent does),
        published as the span streamer publishes a LoadGen test's calls: their rows (first_item, item_count,
        start, end) encoded by ``streaming.encode_take`` into columnar ``span_columns`` messages and queued with
        ``RunPublisher.publish_raw``, after a ``RunStarted``; consumed by the real collector
        (``open_runtime`` + ``JetStreamConsumer``, default settings) into a temporary SQLite file;
  bare  the same encoded message bytes, subjects and ``Nats-Msg-Id`` headers, published with nats-py's JetStream
        ``publish`` (awaiting each ack, as our publisher does) and consumed by a bare pull subscriber (same
        stream, consumer and fetch batch settings) that only acks.

Each consumer runs in its own process, as the collector does in a deployment; the publisher runs here. Time is
measured from the first publish to the moment the last span is committed (ours: the collector's
``spans_ingested`` counter, which advances after each commit, watched every 5 ms) or acked (bare); the consumer
process's CPU time over the same interval is printed too. Afterwards ours is checked lossless: the span_batches
rows decode to exactly the N spans, each with its published content, no duplicate, nothing rejected.

Then a stage breakdown on a subset of the same spans, one thread, messages handled one at a time: the
publisher's encode (here, beside all the run's spans, as in the agent), and in a fresh process (a collector-sized
heap) the collector's decode (pydantic), its storability check (base64 + zlib + the span rules on arrays) and its
ingest transaction (SQLAlchemy + SQLite, one row per message), next to floors measured on the same messages
(``json.loads``; base64 + zlib of the columns), to show where the collector's time per span goes.

Target: ours >= 500,000 spans/s, median of the rounds. Exit code 1 when a check fails or the target is missed.
Usage: ``python benchmarks/trace_pipeline.py [--spans N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import multiprocessing
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

from mlmodelscope.agent.bus.column_messages import SPANS_PER_COLUMN_MESSAGE, column_messages
from mlmodelscope.agent.bus.publisher import PublisherSettings, RunPublisher
from mlmodelscope.agent.streaming import encode_take
from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from mlmodelscope.collector.consumer import JetStreamConsumer
from mlmodelscope.collector.metrics import CollectorMetrics
from mlmodelscope.collector.runtime import open_runtime
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.collector.storage.aggregates import DUPLICATE_COUNTER
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.message_checks import check_storable
from mlmodelscope.collector.storage.migrations import migrate
from mlmodelscope.core.messages import (
    MAX_MESSAGE_BYTES,
    MSG_ID_HEADER,
    STREAM_NAME,
    STREAM_SUBJECTS,
    QueryMode,
    RunStarted,
    decode,
)
from mlmodelscope.core.span_blob import decode_columns
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import ModelTake, Tracer

RUN_ID = "bench-pipeline"
TARGET_SPANS_PER_S = 500_000
WATCH_S = 0.005  # how often the collector process looks at its committed-spans counter
POLL_S = 0.002
DEFAULTS = CollectorSettings()  # the bare side copies the collector's consumer settings from here

Message = tuple[str, str, bytes]  # (subject, Nats-Msg-Id, data)


# --- the data -------------------------------------------------------------------------------------------------


def make_spans(count: int, seed: int = 0) -> list[Span]:
    """``count`` MODEL predict spans of one SingleStream run, made the way the agent makes them."""
    rng = random.Random(seed)
    tracer = Tracer(RUN_ID, TraceLevel.MODEL)
    run_span_id = tracer.new_span_id()  # the performance_run phase span they hang under
    now_ns = time.perf_counter_ns()
    for _ in range(count):
        latency_ns = 4_000_000 + rng.randrange(-300_000, 300_000)
        tracer.model_rows.append((rng.randrange(1024), 1, now_ns, now_ns + latency_ns))
        now_ns += latency_ns + rng.randrange(3_000, 30_000)
    return tracer.materialize_model_spans(parent_id=run_span_id)


def span_messages(spans: list[Span], batch_size: int) -> list[Message]:
    """The ``span_columns`` messages the agent sends for these spans (first one: sequence 0)."""
    sequences = iter(range(len(spans) + 1))
    messages = column_messages(
        RUN_ID, SpanColumns.from_spans(spans), query_parents(spans), lambda _kind: next(sequences), batch_size
    )
    too_large = [len(data) for _, _, data in messages if len(data) > MAX_MESSAGE_BYTES]
    if too_large:
        raise SystemExit(f"batches over the {MAX_MESSAGE_BYTES}-byte limit ({too_large}): lower --batch-size")
    return messages


def query_parents(spans: list[Span]) -> list[tuple[int, QueryMode]]:
    return [(spans[0].parent_id, "performance")] if spans else []


def run_started() -> RunStarted:
    return RunStarted(
        evaluation_id="bench",
        model="bench-cnn",
        framework="onnxruntime",
        dataset="bench",
        scenario="single-stream",
        mode="performance",
        batch_size=1,
        arch="x86_64",
        accelerator="cpu",
        trace_level="model",
        epoch_offset_ns=time.time_ns() - time.perf_counter_ns(),
        started_at=datetime.now(UTC),
    )


# --- the consumer processes (spawned; they report the monotonic time of the last commit / ack) ----------------


def collector_process(
    database_url: str, nats_url: str, spans: int, ready: Event, stop: Event, done_at: Any, cpu_s: Any
) -> None:
    asyncio.run(_collector(database_url, nats_url, spans, ready, stop, done_at, cpu_s))


async def _collector(
    database_url: str, nats_url: str, spans: int, ready: Event, stop: Event, done_at: Any, cpu_s: Any
) -> None:
    settings = CollectorSettings(database_url=database_url, nats_url=nats_url)
    runtime = await asyncio.to_thread(open_runtime, settings)
    consumer = JetStreamConsumer(settings, runtime.ingestor, runtime.metrics)
    await consumer.start()
    try:
        while not consumer.connected:
            await asyncio.sleep(0.01)
        ready.set()
        cpu_start = time.process_time()
        while not stop.is_set():
            if runtime.metrics.snapshot().spans_ingested >= spans:
                done_at.value = time.monotonic()
                cpu_s.value = time.process_time() - cpu_start
                break
            await asyncio.sleep(WATCH_S)
        while not stop.is_set():
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        runtime.database.dispose()


def bare_process(nats_url: str, messages: int, ready: Event, stop: Event, done_at: Any, cpu_s: Any) -> None:
    asyncio.run(_bare_consumer(nats_url, messages, ready, stop, done_at, cpu_s))


async def _bare_consumer(nats_url: str, messages: int, ready: Event, stop: Event, done_at: Any, cpu_s: Any) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await js.add_stream(
            StreamConfig(
                name=STREAM_NAME,
                subjects=[STREAM_SUBJECTS],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=DEFAULTS.duplicate_window_s,
            )
        )
        subscription = await js.pull_subscribe(
            STREAM_SUBJECTS,
            durable="bare",
            stream=STREAM_NAME,
            config=ConsumerConfig(
                durable_name="bare",
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=DEFAULTS.ack_wait_s,
                max_deliver=-1,
            ),
        )
        ready.set()
        cpu_start = time.process_time()
        acked = 0
        while acked < messages and not stop.is_set():
            try:
                batch = await subscription.fetch(DEFAULTS.fetch_batch_size, timeout=DEFAULTS.fetch_timeout_s)
            except NatsTimeoutError:
                continue
            for message in batch:
                await message.ack()
            acked += len(batch)
        if acked >= messages:
            done_at.value = time.monotonic()
            cpu_s.value = time.process_time() - cpu_start
        while not stop.is_set():
            await asyncio.sleep(0.05)
    finally:
        await client.close()


# --- the measurements -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    total_s: float  # first publish -> last span committed (ours) / acked by the consumer (bare)
    published_s: float  # first publish -> last publish acknowledged by JetStream
    encoded_s: float | None  # ours: first publish -> publish_spans returned (all batches encoded and queued)
    consumer_cpu_s: float  # CPU time of the consumer process meanwhile
    lossless: str  # "" when every check passed, else what failed


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = POLL_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


class ConsumerProcess:
    """A spawned consumer process; ``done_at`` is the monotonic time it reported (0.0 until then)."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop = context.Event(), context.Event()
        self._done_at, self._cpu_s = context.Value("d", 0.0), context.Value("d", 0.0)
        self.process = context.Process(
            target=target,
            args=(*args, self.ready, self.stop, self._done_at, self._cpu_s),
            name="bench-consumer",
            daemon=True,
        )

    @property
    def done_at(self) -> float:
        """Monotonic time of the last commit / ack (0.0 until then)."""
        return float(self._done_at.value)

    @property
    def cpu_s(self) -> float:
        """CPU seconds (all threads) the consumer process used from subscribing to ``done_at``."""
        return float(self._cpu_s.value)

    def __enter__(self) -> ConsumerProcess:
        self.process.start()
        if not self.ready.wait(60):
            self.__exit__()
            raise TimeoutError("the consumer process did not subscribe within 60 s")
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.process.join(timeout=15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def model_take(spans: list[Span]) -> ModelTake:
    """The streamer's take of these spans' rows (what the SUT appended), built before the clock starts."""
    rows = [(int(s.attributes["first_item"]), int(s.attributes["item_count"]), s.start_ns, s.end_ns) for s in spans]
    return ModelTake("performance", spans[0].parent_id, 0, [s.span_id for s in spans], rows)


def measure_ours(folder: Path, spans: list[Span], messages: int, batch_size: int, timeout_s: float) -> Measurement:
    db_path = folder / "collector.db"
    take = model_take(spans)
    with (
        EmbeddedNatsServer(folder / "nats") as server,
        ConsumerProcess(collector_process, f"sqlite:///{db_path}", server.url, len(spans)) as consumer,
    ):
        publisher = RunPublisher(RUN_ID, PublisherSettings(server.url, batch_size=batch_size))
        publisher.start()
        try:
            # Connected, stream there, the run row stored: only the spans are left to time.
            publisher.publish(run_started())
            wait_until(lambda: publisher.sent >= 1, 30, "the RunStarted ack")
            wait_until(lambda: _run_stored(db_path), 30, "the RunStarted to be stored", poll_s=0.01)
            start = time.monotonic()
            sent = publisher.publish_raw(encode_take(RUN_ID, take, publisher, batch_size))
            encoded_s = time.monotonic() - start
            wait_until(lambda: publisher.sent >= 1 + sent, timeout_s, "JetStream's acks")
            published_s = time.monotonic() - start
        finally:
            publisher.close()
        wait_until(lambda: consumer.done_at > 0, timeout_s, "the collector to commit every span", poll_s=0.01)
        total_s, cpu_s = consumer.done_at - start, consumer.cpu_s
    problems = check_lossless(db_path, spans, sent)
    if sent != messages:
        problems = f"the publisher sent {sent} span messages, the bare side {messages}. {problems}"
    return Measurement(total_s, published_s, encoded_s, cpu_s, problems)


def measure_bare(folder: Path, messages: list[Message], timeout_s: float) -> Measurement:
    with (
        EmbeddedNatsServer(folder / "nats") as server,
        ConsumerProcess(bare_process, server.url, len(messages)) as consumer,
    ):
        start, published_s = asyncio.run(_bare_publish(server.url, messages))
        wait_until(lambda: consumer.done_at > 0, timeout_s, "the bare consumer to ack every message", poll_s=0.01)
        return Measurement(consumer.done_at - start, published_s, None, consumer.cpu_s, "")


async def _bare_publish(nats_url: str, messages: list[Message]) -> tuple[float, float]:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        start = time.monotonic()
        for subject, msg_id, data in messages:
            await js.publish(subject, data, timeout=5.0, headers={MSG_ID_HEADER: msg_id})
        return start, time.monotonic() - start
    finally:
        await client.close()


def _run_stored(db_path: Path) -> bool:
    with contextlib.closing(_read_only(db_path)) as connection:
        return connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (RUN_ID,)).fetchone() is not None


def _read_only(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)


def check_lossless(db_path: Path, spans: list[Span], span_messages: int) -> str:
    """'' when the database holds exactly these spans, each once and as published; else what is wrong."""
    problems = []
    with contextlib.closing(_read_only(db_path)) as connection:
        blobs = [row[0] for row in connection.execute("SELECT columns FROM span_batches WHERE run_id = ?", (RUN_ID,))]
        row_spans = connection.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        messages = connection.execute("SELECT kind, COUNT(*) FROM ingested_messages GROUP BY kind").fetchall()
        rejected = connection.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        duplicate = connection.execute(
            "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = ?", (DUPLICATE_COUNTER,)
        ).fetchone()[0]
    stored_spans = [span for blob in blobs for span in decode_columns(bytes(blob)).spans(RUN_ID)]
    expected = {s.span_id: s.model_dump() for s in spans}
    stored = {s.span_id: s.model_dump() for s in stored_spans}
    if len(stored_spans) != len(spans) or len(stored) != len(spans) or row_spans:
        problems.append(
            f"{len(stored_spans)} spans stored ({len(stored)} distinct ids, {row_spans} row-wise) for {len(spans)}"
        )
    missing = expected.keys() - stored.keys()
    differing = sum(1 for span_id, values in stored.items() if expected.get(span_id) != values)
    if missing or differing:
        problems.append(f"{len(missing)} spans missing, {differing} stored spans differ from what was published")
    if dict(messages) != {"run_started": 1, "span_columns": span_messages}:
        problems.append(f"ingested messages {dict(messages)}, expected 1 run_started and {span_messages} span_columns")
    if rejected or duplicate:
        problems.append(f"{rejected} messages rejected, {duplicate} duplicates counted")
    return "; ".join(problems)


# --- the stage breakdown --------------------------------------------------------------------------------------

STAGES = {
    "encode": "agent: streaming.encode_take of the rows (numpy columns + base64 envelope)",
    "decode": "collector: Envelope validate_json (pydantic, one base64 string)",
    "check": "collector: check_storable (base64 + zlib + span rules on arrays)",
    "ingest": "collector: Ingestor.ingest, one transaction, one row (SQLAlchemy + SQLite)",
    "json.loads": "floor: json.loads of the same bytes",
    "unpack": "floor: base64 + zlib.decompress of the columns",
}
COLLECTOR_STAGES = ("decode", "check", "ingest")


def encode_seconds(spans: list[Span], batch_size: int) -> float:
    """The agent's side, here (its heap holds the whole run's spans, as this one does): the streamer's encode."""
    take = model_take(spans)
    publisher = RunPublisher(RUN_ID, PublisherSettings("nats://unused"))  # only its sequence numbers are used
    start = time.perf_counter()
    encode_take(RUN_ID, take, publisher, batch_size)
    return time.perf_counter() - start


def collector_stages(folder: str, messages: list[bytes]) -> dict[str, float]:
    """The collector's side, in a fresh process (a collector-sized heap: the cyclic GC's cost depends on it).

    Messages are handled one at a time, in one thread, as ``JetStreamConsumer._store_all`` does; returns the
    seconds each stage took over all of them.
    """
    times = dict.fromkeys(list(STAGES)[1:], 0.0)  # all but "encode"
    database = Database(f"sqlite:///{Path(folder) / 'stages.db'}")
    migrate(database)
    ingestor = Ingestor(database, CollectorMetrics())
    clock = time.perf_counter
    try:
        for data in messages:
            t0 = clock()
            envelope = decode(data)
            t1 = clock()
            check_storable(envelope)
            t2 = clock()
            ingestor.ingest(envelope, checked=True)
            t3 = clock()
            document = json.loads(data)
            t4 = clock()
            zlib.decompress(base64.b64decode(document["payload"]["columns"]))
            t5 = clock()
            for stage, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                times[stage] += seconds
    finally:
        database.dispose()
    return times


def stage_breakdown(folder: Path, spans: list[Span], messages: list[Message]) -> dict[str, float]:
    """Seconds per span of each stage."""
    batch_size = len(spans) // len(messages) if len(messages) > 1 else len(spans)
    seconds = {"encode": encode_seconds(spans, batch_size)}
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        seconds |= pool.apply(collector_stages, (str(folder), [data for _, _, data in messages]))
    return {stage: value / len(spans) for stage, value in seconds.items() if stage in STAGES}


def print_stages(per_span: dict[str, float], count: int) -> None:
    collector = sum(per_span[stage] for stage in COLLECTOR_STAGES)
    print(f"\nstage breakdown, one thread, {count} spans (us per span; spans/s if it were the only stage):")
    for stage, label in STAGES.items():
        seconds = per_span[stage]
        share = f"  {seconds / collector:4.0%} of the collector" if stage in COLLECTOR_STAGES else ""
        print(f"  {label:<74} {seconds * 1e6:6.3f} us  {1 / seconds:>12,.0f}/s{share}")
    label = "collector (decode + check + ingest, = ingest_bytes)"
    print(f"  {label:<74} {collector * 1e6:6.3f} us  {1 / collector:>12,.0f}/s")


# --- main -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=1_000_000, help="Spans per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; the median ratio is reported.")
    parser.add_argument(
        "--batch-size", type=int, default=SPANS_PER_COLUMN_MESSAGE, help="Spans per message (the agent's)."
    )
    parser.add_argument("--stage-spans", type=int, default=40_000, help="Spans in the stage breakdown (0: skip).")
    args = parser.parse_args(argv)

    spans = make_spans(args.spans)
    messages = span_messages(spans, args.batch_size)
    sizes = [len(data) for _, _, data in messages]
    print(
        f"{len(spans)} spans of one run in {len(messages)} messages of {args.batch_size} spans "
        f"({statistics.mean(sizes) / 1024:.0f} KiB each, {sum(sizes) / len(spans):.0f} bytes per span on the wire)"
    )
    timeout_s = max(60.0, len(spans) / 2_000)
    ours: list[Measurement] = []
    bare: list[Measurement] = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            sides = ("ours", "bare") if round_ % 2 == 0 else ("bare", "ours")
            for side in sides:
                folder = Path(scratch) / f"{side}{round_}"
                gc.collect()
                try:
                    if side == "ours":
                        result = measure_ours(folder, spans, len(messages), args.batch_size, timeout_s)
                        ours.append(result)
                    else:
                        result = measure_bare(folder, messages, timeout_s)
                        bare.append(result)
                except TimeoutError as e:
                    print(f"round {round_} {side}: FAILED: {e}")
                    return 1
                encoded_s = f", encoded {result.encoded_s:.2f} s" if result.encoded_s is not None else ""
                print(
                    f"round {round_} {side}: {len(spans) / result.total_s:>9,.0f} spans/s  "
                    f"(last {'commit' if side == 'ours' else 'ack'} at {result.total_s:.2f} s{encoded_s}, "
                    f"all acked by JetStream at {result.published_s:.2f} s; consumer CPU {result.consumer_cpu_s:.2f} s "
                    f"= {result.consumer_cpu_s / len(spans) * 1e6:.1f} us/span)"
                    + (f"  LOSSLESS CHECK FAILED: {result.lossless}" if result.lossless else ""),
                    flush=True,
                )
        stages: dict[str, float] = {}
        if args.stage_spans:
            subset = spans[: args.stage_spans]
            stages = stage_breakdown(Path(scratch), subset, span_messages(subset, args.batch_size))

    ours_rates = [len(spans) / m.total_s for m in ours]
    bare_rates = [len(spans) / m.total_s for m in bare]
    ratios = [o / b for o, b in zip(ours_rates, bare_rates, strict=True)]
    lossless = all(not m.lossless for m in ours)
    median_ours = statistics.median(ours_rates)
    print(f"\n{len(spans)} spans, {args.rounds} rounds, spans/s from first publish to last commit (ours) / ack (bare)")
    print(
        "  ours (RunPublisher, span_columns -> collector -> SQLite) per round: "
        + " ".join(f"{r:,.0f}" for r in ours_rates)
    )
    print(
        "  bare (nats-py publish -> pull subscriber, ack only) per round: " + " ".join(f"{r:,.0f}" for r in bare_rates)
    )
    print(
        f"ours median {median_ours:,.0f} spans/s   target >= {TARGET_SPANS_PER_S:,} "
        f"{'met' if median_ours >= TARGET_SPANS_PER_S else 'MISSED'}"
    )
    print(f"ratio ours/bare median {statistics.median(ratios):.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(
        f"lossless (exactly {len(spans)} spans as published, no duplicate, nothing rejected), every round: {lossless}"
    )
    if stages:
        print_stages(stages, min(args.stage_spans, len(spans)))
    return 0 if lossless and median_ours >= TARGET_SPANS_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
