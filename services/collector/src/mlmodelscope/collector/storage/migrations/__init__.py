"""A small versioned migration runner: a ``schema_version`` table plus an ordered list of migrations.

We use this rather than Alembic because the collector has one schema, two dialects that SQLAlchemy's DDL already
covers, and must migrate itself at startup inside the service (no ``alembic.ini``, no script folder to ship, no
extra dependency). Each migration is a function of a connection; ``migrate`` applies the missing ones in order, in
one transaction (DDL is transactional on PostgreSQL and, with our ``BEGIN IMMEDIATE``, on SQLite), recording each
version. On PostgreSQL an advisory lock makes two collectors starting at once apply them exactly once; on SQLite the
write lock does the same. A database newer than this code is refused rather than guessed at.

The migrations of a track are the JSON files of its folder (``ingest/`` for ``schema.py``, ``analysis/`` for
``analysis_schema.py``), written by ``autogenerate`` from the schema module (``make generate``) and frozen once
released: each records the operations (``operations.py``) that took the tables from the version before to its own,
never the schema module itself, so replaying history always builds the same database. A test checks that a database
migrated from empty equals the schema modules, and ``scripts/generate.py --check`` that no schema change lacks its
file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, func, insert, select, text

from mlmodelscope.collector.errors import MigrationError
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.migrations.files import history

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


TRACKS_DIR = Path(__file__).resolve().parent
INGEST_TRACK, ANALYSIS_TRACK = "ingest", "analysis"


def load_track(name: str, root: Path = TRACKS_DIR) -> tuple[Migration, ...]:
    """A track's committed migration files as runnable migrations, in version order."""
    return tuple(Migration(m.version, m.description, m.apply) for m in history(root / name))


MIGRATIONS: tuple[Migration, ...] = load_track(INGEST_TRACK)

# A second, independent track for the analysis tables (baselines, regression checks) with its own version table,
# so the ingest schema's history stays exactly as it was and either track can evolve without renumbering the other.
analysis_schema_version = Table(
    "analysis_schema_version",
    _runner_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(256), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)
ANALYSIS_MIGRATIONS: tuple[Migration, ...] = load_track(ANALYSIS_TRACK)


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
