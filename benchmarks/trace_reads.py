"""How fast does the collector read a 1M-span run back: its run page, a compare of two such runs, the full trace?

Builds two runs of ``--spans`` spans each (default 1,000,000: phases, ~90% performance and ~10% accuracy MODEL
``predict`` spans with their seq/first_item/item_count, and 10 FRAMEWORK operators under each of the first 1,000
performance calls, the profile window), encodes them as the agent does (``column_messages``: span_columns
batches, the query records derived from the spans) and stores them with the collector's ``Ingestor`` into a
temporary SQLite file (``--legacy`` stores the same spans row-wise, as older agents did, for a side by side).

Then, against the collector run as a deployment runs it (``python -m mlmodelscope.collector.main``, uvicorn, its
own process, HTTP on 127.0.0.1), times the run page (``/ui/runs/{id}``; the first round decodes the run, later
ones reuse the decoded columns), the compare page of the two runs (``/ui/compare``) and the full trace export
(``/api/v1/runs/{id}/trace``, streamed, every byte read) as Chrome JSON and as Perfetto protobuf
(``format=perfetto``), each the median of ``--rounds``, once ``mlmodelscope trace export`` in each format
(download, parse or walk, validate, write; its old 30 s timeout as the bound), and the collector's RSS growth
while the exports run (its VmRSS sampled every 5 ms, peak minus the value before). The export is checked: valid
JSON with one complete event per span; the sizes of both files are printed.

Targets: run page <= 1 s, compare <= 2 s, each export <= 5 s with RSS growth <= 300 MB. Exit code 1 when a check
fails or a target is missed. Usage: ``python benchmarks/trace_reads.py [--spans N] [--rounds R] [--legacy]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from mlmodelscope.agent.bus.column_messages import column_messages
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.message_checks import decode_message
from mlmodelscope.collector.storage.migrations import migrate
from mlmodelscope.core.messages import (
    Envelope,
    RunFinished,
    RunStarted,
    SpanBatch,
    message_id,
)
from mlmodelscope.core.span_columns import IntAttribute, SpanColumns
from mlmodelscope.core.tracing.spans import TraceLevel

TARGETS_S = {
    "run page": 1.0,
    "compare": 2.0,
    "export": 5.0,
    "perfetto export": 5.0,
    "cli export": 30.0,
    "cli perfetto export": 30.0,
}
MAX_RSS_GROWTH_MB = 300.0
WINDOW_CALLS = 1_000
OPERATORS = 10


def run_columns(spans: int, seed: int) -> tuple[SpanColumns, list[tuple[int, str]]]:
    """One run's spans as columns (see the module docstring) and its query parents."""
    rng = np.random.default_rng(seed)
    phases = 4  # evaluation, accuracy_run, performance_run, model_load
    operators = WINDOW_CALLS * OPERATORS
    model = spans - phases - operators
    accuracy = model // 10
    performance = model - accuracy
    latency = rng.integers(300_000, 900_000, model)
    gap = rng.integers(0, 50_000, model)
    start = 10_000_000 + np.cumsum(np.r_[0, (latency + gap)[:-1]])  # one query after the other (single-stream)
    end = start + latency
    parent = np.r_[np.full(accuracy, 2), np.full(performance, 3)].astype(np.int64)
    seq = np.r_[np.arange(accuracy), np.arange(performance)].astype(np.int64)
    model_ids = np.arange(100, 100 + model, dtype=np.int64)
    first_op = 100 + model
    window = np.arange(accuracy, accuracy + WINDOW_CALLS)
    op_parent = np.repeat(model_ids[window], OPERATORS)
    op_index = np.tile(np.arange(OPERATORS), WINDOW_CALLS)
    op_start = np.repeat(start[window], OPERATORS) + op_index * 20_000
    last = int(end[-1]) + 1
    model_columns = SpanColumns.uniform(
        span_id=model_ids,
        parent_id=parent,
        start_ns=start,
        end_ns=end,
        level=TraceLevel.MODEL,
        name="predict",
        ints={"seq": seq, "first_item": seq, "item_count": np.ones(model, np.int64)},
    )
    phase_columns = SpanColumns(
        span_id=np.array([1, 2, 3, 4], np.int64),
        parent_id=np.array([0, 1, 1, 1], np.int64),
        start_ns=np.array([0, int(start[0]), int(start[accuracy]), 1_000], np.int64),
        end_ns=np.array([last, int(end[accuracy - 1]), last, 9_000_000], np.int64),
        level=np.full(4, int(TraceLevel.APPLICATION), np.int8),
        name_index=np.arange(4, dtype=np.int32),
        names=("evaluation", "accuracy_run", "performance_run", "model_load"),
        attribute_index=np.zeros(4, np.int32),
        attribute_texts=("{}",),
    )
    texts = tuple(
        json.dumps({"node": f"layer{i}", "op_type": "Conv" if i % 2 else "Relu", "framework": "onnxruntime"})
        for i in range(OPERATORS)
    )
    operator_columns = SpanColumns(
        span_id=np.arange(first_op, first_op + operators, dtype=np.int64),
        parent_id=op_parent,
        start_ns=op_start,
        end_ns=op_start + 15_000,
        level=np.full(operators, int(TraceLevel.FRAMEWORK), np.int8),
        name_index=op_index.astype(np.int32),
        names=tuple(f"op{i}" for i in range(OPERATORS)),
        attribute_index=op_index.astype(np.int32),
        attribute_texts=texts,
        ints={"depth": IntAttribute(np.zeros(operators, np.int64))},
    )
    columns = SpanColumns.concat([phase_columns, model_columns, operator_columns])
    return columns, [(2, "accuracy"), (3, "performance")]


