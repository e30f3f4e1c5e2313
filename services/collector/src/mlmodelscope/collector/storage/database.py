"""The engine and its transactions, for SQLite (the default, a file) and PostgreSQL (``postgresql+psycopg://``).

Everything that touches the database goes through ``Database.write()`` / ``Database.read()``, which turn "the
database is not there" (connection refused, dropped, locked too long) into ``DatabaseUnavailableError`` with the
driver's exception as the cause: the API answers 503 with it and the consumer naks the message for later. An
error the database raises because of the data (SQLite's "integer overflow", a value out of a column's range, a
constraint) is ``StoredDataError`` instead: it is not transient, and saying "unavailable" would send the user
looking for a server problem that does not exist.

SQLite needs two adjustments to behave like a real transactional database: Python's ``sqlite3`` module does not
begin a transaction before DDL (so migrations would not be atomic) and begins writers lazily (so two writers can
deadlock on the lock upgrade instead of waiting). We therefore take over ``BEGIN`` ourselves: ``BEGIN IMMEDIATE``
for writers, ``BEGIN`` for readers, with WAL so readers never wait for the writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from mlmodelscope.collector.errors import CollectorError, DatabaseUnavailableError, StoredDataError

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_WRITE_OPTION = "mlmodelscope_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 5
# SQLite's primary result codes that mean "the database cannot be used right now" (busy, locked, I/O, cannot
# open, full, protocol). Every other OperationalError of SQLite (SQLITE_ERROR: "integer overflow", "no such
# table") is about the statement or the data.
SQLITE_UNAVAILABLE_CODES = frozenset({5, 6, 7, 10, 13, 14, 15})


def redact(url: URL) -> str:
    return url.render_as_string(hide_password=True)


class Database:
    """One engine plus transaction helpers; cheap to create, connects lazily."""

    def __init__(self, url: str) -> None:
        try:
            self.url = make_url(url)
        except ArgumentError as e:
            raise CollectorError(
                f"invalid database URL '{url}'",
                hint="Use sqlite:///path/to/collector.db or postgresql+psycopg://user@host:5432/dbname.",
            ) from e
        dialect = self.url.get_backend_name()
        if dialect not in SUPPORTED_DIALECTS:
            raise CollectorError(
                f"unsupported database '{dialect}' in {redact(self.url)}",
                hint="The collector supports sqlite:/// files and postgresql+psycopg:// servers.",
            )
        if dialect == "sqlite":
            self.engine = self._sqlite_engine()
        else:
            self.engine = create_engine(
                self.url, pool_pre_ping=True, connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
            )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        return redact(self.url)

    def _sqlite_engine(self) -> Engine:
        database = self.url.database
        if not database or database == ":memory:":
            raise CollectorError(
                "the collector needs a SQLite file, not an in-memory database",
                hint="Use sqlite:///path/to/collector.db.",
            )
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see the module docstring)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            write = connection.get_execution_options().get(_WRITE_OPTION, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One read-write transaction: committed when the block ends, rolled back if it raises."""
        with self._translate_errors(), self.engine.connect() as connection:
            connection = connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction (a consistent snapshot on both dialects)."""
        with self._translate_errors(), self.engine.connect() as connection, connection.begin():
            yield connection

    def ping(self) -> None:
        """Raise DatabaseUnavailableError unless a trivial query answers."""
        with self.read() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as e:
            if _is_sqlite_data_error(e):
                raise StoredDataError(
                    f"the database {self.describe()} refused a statement because of its data: {_first_line(e)}"
                ) from e
            raise DatabaseUnavailableError(
                f"the database {self.describe()} is unavailable: {_first_line(e)}",
                hint="Check that the database server is running and reachable; the collector retries.",
            ) from e
        except DBAPIError as e:
            if e.connection_invalidated:
                raise DatabaseUnavailableError(f"the connection to {self.describe()} was lost: {_first_line(e)}") from e
            raise StoredDataError(
                f"the database {self.describe()} refused a statement because of its data: {_first_line(e)}"
            ) from e


def _is_sqlite_data_error(error: DBAPIError) -> bool:
    """A SQLite OperationalError whose primary result code is not one of "cannot be used right now"."""
    code = getattr(error.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) not in SQLITE_UNAVAILABLE_CODES


def _first_line(error: DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
