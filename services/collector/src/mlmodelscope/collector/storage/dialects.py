"""INSERT ... ON CONFLICT on the two databases the collector runs on (SQLite and PostgreSQL).

Every write of ingestion is idempotent through ON CONFLICT, which SQLAlchemy offers per dialect only; this picks the
connection's dialect once, for every writer.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from mlmodelscope.collector.errors import CollectorError


def conflict_insert(connection: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ON CONFLICT on both of our dialects."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise CollectorError(f"unsupported database dialect '{connection.dialect.name}'")
