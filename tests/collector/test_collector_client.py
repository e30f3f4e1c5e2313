"""The one collector client (core.collector_client) against a real collector process: documents, missing ones,
refusals and an unreachable collector each come back as what the module docstring promises."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlmodelscope.cli.nats_server import free_port
from mlmodelscope.core.collector_client import (
    AsyncCollectorClient,
    CollectorAnswerError,
    CollectorClient,
    CollectorUnavailableError,
    interpret,
)
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.errors import TransientError
from tests.support import edge_cases as edges

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("client")
    url = f"sqlite:///{folder / 'collector.db'}"
    asyncio.run(edges.store_edge_cases(url))
    with edges.served_collector(url, folder / "collector.log") as served:
        yield served


def test_documents_missing_runs_and_refusals(collector_url: str) -> None:
    with CollectorClient(collector_url) as client:
        run = client.run(edges.ZERO_RUN)
        assert run is not None and run["run_id"] == edges.ZERO_RUN
        assert client.run("no-such-run") is None
        assert client.result(edges.NO_RESULT_RUN) is None
        with pytest.raises(CollectorAnswerError, match="answered 404") as refused:
            client.get_json(run_api_path("no-such-run"))
        assert refused.value.status == 404 and "runs list" in refused.value.hint
        deep = run_api_path(edges.ZERO_RUN, "trace") + "?level=deep"
        with pytest.raises(CollectorAnswerError) as invalid:
            client.get_json(deep)
        assert invalid.value.status == 422 and not isinstance(invalid.value, TransientError)
        assert client.get_json(deep, missing=frozenset({422})) is None


def test_the_async_client_reads_the_same(collector_url: str) -> None:
    async def read() -> tuple[object, object]:
        client = AsyncCollectorClient(collector_url)
        try:
            return await client.run(edges.ZERO_RUN), await client.run("no-such-run")
        finally:
            await client.close()

    found, missing = asyncio.run(read())
    assert isinstance(found, dict) and found["run_id"] == edges.ZERO_RUN and missing is None


def test_no_answer_and_a_5xx_are_transient(tmp_path: Path) -> None:
    with CollectorClient(f"http://127.0.0.1:{free_port()}", timeout_s=2.0) as client:
        with pytest.raises(CollectorUnavailableError, match="did not answer") as unreachable:
            client.run("r")
        with pytest.raises(CollectorUnavailableError):
            client.download("/api/v1/runs/r/trace", tmp_path / "t.json")
    assert isinstance(unreachable.value, TransientError) and isinstance(unreachable.value.__cause__, httpx.HTTPError)
    response = httpx.Response(503, json={"detail": "database unavailable"})
    with pytest.raises(CollectorUnavailableError, match="503: database unavailable"):
        interpret(response, "/api/v1/runs")
