"""Hostile but schema-shaped envelopes through a real nats-server into a real collector process (issue 11's
acceptance test for the bus): integers at and past what the columns hold, span cycles, spoofed message ids, wrong
subjects and ``Nats-Msg-Id`` headers, rewrites of finished runs, duplicates and poison messages (a real SQLite
trigger makes their insert fail on every delivery).

Hypothesis draws each case; an oracle written from the rules (not from the collector's code) says what must
happen to every message: stored exactly once, or dead-lettered exactly once with a given reason. The collector
must keep running throughout, restart cleanly on the database all this left behind (two performance records of
~2**63 ns used to overflow the startup aggregates), report the true counts in ``/metrics`` after the restart, and
keep storing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from mlmodelscope.core.messages import MSG_ID_HEADER, STREAM_NAME
from tests.support.collector import add_poison_trigger
from tests.support.pipeline_processes import CollectorProcess, ProcessReaper, consumer_idle, open_database
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_DELIVERIES = 2
SETTLE_TIMEOUT_S = 60.0
PREFIX = "MLMODELSCOPE_COLLECTOR_"

# Values at and around the edges of the 32- and 64-bit columns, plus anything in between.
EDGES_32 = (0, 1, INT32_MAX - 1, INT32_MAX, INT32_MAX + 1, 2**32)
EDGES_64 = (0, 1, INT64_MAX - 1, INT64_MAX, INT64_MAX + 1, 2**64)
counts_32 = st.one_of(st.sampled_from(EDGES_32), st.integers(min_value=1, max_value=INT32_MAX))
values_64 = st.one_of(st.sampled_from(EDGES_64), st.integers(min_value=0, max_value=INT64_MAX))


def end_after(start_ns: int) -> st.SearchStrategy[int]:
    """An end time: often a valid one after ``start_ns``, else anything (before it, or past the 64-bit range)."""
    if start_ns > INT64_MAX:
        return values_64
    return st.one_of(st.integers(min_value=start_ns, max_value=INT64_MAX), values_64)


class HostileCollector(CollectorProcess):
    """The pipeline tests' collector process, redelivering a failing message twice before dead-lettering it."""

    def settings(self) -> dict[str, str]:
        return {**super().settings(), PREFIX + "MAX_DELIVERIES": str(MAX_DELIVERIES), PREFIX + "NAK_DELAY_S": "0.2"}


# --- what is published, and what must become of it ------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    subject: str
    data: bytes
    header: str | None
    expect: str  # "stored", "duplicate", or the reason it must be dead-lettered with
    message_id: str


@dataclass
class Case:
    """One drawn case: the messages of one run (and its poison twin), and the rows they must leave."""

    run_id: str
    messages: list[Published] = field(default_factory=list)
    span_ids: set[int] = field(default_factory=set)
    query_keys: set[tuple[str, int]] = field(default_factory=set)
    poison_run_id: str | None = None


def envelope(run_id: str, kind: str, sequence: int, payload: dict[str, Any], *, message_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "message_id": message_id or f"{run_id}:{kind}:{sequence}",
            "run_id": run_id,
            "sequence": sequence,
            "payload": {"kind": kind, **payload},
        }
    ).encode()


def subject(run_id: str, kind: str) -> str:
    return f"mlmodelscope.runs.{run_id}.{kind}"


def fits_64(*values: int) -> bool:
    return all(0 <= value <= INT64_MAX for value in values)


