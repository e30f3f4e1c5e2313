"""Real processes for the end-to-end pipeline tests: the collector (local mode's ``CollectorProcess``, which runs
``python -m mlmodelscope.collector.main``) and the agent (``mlmodelscope agent run --spec``), each in its own
process, plus read-back helpers for what ended up in JetStream, in the collector's SQLite file and in its
``/metrics``.

Every wait here is bounded, and ``ProcessReaper`` kills whatever a test started, even when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from prometheus_client.parser import text_string_to_metric_families

from mlmodelscope.cli import local
from mlmodelscope.collector.storage import span_store
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.messages import MSG_ID_HEADER, STREAM_NAME, SpanColumnBatch
from mlmodelscope.core.run_contract import ResolvedResources
from mlmodelscope.core.span_blob import decode_columns
from mlmodelscope.core.span_columns import SpanColumns
from tests.support.cli import clean_environment
from tests.support.paths import CLI

DURABLE_NAME = "mlmodelscope-collector"


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return f"({path} unreadable)"


class ProcessReaper:
    """Remembers every child process a test starts (or how to kill it) and kills the ones still alive at the end."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        self._kills: list[Callable[[], None]] = []

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self._processes.append(process)
        return process

    def adopt(self, kill: Callable[[], None]) -> None:
        """``kill`` (a no-op when the process is gone) is called at the end: for processes a production class owns."""
        self._kills.append(kill)

    def reap(self) -> None:
        for kill in self._kills:
            kill()
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


# --- the collector ---------------------------------------------------------------------------------------------


