"""Local mode: the cluster's data path on one machine, started and stopped by the CLI.

``mlmodelscope evaluate`` runs an embedded NATS server (JetStream in the data folder), the collector as its own
process (SQLite in the data folder, so past evaluations stay listable), and one agent process per framework. The
agents publish exactly what a Kubernetes Job would; the CLI shows progress read from the bus and prints the
results read back from the collector's REST API. The data folder is ``$MLMODELSCOPE_DATA_DIR`` or
``$XDG_DATA_HOME/mlmodelscope`` (default ``~/.local/share/mlmodelscope``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats

from mlmodelscope.agent.bus.connection import connect_options, generate_token, nats_token, quiet_nats_logging
from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from mlmodelscope.core.child_service import ChildService, free_port
from mlmodelscope.core.collector_client import interpret
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV
from mlmodelscope.core.messages import SUBJECT_PREFIX, decode

DATA_ENV = "MLMODELSCOPE_DATA_DIR"
COLLECTOR_URL_ENV = "MLMODELSCOPE_COLLECTOR_URL"
_POLL_S = 0.1
COLLECTOR_NICENESS = 10
_DYING_WAIT_S = 2.0
_READYZ_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.root / 'collector.db'}"

    @property
    def runs(self) -> Path:
        return self.root / "runs"


def data_dir(environ: Mapping[str, str]) -> DataDir:
    if environ.get(DATA_ENV):
        return DataDir(Path(environ[DATA_ENV]))
    base = Path(environ["XDG_DATA_HOME"]) if environ.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return DataDir(base / "mlmodelscope")


class CollectorProcess(ChildService):
    """``python -m mlmodelscope.collector.main`` on a free port (``core.child_service``); ``start`` returns once
    ``/readyz`` says ready (``launch`` + ``wait_ready`` split it, so that the caller's own start-up can overlap the
    collector's).

    Once started, it ingests at a lower CPU priority (``COLLECTOR_NICENESS``) than the agents: on a machine with
    few cores it stores spans in the gaps instead of taking time from the model being measured, and catches up
    once the agents are done; nothing waits on it during a run (agents publish to JetStream).

    The collector holds no state of its own (runs are in the database, messages not yet stored wait in JetStream),
    so a collector that dies during an evaluation is restarted on the same database, at most ``max_restarts``
    times: ``ensure_running`` does it, and ``get`` does it before asking again.

    ``settings``: more of the collector's environment variables (``MLMODELSCOPE_COLLECTOR_*``), over the ones local
    mode sets (the tests, for instance, shorten its timings or give it an API token).
    """

    name = "the collector"
    scheme = "http"
    error = EvaluationError
    start_timeout_s = 30.0
    stop_timeout_s = 10.0
    poll_s = _POLL_S

    def __init__(
        self,
        database_url: str,
        nats_url: str | None,
        log_path: Path,
        *,
        max_restarts: int = 3,
        nats_token: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_path)
        self._env = {
            **os.environ,
            "MLMODELSCOPE_COLLECTOR_DATABASE_URL": database_url,
            "MLMODELSCOPE_COLLECTOR_NATS_URL": nats_url or "",
            "MLMODELSCOPE_COLLECTOR_NATS_TOKEN": nats_token or "",
            "MLMODELSCOPE_COLLECTOR_HOST": "127.0.0.1",
            "MLMODELSCOPE_COLLECTOR_LOG_LEVEL": "warning",
            "MLMODELSCOPE_COLLECTOR_LAG_REFRESH_S": "0.5",
            "MLMODELSCOPE_COLLECTOR_NAK_DELAY_S": "0.5",
            "MLMODELSCOPE_COLLECTOR_INGEST_NICENESS": str(COLLECTOR_NICENESS),
            **(settings or {}),
        }
        self.max_restarts = max_restarts
        self.restarts = 0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mlmodelscope.collector.main"]

    def environment(self) -> dict[str, str]:
        return {**self._env, "MLMODELSCOPE_COLLECTOR_PORT": str(self.port)}

    def answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/readyz", timeout=_READYZ_TIMEOUT_S).status_code == 200
        return False

    def ensure_running(self) -> bool:
        """Restart the collector if its process has died; True when it did. EvaluationError once the restarts
        are used up or a restart fails: one paragraph saying what happened and where the data is."""
        process = self._process
        if process is None or process.poll() is None:
            return False
        died = f"the collector (pid {process.pid}) died with exit code {process.returncode} during the evaluation"
        kept = (
            "Nothing the agents published is lost: it waits in JetStream in the data folder, and the next collector "
            "on this data folder (`mlmodelscope runs list`) stores it."
        )
        if self.restarts >= self.max_restarts:
            raise EvaluationError(
                f"{died}, after {self.restarts} restart(s) already; giving up.",
                hint=f"See {self.log_path}. {kept}",
            )
        self.restarts += 1
        self.port = free_port()  # the dead one's port may not be free again at once
        try:
            self.start()
        except EvaluationError as e:
            raise EvaluationError(
                f"{died}, and restarting it failed: {e.message}", hint=f"See {self.log_path}. {kept}"
            ) from e
        return True

    def get(self, path: str, timeout_s: float = 30.0) -> httpx.Response:
        """GET ``path`` from the collector, restarting it (bounded) if it died; EvaluationError if it cannot answer."""
        while True:
            self.ensure_running()
            try:
                self.wait_ready()
            except EvaluationError:
                if self._process is not None and self._process.poll() is not None:
                    continue  # it died while starting: ensure_running restarts it, or says why it cannot
                raise
            try:
                return httpx.get(f"{self.url}{path}", timeout=timeout_s)
            except httpx.TransportError as e:
                if self._process is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._process.wait(timeout=_DYING_WAIT_S)  # a refused connection: is it dying?
                if self._process is None or self._process.poll() is None:
                    raise EvaluationError(
                        f"the collector at {self.url} is running but does not answer {path}: {e}.",
                        hint=f"See {self.log_path}.",
                    ) from e
                # it died: the next ensure_running restarts it, or says why it cannot

    def get_json(self, path: str) -> Any:
        """The document at ``path`` (``collector_client.interpret``: a 404 is a CollectorAnswerError)."""
        return interpret(self.get(path), path)


@contextlib.contextmanager
def local_collector(
    data: DataDir, *, with_nats: bool, wait_ready: bool = True
) -> Iterator[tuple[CollectorProcess, EmbeddedNatsServer | None]]:
    """NATS (optional) and the collector on the local data folder, stopped on exit whatever happens.

    ``wait_ready=False`` yields as soon as the collector's process is launched, so that its start-up overlaps the
    caller's (the agents only need NATS); the caller then calls ``collector.wait_ready()`` (``get`` also waits).

    NATS requires a token generated for this command; while it runs the token is in this process's environment
    (``MLMODELSCOPE_NATS_TOKEN``), so the agents it starts inherit it, and no command line shows it."""
    server = EmbeddedNatsServer(data.nats, token=generate_token()) if with_nats else None
    collector: CollectorProcess | None = None
    previous_token = os.environ.get(NATS_TOKEN_ENV)
    try:
        nats_url = server.start() if server is not None else None
        if server is not None and server.token is not None:
            os.environ[NATS_TOKEN_ENV] = server.token
        token = server.token if server is not None else None
        collector = CollectorProcess(data.database_url, nats_url, data.root / "collector.log", nats_token=token)
        if wait_ready:
            collector.start()
        else:
            collector.launch()
        yield collector, server
    finally:
        if collector is not None:
            collector.stop()
        if server is not None:
            server.stop()
            if previous_token is None:
                os.environ.pop(NATS_TOKEN_ENV, None)
            else:
                os.environ[NATS_TOKEN_ENV] = previous_token


@contextlib.contextmanager
def collector_to_ask(url: str | None) -> Iterator[str]:
    """The collector a read command asks: ``url``, else ``MLMODELSCOPE_COLLECTOR_URL``, else one started on the
    local data folder for the duration of the command (no NATS: it only reads)."""
    chosen = url or os.environ.get(COLLECTOR_URL_ENV)
    if chosen:
        yield chosen.rstrip("/")
        return
    with local_collector(data_dir(os.environ), with_nats=False) as (collector, _):
        yield collector.url


@dataclass
class BusProgress:
    """Latest progress of each run, as read from the bus by a background thread."""

    phases: dict[str, str] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def follow(self, nats_url: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self._listen(nats_url)), name="progress", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    async def _listen(self, nats_url: str) -> None:
        async def on_message(message: Any) -> None:
            with contextlib.suppress(Exception):
                payload = decode(message.data).payload
                run_id = message.subject.split(".")[2]
                if payload.kind == "progress":
                    self.phases[run_id] = payload.phase
                    self.completed[run_id] = payload.completed_queries
                elif payload.kind == "run_finished":
                    self.phases[run_id] = f"finished ({payload.status})"

        # Progress is best effort: a dead NATS is reported by the agents and the collector, not here.
        quiet_nats_logging()
        _, options = connect_options(nats_url, "progress", nats_token(os.environ))
        with contextlib.suppress(Exception):
            client = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, **options)
            await client.subscribe(f"{SUBJECT_PREFIX}.*.progress", cb=on_message)
            await client.subscribe(f"{SUBJECT_PREFIX}.*.run_finished", cb=on_message)
            while not self._stop.is_set():
                await asyncio.sleep(_POLL_S)
            await client.close()


# The collector's statuses of a run that finished without a result to report.
UNSUCCESSFUL_RUN_STATUSES = ("failed", "cancelled")


def wait_for_runs(
    collector: CollectorProcess, run_ids: list[str], timeout_s: float, max_wait_s: float = 3600.0
) -> dict[str, dict[str, Any]]:
    """Poll the collector until every run is finished (succeeded, failed or cancelled) and return their details.

    A failed or cancelled run (an agent that got SIGTERM publishes what it has as ``cancelled``) is finished as it
    is; a succeeded one once every span and query the agent published has been stored (``complete``).
    ``timeout_s`` bounds a stall, not the wait: as long as the collector keeps storing the runs' spans and queries
    (a long traced run on a busy machine takes a while to ingest), waiting goes on, up to ``max_wait_s`` in all.
    """
    started = time.monotonic()
    stall_deadline = started + timeout_s
    details: dict[str, dict[str, Any]] = {}
    stored: dict[str, tuple[Any, ...]] = {}
    while time.monotonic() < min(stall_deadline, started + max_wait_s):
        for run_id in run_ids:
            if run_id in details:
                continue
            response = collector.get(run_api_path(run_id), timeout_s=5.0)
            detail = response.json() if response.status_code == 200 else {}
            # Finished, and every span and query the agent published has been stored.
            if detail.get("status") in UNSUCCESSFUL_RUN_STATUSES or (
                detail.get("status") == "succeeded" and detail.get("complete")
            ):
                details[run_id] = detail
            seen = (detail.get("status"), detail.get("received_span_count"), detail.get("received_query_count"))
            if stored.get(run_id) != seen:
                stored[run_id] = seen
                stall_deadline = time.monotonic() + timeout_s
        if len(details) == len(run_ids):
            return details
        time.sleep(_POLL_S)
    missing = ", ".join(r for r in run_ids if r not in details)
    waited = "stored nothing more of" if time.monotonic() >= stall_deadline else "had not finished"
    limit_s = timeout_s if waited == "stored nothing more of" else max_wait_s
    raise EvaluationError(
        f"the collector {waited} run(s) {missing} within {limit_s:g} s.",
        hint="See collector.log and the agents' logs in the data folder.",
    )