@st.composite
def hostile_cases(draw: st.DrawFn, run_ids: Iterator[str]) -> Case:
    run_id = next(run_ids)
    case = Case(run_id)

    def add(kind: str, sequence: int, payload: dict[str, Any], expect: str, **options: Any) -> None:
        target = options.pop("run", run_id)
        message_id = options.pop("message_id", None) or f"{target}:{kind}:{sequence}"
        header = options.pop("header", message_id)
        data = envelope(target, kind, sequence, payload, message_id=message_id)
        case.messages.append(Published(options.pop("subject", subject(target, kind)), data, header, expect, message_id))

    add(
        "run_started",
        0,
        {
            "evaluation_id": f"eval-{run_id}",
            "model": "digits-cnn",
            "framework": "onnxruntime",
            "dataset": "digits",
            "scenario": "single-stream",
            "mode": "both",
            "batch_size": 1,
            "arch": "x86_64",
            "accelerator": "cpu",
            "trace_level": "model",
            "epoch_offset_ns": 0,
            "started_at": "2026-01-02T03:04:05Z",
        },
        "stored",
    )

    # Spans whose parents may be themselves or each other (cycles are valid data), times at the 64-bit edges.
    span_ids = draw(st.lists(st.integers(min_value=1, max_value=INT64_MAX), min_size=1, max_size=4, unique=True))
    spans: list[dict[str, Any]] = []
    for span_id in span_ids:
        start_ns = draw(values_64)
        end_ns = draw(end_after(start_ns))
        spans.append(
            {
                "run_id": run_id,
                "span_id": span_id,
                "parent_id": draw(st.sampled_from([0, *span_ids])),
                "name": "predict",
                "level": 2,
                "start_ns": start_ns,
                "end_ns": end_ns,
                "attributes": {},
            }
        )
    spans_ok = all(fits_64(s["start_ns"], s["end_ns"]) and s["end_ns"] >= s["start_ns"] for s in spans)
    add("spans", 0, {"spans": spans}, "stored" if spans_ok else "invalid")
    if spans_ok:
        case.span_ids.update(span_ids)
        if draw(st.booleans()):  # the same batch again without a Nats-Msg-Id: the collector drops it by id
            add("spans", 0, {"spans": spans}, "duplicate", header=None)

    # Query records with counts and times at the edges of their columns.
    queries: list[dict[str, Any]] = []
    for seq in draw(st.lists(st.sampled_from([0, 1, INT64_MAX, INT64_MAX + 1]), min_size=1, max_size=3, unique=True)):
        queries.append(
            {
                "seq": seq,
                "mode": "performance",
                "first_item": draw(st.sampled_from([0, INT64_MAX, INT64_MAX + 1])),
                "item_count": draw(counts_32),
                "start_ns": (start_ns := draw(values_64)),
                "end_ns": draw(end_after(start_ns)),
            }
        )
    in_columns = all(
        fits_64(q["seq"], q["first_item"], q["start_ns"], q["end_ns"]) and 1 <= q["item_count"] <= INT32_MAX
        for q in queries
    )
    ordered = all(q["end_ns"] >= q["start_ns"] for q in queries)
    add(
        "queries",
        0,
        {"queries": queries},
        "stored" if in_columns and ordered else "malformed" if not in_columns else "invalid",
    )
    if in_columns and ordered:
        case.query_keys.update(("performance", q["seq"]) for q in queries)

    # Progress under a sequence at the 64-bit edge.
    sequence = draw(st.sampled_from([0, INT64_MAX, INT64_MAX + 1]))
    add(
        "progress",
        sequence,
        {"phase": "performance", "completed_queries": 1, "elapsed_s": 0.5},
        "stored" if sequence <= INT64_MAX else "malformed",
    )

    finished = {
        "status": "succeeded",
        "result": None,
        "error": "",
        "span_count": len(case.span_ids),
        "query_count": len(case.query_keys),
        "finished_at": "2026-01-02T03:09:00Z",
    }
    add("run_finished", 0, finished, "stored")

    # Spoofs: another run's id, this run's message on another run's subject, a Nats-Msg-Id naming another message.
    victim = f"{run_id}-victim"
    clean_span = {**spans[0], "start_ns": 0, "end_ns": 1}  # so only the address is wrong
    add(
        "run_finished",
        0,
        {**finished, "status": "failed", "error": "spoofed"},
        "misaddressed",
        message_id=f"{victim}:run_finished:0",
        header=None,
    )
    add("spans", 7, {"spans": [clean_span]}, "misaddressed", subject=subject(victim, "spans"))
    add("spans", 8, {"spans": [clean_span]}, "misaddressed", header=f"{victim}:spans:8")

    # A rewrite of the finished run, with counts at the 32-bit edge (beyond it: refused before it is a rewrite).
    span_count, query_count = draw(counts_32), draw(counts_32)
    rewrite = {
        **finished,
        "status": "failed",
        "error": "rewritten",
        "span_count": span_count,
        "query_count": query_count,
    }
    add(
        "run_finished", 1, rewrite, "run_already_finished" if max(span_count, query_count) <= INT32_MAX else "malformed"
    )

    if draw(st.booleans()):  # a poison message: valid, but its insert fails on every delivery
        case.poison_run_id = f"{run_id}-poison"
        add(
            "spans",
            0,
            {"spans": [{**clean_span, "run_id": case.poison_run_id}]},
            "insert_failed",
            run=case.poison_run_id,
        )
    return case


# --- the bus and the database -----------------------------------------------------------------------------------


