"""A read that the database refuses because of the data it holds (``StoredDataError``) is answered with a problem
detail (RFC 9457) naming the run, what the database said and how to fix it; never a bare 500, never "database
unavailable" (the database is up: a retry would not help, and checking the server would send the user astray).

The data error is real: a SQLite file whose ``progress`` table (read for a run's detail, not at startup) has its
root b-tree page damaged, so SQLite answers "database disk image is malformed" to the run's reads while the rest
of the database still works.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from mlmodelscope.collector.metrics import CollectorMetrics
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.migrations import migrate
from tests.support import collector as fixtures

RUN_ID = "run-damaged"


def _damage_table(path: Path, table: str) -> None:
    """Overwrite the b-tree page type of ``table``'s root page with an invalid one (0x00)."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        (root_page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    connection.close()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    with path.open("r+b") as database_file:
        database_file.seek((root_page - 1) * page_size)
        assert database_file.read(1) in (b"\x0d", b"\x05")  # a table b-tree page, leaf or interior
        database_file.seek((root_page - 1) * page_size)
        database_file.write(b"\x00")


@pytest.fixture
def damaged_database(tmp_path: Path) -> str:
    path = tmp_path / "collector.db"
    url = f"sqlite:///{path}"
    database = Database(url)
    try:
        migrate(database)
        ingestor = Ingestor(database, CollectorMetrics(build_version="test"))
        for envelope in fixtures.full_run(RUN_ID):
            ingestor.ingest(envelope)
        ingestor.ingest(fixtures.run_started("run-healthy"))
    finally:
        database.dispose()
    _damage_table(path, "progress")
    return url


def test_a_stored_data_error_is_a_problem_detail_naming_the_run_and_the_fix(damaged_database: str) -> None:
    async def scenario() -> None:
        async with fixtures.running_app(fixtures.settings_for(damaged_database)) as app:
            response = await app.client.get(f"/api/v1/runs/{RUN_ID}")
            assert response.status_code == 500, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "retry-after" not in response.headers
            problem = response.json()
            assert problem["status"] == 500
            assert problem["run_id"] == RUN_ID
            assert problem["instance"] == f"/api/v1/runs/{RUN_ID}"
            assert RUN_ID in problem["detail"] and "malformed" in problem["detail"], problem
            assert "unavailable" not in response.text
            assert "backup" in problem["hint"] and "runs import" in problem["hint"], problem
            assert {"type", "title"} <= problem.keys()

            # The same on the run's page, as an HTML error page.
            page = await app.client.get(f"/ui/runs/{RUN_ID}")
            assert page.status_code == 500, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert RUN_ID in page.text and "malformed" in page.text and "unavailable" not in page.text

            # What does not read the damaged table still works: the collector is up, its database answers.
            listed = await app.client.get("/api/v1/runs")
            assert listed.status_code == 200, listed.text
            assert {run["run_id"] for run in listed.json()["items"]} >= {RUN_ID, "run-healthy"}

    asyncio.run(scenario())