def run_started(run_id: str) -> Envelope:
    payload = RunStarted(
        evaluation_id=f"eval-{run_id}",
        model="resnet50",
        framework="onnxruntime",
        dataset="imagenet",
        scenario="single-stream",
        mode="both",
        batch_size=1,
        arch="amd64",
        accelerator="cpu",
        trace_level="framework",
        epoch_offset_ns=1_700_000_000_000_000_000,
        started_at=datetime.now(UTC),
    )
    return Envelope(message_id=message_id(run_id, "run_started", 0), run_id=run_id, sequence=0, payload=payload)


def run_finished(run_id: str, spans: int, queries: int) -> Envelope:
    payload = RunFinished(status="succeeded", result=None, span_count=spans, query_count=queries)
    return Envelope(message_id=message_id(run_id, "run_finished", 0), run_id=run_id, sequence=0, payload=payload)


def store_run(ingestor: Ingestor, run_id: str, spans: int, seed: int, legacy: bool) -> float:
    """Ingest one run; returns the seconds the ingest took."""
    columns, parents = run_columns(spans, seed)
    began = time.perf_counter()
    ingestor.ingest(run_started(run_id))
    if legacy:
        from mlmodelscope.agent.run import query_records
        from mlmodelscope.core.messages import QueryBatch

        all_spans = list(columns.spans(run_id))
        for i in range(0, len(all_spans), 2_000):
            chunk = SpanBatch(spans=all_spans[i : i + 2_000])
            ingestor.ingest(
                Envelope(message_id=message_id(run_id, "spans", i), run_id=run_id, sequence=i, payload=chunk)
            )
        records = query_records(all_spans)
        for i in range(0, len(records), 2_000):
            batch = QueryBatch(queries=records[i : i + 2_000])
            ingestor.ingest(
                Envelope(message_id=message_id(run_id, "queries", i), run_id=run_id, sequence=i, payload=batch)
            )
        queries = len(records)
    else:
        sequences = iter(range(10**9))
        for _, _, data in column_messages(run_id, columns, parents, lambda _kind: next(sequences)):
            ingestor.ingest(decode_message(data), checked=True)
        queries = len(columns) - 4 - WINDOW_CALLS * OPERATORS
    ingestor.ingest(run_finished(run_id, len(columns), queries))
    return time.perf_counter() - began


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssPeak:
    """The peak VmRSS of process ``pid`` while the block runs, sampled every 5 ms from a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))

    def __enter__(self) -> RssPeak:
        self.before_mb = self.peak_mb = rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


def timed(rounds: int, call: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def start_collector(db_url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The collector as a deployment runs it (``mlmodelscope.collector.main``, uvicorn) on a free local port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
    environment |= {
        "MLMODELSCOPE_COLLECTOR_DATABASE_URL": db_url,
        "MLMODELSCOPE_COLLECTOR_PORT": str(port),
        "MLMODELSCOPE_COLLECTOR_LOG_LEVEL": "warning",
    }
    log = (folder / "collector.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlmodelscope.collector.main"], env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the collector exited: " + (folder / "collector.log").read_text())
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the collector did not become ready")


def measure(
    db_url: str, folder: Path, run_ids: list[str], spans: int, rounds: int
) -> tuple[dict[str, list[float]], float]:
    process, url = start_collector(db_url, folder)
    figures: dict[str, list[float]] = {}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:

            def page() -> None:
                response = client.get(f"/ui/runs/{run_ids[0]}")
                assert response.status_code == 200, response.text[:500]

            def compare() -> None:
                response = client.get("/ui/compare", params=[("run", run_ids[0]), ("run", run_ids[1])])
                assert response.status_code == 200, response.text[:500]

            sizes: dict[str, int] = {}

            def export(params: dict[str, str]) -> None:
                with client.stream("GET", f"/api/v1/runs/{run_ids[0]}/trace", params=params) as response:
                    assert response.status_code == 200
                    sizes[params.get("format", "chrome")] = sum(len(chunk) for chunk in response.iter_raw())

            figures["run page"] = timed(rounds, page)
            figures["compare"] = timed(rounds, compare)
            with RssPeak(process.pid) as rss:
                figures["export"] = timed(rounds, lambda: export({}))
                figures["perfetto export"] = timed(rounds, lambda: export({"format": "perfetto"}))
            print(f"  trace sizes: chrome {sizes['chrome'] / 1e6:.0f} MB, perfetto {sizes['perfetto'] / 1e6:.0f} MB")
            with client.stream("GET", f"/api/v1/runs/{run_ids[0]}/trace") as response:
                document = json.loads(response.read())
            events = sum(1 for event in document["traceEvents"] if event["ph"] == "X")
            del document
            if events != spans:
                raise AssertionError(f"the export holds {events} complete events, not the run's {spans} spans")
            # The CLI's export: streamed to a file, then parsed and validated (what a user runs).
            command = [sys.executable, "-m", "mlmodelscope.cli.main", "trace", "export", run_ids[0]]
            command += ["--collector-url", url, "-o", str(folder / "trace.json")]
            figures["cli export"] = timed(1, lambda: subprocess.run(command, check=True, capture_output=True))
            command[-1] = str(folder / "trace.pftrace")
            figures["cli perfetto export"] = timed(1, lambda: subprocess.run(command, check=True, capture_output=True))
    finally:
        process.terminate()
        process.wait(timeout=30)
    return figures, rss.peak_mb - rss.before_mb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--legacy", action="store_true", help="Also store and read the runs row-wise, side by side.")
    args = parser.parse_args(argv)
    storages = ["columnar", "row-wise"] if args.legacy else ["columnar"]
    ok = True
    with tempfile.TemporaryDirectory(prefix="mlmodelscope-reads-") as folder:
        for storage in storages:
            db_url = f"sqlite:///{Path(folder) / storage}.db"
            database = Database(db_url)
            migrate(database)
            ingestor = Ingestor(database)
            run_ids = [f"bench-{storage.replace('-', '')}-{i}" for i in range(2)]
            ingest_s = [
                store_run(ingestor, run_id, args.spans, i, storage == "row-wise") for i, run_id in enumerate(run_ids)
            ]
            database.dispose()
            print(f"{storage}: stored 2 runs of {args.spans:,} spans in {sum(ingest_s):.1f} s")
            figures, growth_mb = measure(db_url, Path(folder), run_ids, args.spans, args.rounds)
            for name, times in figures.items():
                median = statistics.median(times)
                met = median <= TARGETS_S[name]
                ok &= met or storage != "columnar"
                rounds = ", ".join(f"{t:.3f}" for t in times)
                print(f"  {name:19s} median {median:7.3f} s (rounds {rounds}; target <= {TARGETS_S[name]:g} s)")
            met = growth_mb <= MAX_RSS_GROWTH_MB
            ok &= met or storage != "columnar"
            print(f"  export: collector RSS growth {growth_mb:.0f} MB (target <= {MAX_RSS_GROWTH_MB:g} MB)")
    print("OK" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