@dataclass
class CollectorProcess:
    """The collector as local mode runs it (``mlmodelscope.cli.local.CollectorProcess``: its own process, /readyz
    waited for) on a SQLite file in ``workdir``, with short timings. One at a time, on a fixed port: ``start``
    again after ``kill`` restarts it on the same database (and the same durable JetStream consumer)."""

    workdir: Path
    nats_url: str
    reaper: ProcessReaper
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. MLMODELSCOPE_COLLECTOR_NATS_TOKEN
    starts: int = 0
    _collector: local.CollectorProcess = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._collector = local.CollectorProcess(
            f"sqlite:///{self.db_path}", self.nats_url, self.log_path, settings=self.settings()
        )
        self.reaper.adopt(self._collector.kill)

    @property
    def db_path(self) -> Path:
        return self.workdir / "c.db"

    @property
    def base_url(self) -> str:
        return self._collector.url

    @property
    def log_path(self) -> Path:
        return self.workdir / "collector.log"

    @property
    def running(self) -> bool:
        return self._collector.running

    def settings(self) -> dict[str, str]:
        """The collector's settings over local mode's: short timings for tests."""
        prefix = "MLMODELSCOPE_COLLECTOR_"
        return {
            # Small fetches and a short ack wait: after a SIGKILL the messages it had fetched but not acked
            # come back within seconds (the default 30 s would only make the test slow, not different).
            prefix + "FETCH_BATCH_SIZE": "10",
            prefix + "ACK_WAIT_S": "5",
            prefix + "RECONNECT_DELAY_S": "0.5",
            **self.extra_env,
        }

    def start(self, *, timeout_s: float = 20.0) -> None:
        assert not self._collector.running, "the collector is already running"
        self.starts += 1
        try:
            self._collector.start(timeout_s)
        except EvaluationError as e:
            raise AssertionError(f"{e.message}\n{tail(self.log_path)}") from e

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no final ack, no clean database close."""
        assert self._collector.running, "the collector is not running"
        self._collector.kill()

    def stop(self) -> None:
        self._collector.stop()

    def get_json(self, path: str) -> Any:
        """GET an API path; None when the collector does not answer or answers anything but 200."""
        try:
            response = httpx.get(self.base_url + path, timeout=2.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = httpx.get(self.base_url + "/metrics", timeout=5.0)
        response.raise_for_status()
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples


# --- the agent -------------------------------------------------------------------------------------------------


def resolved_resources(assets: Path, model: str, framework: str, dataset: str | None = None) -> dict[str, Any]:
    """The run spec's ``resources`` for a run of ``assets``' manifests, as local mode writes them."""
    resources = ResolvedResources.from_registry(load_registry([assets]), model, framework, dataset)
    return resources.model_dump(mode="json")


def write_spec(path: Path, *, run_id: str, nats_url: str, assets: Path, workdir: Path, **overrides: Any) -> Path:
    """A RunSpec JSON: digits-cnn on onnxruntime, MODEL-level tracing (one span and one query record per call);
    its resources are the manifests in ``assets`` (the agent reads no asset folder)."""
    spec: dict[str, Any] = {
        "run_id": run_id,
        "evaluation_id": f"eval-{run_id}",
        "model": "digits-cnn",
        "framework": "onnxruntime",
        "cache_dir": str(workdir / "cache"),
        "output_dir": str(workdir / "out"),
        "trace_level": 2,
        "nats_url": nats_url,
        "settings": {"scenario": "single-stream", "mode": "both", "min_duration_s": 2.0},
    }
    spec.update(overrides)
    resources = resolved_resources(assets, spec["model"], spec["framework"], spec.get("dataset"))
    spec.setdefault("resources", resources)
    spec.setdefault("dataset", resources["dataset"]["name"] if resources["dataset"] else None)
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    started_s: float

    @classmethod
    def start(
        cls, spec: Path, workdir: Path, reaper: ProcessReaper, extra_env: dict[str, str] | None = None
    ) -> AgentProcess:
        """``extra_env``: e.g. the NATS token (``MLMODELSCOPE_NATS_TOKEN``)."""
        stdout_path, stderr_path = workdir / "agent.out", workdir / "agent.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = reaper.add(
                subprocess.Popen(
                    [str(CLI), "agent", "run", "--spec", str(spec), "--output", str(workdir / "result.json")],
                    env=clean_environment(**(extra_env or {})),
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
            )
        return cls(process, stdout_path, stderr_path, time.monotonic())

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"the agent did not exit within {timeout_s:g} s:\n{self.stderr}") from None

    @property
    def stderr(self) -> str:
        return tail(self.stderr_path)


# --- JetStream -------------------------------------------------------------------------------------------------


@dataclass
class StreamContents:
    """What the agent's messages of one run amount to, read back from the stream (each stored message once)."""

    message_ids: list[str]
    kinds: Counter[str]
    span_ids: list[int]
    query_keys: list[tuple[str, int]]
    query_items: int
    performance_latencies_ns: list[int]
    run_finished: dict[str, Any] | None


def _run_async(coroutine: Any, timeout_s: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, timeout=timeout_s)

    return asyncio.run(bounded())


def read_stream(nats_url: str, run_id: str, *, timeout_s: float = 30.0) -> StreamContents:
    async def read() -> StreamContents:
        client = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = client.jetstream()
            info = await js.stream_info(STREAM_NAME)
            contents = StreamContents([], Counter(), [], [], 0, [], None)
            column_parts, parents = [], {}
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                message = await js.get_msg(STREAM_NAME, seq)
                envelope = json.loads(message.data)
                if envelope["run_id"] != run_id:
                    continue
                payload = envelope["payload"]
                contents.message_ids.append((message.headers or {}).get(MSG_ID_HEADER, ""))
                contents.kinds[payload["kind"]] += 1
                if payload["kind"] == "spans":
                    contents.span_ids.extend(int(span["span_id"]) for span in payload["spans"])
                elif payload["kind"] == "span_columns":
                    columns = span_store.decode_payload(SpanColumnBatch.model_validate(payload))[1]
                    contents.span_ids.extend(columns.span_id.tolist())
                    column_parts.append(columns)
                    parents.update((int(parent), mode) for parent, mode in payload["query_parents"])
                elif payload["kind"] == "queries":
                    for query in payload["queries"]:
                        contents.query_keys.append((query["mode"], int(query["seq"])))
                        contents.query_items += int(query["item_count"])
                        if query["mode"] == "performance":
                            contents.performance_latencies_ns.append(int(query["end_ns"]) - int(query["start_ns"]))
                elif payload["kind"] == "run_finished":
                    contents.run_finished = payload
            for query in span_store.query_columns(SpanColumns.concat(column_parts), parents).rows():
                contents.query_keys.append((query["mode"], int(query["seq"])))
                contents.query_items += int(query["item_count"])
                if query["mode"] == "performance":
                    contents.performance_latencies_ns.append(int(query["end_ns"]) - int(query["start_ns"]))
            return contents
        finally:
            await client.close()

    result: StreamContents = _run_async(read(), timeout_s)
    return result


