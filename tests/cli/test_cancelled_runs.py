"""A run its agent published as ``cancelled`` (SIGTERM) is a finished, non-successful run for every client of the
collector: the CLI's ``wait_for_runs`` returns it instead of waiting until its deadline, ``evaluate`` reports it as
cancelled, and the operator's run state is ``Failed`` with a message starting ``cancelled:``. The clients build
every run URL with ``run_api_path``, so an id holding ``/ ? # %`` or a space is one path segment.

The collector is the real one (``python -m mlmodelscope.collector.main`` on a SQLite file, started by the CLI's own
``CollectorProcess``); its runs are stored by the collector's ingest code, as consumed messages would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from mlmodelscope.cli.agent_runs import _unsuccessful
from mlmodelscope.cli.local import CollectorProcess, wait_for_runs
from mlmodelscope.collector.metrics import CollectorMetrics
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.migrations import migrate
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.messages import Envelope, RunFinished, message_id
from mlmodelscope.operator import planning
from mlmodelscope.operator.errors import ResultsUnavailableError
from mlmodelscope.operator.planning import PlannedRun
from mlmodelscope.operator.results import CollectedRun, RunResultReader
from mlmodelscope.operator.settings import OperatorSettings
from mlmodelscope.operator.status import run_status
from tests.support.collector import full_run, run_started
from tests.support.operator_catalog import digits_catalog, digits_evaluation_spec

CANCELLED_ERROR = "cancelled: the agent received SIGTERM during the performance phase, after 1,234 queries."


def _cancelled(run_id: str) -> Envelope:
    payload = RunFinished(status="cancelled", error=CANCELLED_ERROR, span_count=0, query_count=0)
    return Envelope(message_id=message_id(run_id, "run_finished", 0), run_id=run_id, sequence=0, payload=payload)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """A real collector (no NATS) over a database holding run ``done`` (succeeded) and ``stopped`` (cancelled)."""
    workdir = tmp_path_factory.mktemp("collector")
    database_url = f"sqlite:///{workdir / 'runs.db'}"
    database = Database(database_url)
    try:
        migrate(database)
        ingestor = Ingestor(database, CollectorMetrics(build_version="test"))
        for envelope in [*full_run("done"), run_started("stopped"), _cancelled("stopped")]:
            ingestor.ingest(envelope)
    finally:
        database.dispose()
    process = CollectorProcess(database_url, None, workdir / "collector.log")
    process.start(timeout_s=60.0)
    try:
        yield process
    finally:
        process.stop()


def test_wait_for_runs_returns_a_cancelled_run_as_finished(collector: CollectorProcess) -> None:
    details = wait_for_runs(collector, ["done", "stopped"], timeout_s=30.0)
    assert details["done"]["status"] == "succeeded"
    assert details["stopped"]["status"] == "cancelled"
    assert _unsuccessful(details["stopped"]) == CANCELLED_ERROR


@pytest.mark.parametrize(
    ("detail", "reported"),
    [
        ({"status": "cancelled", "error": ""}, "cancelled"),
        ({"status": "cancelled", "error": "stopped by the user"}, "cancelled: stopped by the user"),
        ({"status": "cancelled", "error": CANCELLED_ERROR}, CANCELLED_ERROR),
        ({"status": "failed", "error": "model load failed"}, "model load failed"),
        ({"status": "failed", "error": ""}, "failed"),
    ],
)
def test_evaluate_reports_a_cancelled_run_as_cancelled(detail: dict[str, str], reported: str) -> None:
    assert _unsuccessful(detail) == reported


def _planned(run_id: str) -> PlannedRun:
    """A run as the operator plans it (digits-cnn on onnxruntime), under the given run id and Job name."""
    [planned] = planning.plan("ev", "uid-1", digits_evaluation_spec(), digits_catalog(), OperatorSettings())
    return dataclasses.replace(planned, job_name=f"job-{run_id}", run_id=run_id)


def _job(condition: str) -> dict[str, object]:
    return {"status": {"conditions": [{"type": condition, "status": "True"}], "failed": 1}}


def test_the_operator_reads_a_cancelled_run_and_marks_it_failed_as_cancelled(collector: CollectorProcess) -> None:
    async def read() -> tuple[CollectedRun | None, CollectedRun | None]:
        client = RunResultReader(collector.url, timeout_s=10.0)
        try:
            return await client.run("stopped"), await client.run("done")
        finally:
            await client.close()

    stopped, done = asyncio.run(read())
    assert stopped is not None and stopped.status == "cancelled" and stopped.result is None
    assert done is not None and done.status == "succeeded" and done.result is not None
    # Whatever the Job reports (complete, or failed after the agent's exit 143), the run is finished: Failed.
    for condition in ("Complete", "Failed"):
        state = run_status(_planned("stopped"), _job(condition), stopped)
        assert state.state == "Failed", (condition, state)
        assert state.message.startswith("cancelled:"), state.message
        assert "SIGTERM" in state.message and state.result is None
    assert run_status(_planned("done"), _job("Complete"), done).state == "Succeeded"


def test_an_empty_cancellation_error_still_says_cancelled() -> None:
    collected = CollectedRun(status="cancelled", error="", result=None)
    state = run_status(_planned("stopped"), _job("Complete"), collected)
    assert state.state == "Failed" and state.message.startswith("cancelled:"), state


@pytest.mark.parametrize(
    ("run_id", "resource", "path"),
    [
        ("a/b", (), "/api/v1/runs/a%2Fb"),
        ("done?x=1", ("result",), "/api/v1/runs/done%3Fx%3D1/result"),
        ("done#frag", ("trace",), "/api/v1/runs/done%23frag/trace"),
        ("my run", ("regression",), "/api/v1/runs/my%20run/regression"),
        ("100%", (), "/api/v1/runs/100%25"),
        ("plain-id_1", ("result",), "/api/v1/runs/plain-id_1/result"),
    ],
)
def test_run_api_path_encodes_the_id_as_one_segment(run_id: str, resource: tuple[str, ...], path: str) -> None:
    assert run_api_path(run_id, *resource) == path


@pytest.mark.parametrize("suffix", ["?x=1", "#frag", " x", "%3F"])
def test_clients_never_read_another_run_through_a_hostile_id(collector: CollectorProcess, suffix: str) -> None:
    """``done`` + suffix is not run ``done``: unencoded, ``done?x=1`` and ``done#frag`` asked for run ``done``.

    The collector refuses such an id (422: outside the id pattern) or does not know it (404); either way the
    operator's client never returns run ``done``'s record for it."""
    hostile = f"done{suffix}"

    async def read() -> CollectedRun | ResultsUnavailableError | None:
        client = RunResultReader(collector.url, timeout_s=10.0)
        try:
            return await client.run(hostile)
        except ResultsUnavailableError as e:
            return e
        finally:
            await client.close()

    answer = asyncio.run(read())
    assert not isinstance(answer, CollectedRun), answer
    if answer is not None:
        assert "%" in answer.message and f"/{hostile}" not in answer.message, answer.message
    response = httpx.get(f"{collector.url}{run_api_path(hostile)}", timeout=10.0)
    assert response.status_code in (404, 422), response.text
    assert collector.get(run_api_path("done"), timeout_s=10.0).json()["run_id"] == "done"


def test_wait_for_runs_asks_for_the_encoded_id(collector: CollectorProcess) -> None:
    """An id that is not stored is waited for (and named), never answered by run ``done``'s record."""
    with pytest.raises(EvaluationError, match=r"done\?x=1"):
        wait_for_runs(collector, ["done?x=1"], timeout_s=1.0)