def publish(nats_url: str, messages: list[Published]) -> list[int]:
    """Publish in order; the stream sequence of each (what a dead letter is recorded under)."""

    async def send() -> list[int]:
        client = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = client.jetstream()
            sequences = []
            for message in messages:
                headers = None if message.header is None else {MSG_ID_HEADER: message.header}
                ack = await js.publish(message.subject, message.data, headers=headers, stream=STREAM_NAME)
                assert not ack.duplicate, f"the server de-duplicated {message.message_id}: the case is wrong"
                sequences.append(ack.seq)
            return sequences
        finally:
            await client.close()

    return asyncio.run(asyncio.wait_for(send(), timeout=30))


def dead_letters_of(db_path: Path, sequences: list[int]) -> dict[int, list[str]]:
    placeholders = ",".join("?" * len(sequences))
    with open_database(db_path) as db:
        rows = db.execute(
            f"SELECT stream_sequence, reason FROM dead_letters WHERE stream_sequence IN ({placeholders})", sequences
        ).fetchall()
    found: dict[int, list[str]] = {}
    for sequence, reason in rows:
        found.setdefault(int(sequence), []).append(str(reason))
    return found


def check_case(collector: CollectorProcess, nats_url: str, case: Case) -> None:
    if case.poison_run_id is not None:
        add_poison_trigger(collector.db_path, case.poison_run_id)
    sequences = publish(nats_url, case.messages)
    expected_dead = {
        seq: m.expect
        for seq, m in zip(sequences, case.messages, strict=True)
        if m.expect not in ("stored", "duplicate")
    }

    def settled() -> bool:
        return len(dead_letters_of(collector.db_path, list(expected_dead))) == len(expected_dead) and consumer_idle(
            nats_url
        )

    wait_for(settled, timeout_s=SETTLE_TIMEOUT_S, what=f"the messages of {case.run_id} to be stored or dead-lettered")
    assert collector.running, "the collector died"

    # Every bad message dead-lettered exactly once, with its reason; no good one dead-lettered.
    assert dead_letters_of(collector.db_path, sequences) == {seq: [reason] for seq, reason in expected_dead.items()}
    with open_database(collector.db_path) as db:
        stored_ids = {
            row[0] for row in db.execute("SELECT message_id FROM ingested_messages WHERE run_id = ?", (case.run_id,))
        }
        span_ids = {row[0] for row in db.execute("SELECT span_id FROM spans WHERE run_id = ?", (case.run_id,))}
        query_keys = {
            (row[0], row[1]) for row in db.execute("SELECT mode, seq FROM queries WHERE run_id = ?", (case.run_id,))
        }
        status, error, finished_at = db.execute(
            "SELECT status, error, finished_at FROM runs WHERE run_id = ?", (case.run_id,)
        ).fetchone()
        others = {row[0] for row in db.execute("SELECT run_id FROM runs WHERE run_id LIKE ?", (f"{case.run_id}-%",))}
    # Every good message stored exactly once (ids are the primary key; rows are compared as sets of keys).
    assert stored_ids == {m.message_id for m in case.messages if m.expect == "stored"}
    assert span_ids == case.span_ids
    assert query_keys == case.query_keys
    assert (status, error) == ("succeeded", "")  # neither the spoof nor the rewrite changed the outcome
    assert str(finished_at).startswith("2026-01-02 03:09:00")  # the agent's time, not the collector's
    assert others == set()  # the spoofs and the poison message created no run
    # The reads of what was stored (span cycles, times at the 64-bit edge) answer, and never with a server error.
    for path in ("", "/result", "/trace", "/timeline", "/analysis", "/queries?format=csv"):
        response = httpx.get(f"{collector.base_url}/api/v1/runs/{case.run_id}{path}", timeout=60)
        assert response.status_code < 500, (path, response.status_code, response.text[:500])


# --- the test ---------------------------------------------------------------------------------------------------


