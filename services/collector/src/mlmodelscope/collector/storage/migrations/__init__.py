"""A small versioned migration runner: a ``schema_version`` table plus an ordered list of migration functions.

We use this rather than Alembic because the collector has one schema, two dialects that SQLAlchemy's DDL already
covers, and must migrate itself at startup inside the service (no ``alembic.ini``, no script folder to ship, no
extra dependency). Each migration is a function of a connection; ``migrate`` applies the missing ones in order, in
one transaction (DDL is transactional on PostgreSQL and, with our ``BEGIN IMMEDIATE``, on SQLite), recording each
version. On PostgreSQL an advisory lock makes two collectors starting at once apply them exactly once; on SQLite the
write lock does the same. A database newer than this code is refused rather than guessed at.

A migration never imports ``storage.schema``: it describes the tables as they were at its version, so replaying
history always builds the same database. ``schema.py`` must equal the result of all migrations (a test checks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, func, insert, select, text

from mlmodelscope.collector.errors import MigrationError
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.migrations import (
    a0001_baselines,
    v0001_initial,
    v0002_dead_letters,
    v0003_accuracy_metric,
    v0004_span_batches,
)

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key: any constant unique to this application ("MLMS" in ASCII).
_ADVISORY_LOCK_KEY = 0x4D4C4D53

_runner_metadata = MetaData()
schema_version = Table(
    "schema_version",
    _runner_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(256), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, spans, queries, ingested_messages, progress, rejected_messages, counters", v0001_initial.apply),
    Migration(2, "dead_letters (replaces rejected_messages, rows copied)", v0002_dead_letters.apply),
    Migration(
        3, "runs.accuracy_metric, runs.accuracy_value (every task's primary figure)", v0003_accuracy_metric.apply
    ),
    Migration(4, "span_batches (columnar spans, one row per message)", v0004_span_batches.apply),
)

# A second, independent track for the analysis tables (baselines, regression checks) with its own version table,
# so the ingest schema's history stays exactly as it was and either track can evolve without renumbering the other.
analysis_schema_version = Table(
    "analysis_schema_version",
    _runner_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(256), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)
ANALYSIS_MIGRATIONS: tuple[Migration, ...] = (Migration(1, "baselines, regression_checks", a0001_baselines.apply),)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def current_version(connection: Connection, versions: Table = schema_version) -> int:
    """The highest applied version, 0 for an empty database."""
    versions.create(connection, checkfirst=True)
    return int(connection.execute(select(func.coalesce(func.max(versions.c.version), 0))).scalar_one())


def migrate(
    database: Database, migrations: Sequence[Migration] = MIGRATIONS, *, versions: Table = schema_version
) -> list[int]:
    """Bring the schema to the latest version; returns the versions applied now (empty when already current).

    ``versions`` is the track's version table (``schema_version``, or ``analysis_schema_version`` with
    ``ANALYSIS_MIGRATIONS``)."""
    _check_order(migrations)
    with database.write() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        current = current_version(connection, versions)
        latest = latest_version(migrations)
        if current > latest:
            raise MigrationError(
                f"the database {database.describe()} has schema version {current}, newer than this collector's "
                f"{latest}",
                hint="Upgrade the collector, or point it at another database.",
            )
        applied: list[int] = []
        for migration in migrations:
            if migration.version <= current:
                continue
            log.info("applying schema migration %d: %s", migration.version, migration.description)
            try:
                migration.apply(connection)
            except Exception as e:
                raise MigrationError(
                    f"schema migration {migration.version} ({migration.description}) failed on "
                    f"{database.describe()}: {e}"
                ) from e
            connection.execute(
                insert(versions).values(
                    version=migration.version, description=migration.description, applied_at=datetime.now(UTC)
                )
            )
            applied.append(migration.version)
    return applied


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migrations must be numbered 1, 2, 3, ... in order; got {versions}")