def stream_last_seq(nats_url: str, *, subject: str | None = None, strict: bool = False) -> int:
    """The stream's last sequence number, or how many messages ``subject`` has; 0 when there is no stream or the
    server does not answer, unless ``strict`` (then that raises)."""

    async def read() -> int:
        client = await nats.connect(nats_url, connect_timeout=1, max_reconnect_attempts=0)
        try:
            js = client.jetstream()
            info = await js.stream_info(STREAM_NAME, subjects_filter=subject)
            if subject is None:
                return int(info.state.last_seq)
            return int(sum((info.state.subjects or {}).values()))
        finally:
            await client.close()

    try:
        value: int = _run_async(read(), 5.0)
    except Exception:
        if strict:
            raise
        return 0
    return value


def consumer_idle(nats_url: str) -> bool:
    """The collector's durable consumer has nothing undelivered and nothing delivered but unacknowledged."""

    async def read() -> bool:
        client = await nats.connect(nats_url, connect_timeout=1, max_reconnect_attempts=0)
        try:
            info = await client.jetstream().consumer_info(STREAM_NAME, DURABLE_NAME)
            return info.num_pending == 0 and info.num_ack_pending == 0
        finally:
            await client.close()

    try:
        idle: bool = _run_async(read(), 5.0)
    except Exception:
        return False
    return idle


# --- the collector's database ----------------------------------------------------------------------------------


@contextlib.contextmanager
def open_database(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def scalar(connection: sqlite3.Connection, sql: str, *parameters: Any) -> Any:
    return connection.execute(sql, parameters).fetchone()[0]


def stored_span_ids(connection: sqlite3.Connection, run_id: str) -> list[int]:
    """Every stored span id of the run, row-wise and columnar (a span stored twice appears twice)."""
    ids = [row[0] for row in connection.execute("SELECT span_id FROM spans WHERE run_id = ?", (run_id,))]
    return ids + _stored_columns(connection, run_id)[0].span_id.tolist()


def stored_queries(connection: sqlite3.Connection, run_id: str) -> list[tuple[str, int, int, int]]:
    """(mode, seq, item_count, latency_ns) of every stored query record of the run: the row-wise ones and those
    the columnar MODEL spans are (a record stored twice appears twice)."""
    rows = connection.execute(
        "SELECT mode, seq, item_count, end_ns - start_ns FROM queries WHERE run_id = ?", (run_id,)
    ).fetchall()
    columns, parents = _stored_columns(connection, run_id)
    for query in span_store.query_columns(columns, parents).rows():
        rows.append((query["mode"], query["seq"], query["item_count"], query["end_ns"] - query["start_ns"]))
    return [tuple(row) for row in rows]


def _stored_columns(connection: sqlite3.Connection, run_id: str) -> tuple[SpanColumns, dict[int, str]]:
    parts, parents = [], {}
    for blob, pairs in connection.execute(
        "SELECT columns, query_parents FROM span_batches WHERE run_id = ? ORDER BY sequence", (run_id,)
    ):
        parts.append(decode_columns(bytes(blob)))
        parents.update((int(parent), mode) for parent, mode in json.loads(pairs))
    return SpanColumns.concat(parts), parents