def test_hostile_envelopes_are_stored_once_or_dead_lettered_once(tmp_path: Path, reaper: ProcessReaper) -> None:
    server = EmbeddedNatsServer(tmp_path / "nats")
    server.start()
    collector = HostileCollector(tmp_path / "collector", server.url, reaper)
    try:
        collector.start()
        run_ids = (f"h{n}" for n in itertools.count())
        # Two valid performance records of ~2**63 ns each: together past what SQLite's SUM can add.
        huge = Case("huge")
        huge.messages = [
            Published(
                subject("huge", "run_started"),
                envelope(
                    "huge",
                    "run_started",
                    0,
                    {
                        "evaluation_id": "eval-huge",
                        "model": "m",
                        "framework": "f",
                        "dataset": "d",
                        "scenario": "s",
                        "mode": "both",
                        "batch_size": INT32_MAX,
                        "arch": "a",
                        "accelerator": "cpu",
                        "trace_level": "model",
                        "epoch_offset_ns": -INT64_MAX,
                        "started_at": "2026-01-02T03:04:05Z",
                    },
                ),
                "huge:run_started:0",
                "stored",
                "huge:run_started:0",
            ),
            Published(
                subject("huge", "queries"),
                envelope(
                    "huge",
                    "queries",
                    0,
                    {
                        "queries": [
                            {
                                "seq": i,
                                "mode": "performance",
                                "first_item": i,
                                "item_count": INT32_MAX,
                                "start_ns": 0,
                                "end_ns": INT64_MAX - i,
                            }
                            for i in range(2)
                        ]
                    },
                ),
                "huge:queries:0",
                "stored",
                "huge:queries:0",
            ),
            Published(
                subject("huge", "run_finished"),
                envelope(
                    "huge",
                    "run_finished",
                    0,
                    {"status": "succeeded", "span_count": 0, "query_count": 2, "finished_at": "2026-01-02T03:09:00Z"},
                ),
                "huge:run_finished:0",
                "stored",
                "huge:run_finished:0",
            ),
        ]
        huge.query_keys = {("performance", 0), ("performance", 1)}
        check_case(collector, server.url, huge)

        @settings(
            max_examples=8, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
        )
        @given(case=hostile_cases(run_ids))
        def each_case(case: Case) -> None:
            check_case(collector, server.url, case)

        each_case()

        # A clean restart on that database, with /metrics equal to what is stored.
        collector.stop()
        collector.start()
        samples = collector.metrics()
        with open_database(collector.db_path) as db:
            dead = dict(db.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason").fetchall())
            spans = db.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
            kinds = dict(db.execute("SELECT kind, COUNT(*) FROM ingested_messages GROUP BY kind").fetchall())
        for reason in ("malformed", "invalid", "misaddressed", "run_already_finished", "insert_failed"):
            assert samples.get(("mlmodelscope_dead_letters_total", frozenset({("reason", reason)}))) == dead.get(
                reason, 0
            ), reason
        assert dead["misaddressed"] > 0 and dead["run_already_finished"] > 0
        assert samples[("mlmodelscope_spans_ingested_total", frozenset())] == spans
        for kind, count in kinds.items():
            assert samples[("mlmodelscope_messages_ingested_total", frozenset({("kind", kind)}))] == count
        huge_latency = [
            v
            for (name, labels), v in samples.items()
            if name == "mlmodelscope_inference_latency_seconds_sum" and ("model", "m") in labels
        ]
        assert huge_latency == [pytest.approx((2 * INT64_MAX - 1) / 1e9)]

        # ... and it keeps storing.
        after = next(run_ids)
        check_case(
            collector,
            server.url,
            Case(
                after,
                [
                    Published(
                        subject(after, "progress"),
                        envelope(after, "progress", 0, {"phase": "p", "completed_queries": 0, "elapsed_s": 0.0}),
                        f"{after}:progress:0",
                        "stored",
                        f"{after}:progress:0",
                    ),
                    Published(
                        subject(after, "run_finished"),
                        envelope(
                            after,
                            "run_finished",
                            0,
                            {
                                "status": "succeeded",
                                "span_count": 0,
                                "query_count": 0,
                                "finished_at": "2026-01-02T03:09:00Z",
                            },
                        ),
                        f"{after}:run_finished:0",
                        "stored",
                        f"{after}:run_finished:0",
                    ),
                ],
            ),
        )
        assert httpx.get(collector.base_url + "/healthz", timeout=5).status_code == 200
        listed = httpx.get(collector.base_url + "/api/v1/dead-letters", params={"reason": "insert_failed"}, timeout=5)
        assert listed.status_code == 200
        assert listed.json()["total"] == dead.get("insert_failed", 0)
    finally:
        collector.stop()
        server.kill()


def test_the_poison_trigger_really_refuses(tmp_path: Path) -> None:
    """The test's poison is a real database refusal, not a stub: check the trigger on its own."""
    db_path = tmp_path / "t.db"
    connection = sqlite3.connect(db_path)
    connection.execute("CREATE TABLE spans (run_id TEXT)")
    connection.commit()
    connection.close()
    add_poison_trigger(db_path, "x-poison")
    connection = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="refused for the test"):
            connection.execute("INSERT INTO spans VALUES ('x-poison')")
        connection.execute("INSERT INTO spans VALUES ('fine')")
    finally:
        connection.close()
