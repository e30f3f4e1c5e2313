"""Fixtures of the collector's tests: its database on each backend (a SQLite file, a real PostgreSQL), migrated,
with an ingestor over it.

PostgreSQL: a server at 127.0.0.1:5432 with trust auth (database ``test``, user ``postgres`` or ``root``); a uniquely
named database is created for the session and dropped at its end, and each test starts from an empty ``public``
schema. Without a server those tests are skipped, saying why; they are marked ``postgres`` (``-m "not postgres"``
leaves them out).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mlmodelscope.collector.metrics import CollectorMetrics
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor
from mlmodelscope.collector.storage.migrations import migrate

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USERS = ("postgres", "root")
POSTGRES_ADMIN_DB = "test"


def _postgres_admin() -> tuple[Any, str] | None:
    """An autocommit connection to the admin database and the user that worked, or None when no server answers."""
    import psycopg

    for user in POSTGRES_USERS:
        try:
            connection = psycopg.connect(
                host=POSTGRES_HOST,
                port=POSTGRES_PORT,
                dbname=POSTGRES_ADMIN_DB,
                user=user,
                connect_timeout=3,
                autocommit=True,
            )
        except psycopg.Error:
            continue
        return connection, user
    return None


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this test session; its SQLAlchemy URL. Dropped afterwards."""
    admin = _postgres_admin()
    if admin is None:
        pytest.skip(
            f"no PostgreSQL server answers at {POSTGRES_HOST}:{POSTGRES_PORT} (database '{POSTGRES_ADMIN_DB}', "
            f"users {', '.join(POSTGRES_USERS)}, trust auth): the PostgreSQL backend tests need one"
        )
    connection, user = admin
    name = f"mlmodelscope_collector_test_{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        finally:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session database with an empty public schema (each test starts from nothing)."""
    import psycopg

    conninfo = postgres_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: the same test runs on a SQLite file and on a real PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The collector's database on each backend, migrated; disposed of at the end."""
    db = Database(database_url)
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def ingestor(database: Database) -> Ingestor:
    return Ingestor(database, CollectorMetrics(build_version="test"))
