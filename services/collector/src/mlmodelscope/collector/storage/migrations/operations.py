"""The operations a migration file holds, and the one translation between them and SQLAlchemy.

Why this exists: the tables are written once, in ``storage/schema.py`` and ``storage/analysis_schema.py``. A
migration is not a second hand-written copy of them but a *record* of the operations that took the database from one
version to the next, written by ``autogenerate`` from the difference between the schema modules and the replay of
the history (as Django's ``makemigrations`` or Alembic's autogenerate do), and committed as JSON. These pydantic
models are that file format (so a damaged file is refused with the field that is wrong), and each operation knows
two things:

* ``apply(connection)``: the DDL it makes in a real database (SQLAlchemy's, for SQLite and PostgreSQL alike);
* ``forward(state)``: the change it makes to the *described* schema (``TableSpec`` per table), with no database,
  so the history can be replayed and compared with the schema modules.

Columns are described by their SQLAlchemy type name and arguments, the same words as in the schema modules. A
``data_step`` names a hand-written function of ``data_steps`` (copying or back-filling rows); it is the one part
of a migration file written by hand.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.schema import CreateColumn
from sqlalchemy.types import TypeEngine

from mlmodelscope.collector.storage.migrations import data_steps

TYPES: dict[str, type[TypeEngine[Any]]] = {
    cls.__name__: cls for cls in (String, Text, Integer, BigInteger, Float, Boolean, DateTime, JSON, LargeBinary)
}
TypeName = Literal["String", "Text", "Integer", "BigInteger", "Float", "Boolean", "DateTime", "JSON", "LargeBinary"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnType(_Spec):
    """A column's SQLAlchemy type: ``String`` with its ``length``, ``DateTime`` with ``timezone``, or a bare one."""

    name: TypeName
    length: int | None = None
    timezone: bool = False

    def build(self) -> TypeEngine[Any]:
        if self.name == "String":
            return String(self.length)
        if self.name == "DateTime":
            return DateTime(timezone=self.timezone)
        return TYPES[self.name]()


class ColumnSpec(_Spec):
    name: str
    type: ColumnType
    nullable: bool
    primary_key: bool = False
    autoincrement: bool | Literal["auto"] = "auto"

    def build(self) -> Column[object]:
        return Column(
            self.name,
            self.type.build(),
            primary_key=self.primary_key,
            nullable=self.nullable,
            autoincrement=self.autoincrement,
        )


class IndexSpec(_Spec):
    name: str
    columns: tuple[str, ...]
    unique: bool = False


class TableSpec(_Spec):
    """A table as a migration describes it: its columns in order and its indexes by name."""

    name: str
    columns: tuple[ColumnSpec, ...]
    indexes: tuple[IndexSpec, ...] = ()

    def changed(
        self, *, add: ColumnSpec | IndexSpec | None = None, drop_column: str = "", drop_index: str = ""
    ) -> TableSpec:
        """This table with one column or index added, or one dropped by name."""
        columns = tuple(c for c in self.columns if c.name != drop_column)
        indexes = tuple(i for i in self.indexes if i.name != drop_index)
        if isinstance(add, ColumnSpec):
            columns += (add,)
        elif isinstance(add, IndexSpec):
            indexes += (add,)
        return self.model_copy(update={"columns": columns, "indexes": indexes})

    def build(self, metadata: MetaData) -> Table:
        table = Table(self.name, metadata, *(column.build() for column in self.columns))
        for index in self.indexes:
            Index(index.name, *(table.c[name] for name in index.columns), unique=index.unique)
        return table


State = dict[str, TableSpec]


def _reflected(connection: Connection, table: str) -> Table:
    return Table(table, MetaData(), autoload_with=connection)


def _quoted(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


class CreateTable(_Spec):
    op: Literal["create_table"] = "create_table"
    table: TableSpec

    def apply(self, connection: Connection) -> None:
        metadata = MetaData()
        self.table.build(metadata)
        metadata.create_all(connection, checkfirst=False)

    def forward(self, state: State) -> None:
        state[self.table.name] = self.table

    def describe(self) -> str:
        return f"create table {self.table.name}"


class DropTable(_Spec):
    op: Literal["drop_table"] = "drop_table"
    table: str

    def apply(self, connection: Connection) -> None:
        _reflected(connection, self.table).drop(connection)

    def forward(self, state: State) -> None:
        del state[self.table]

    def describe(self) -> str:
        return f"drop table {self.table}"


class AddColumn(_Spec):
    op: Literal["add_column"] = "add_column"
    table: str
    column: ColumnSpec

    def apply(self, connection: Connection) -> None:
        definition = CreateColumn(self.column.build()).compile(dialect=connection.dialect)
        connection.execute(text(f"ALTER TABLE {_quoted(connection, self.table)} ADD COLUMN {definition}"))

    def forward(self, state: State) -> None:
        state[self.table] = state[self.table].changed(add=self.column)

    def describe(self) -> str:
        return f"add column {self.table}.{self.column.name}"


class DropColumn(_Spec):
    op: Literal["drop_column"] = "drop_column"
    table: str
    column: str

    def apply(self, connection: Connection) -> None:
        table, column = _quoted(connection, self.table), _quoted(connection, self.column)
        connection.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))

    def forward(self, state: State) -> None:
        state[self.table] = state[self.table].changed(drop_column=self.column)

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column}"


class CreateIndex(_Spec):
    op: Literal["create_index"] = "create_index"
    table: str
    index: IndexSpec

    def apply(self, connection: Connection) -> None:
        table = _reflected(connection, self.table)
        Index(self.index.name, *(table.c[c] for c in self.index.columns), unique=self.index.unique).create(connection)

    def forward(self, state: State) -> None:
        state[self.table] = state[self.table].changed(add=self.index)

    def describe(self) -> str:
        return f"create index {self.index.name} on {self.table}"


class DropIndex(_Spec):
    op: Literal["drop_index"] = "drop_index"
    table: str
    index: str

    def apply(self, connection: Connection) -> None:
        connection.execute(text(f"DROP INDEX {_quoted(connection, self.index)}"))

    def forward(self, state: State) -> None:
        state[self.table] = state[self.table].changed(drop_index=self.index)

    def describe(self) -> str:
        return f"drop index {self.index} on {self.table}"


class DataStep(_Spec):
    """Rows copied or filled in by a hand-written function of ``data_steps``; the described schema is unchanged."""

    op: Literal["data_step"] = "data_step"
    step: data_steps.StepName

    def apply(self, connection: Connection) -> None:
        data_steps.STEPS[self.step](connection)

    def forward(self, state: State) -> None:
        return None

    def describe(self) -> str:
        return f"data step {self.step}"


Operation = Annotated[
    CreateTable | DropTable | AddColumn | DropColumn | CreateIndex | DropIndex | DataStep, Field(discriminator="op")
]


class MigrationFile(_Spec):
    """One committed migration: ``generated_by`` says where it came from; the operations run in order."""

    generated_by: str
    version: int = Field(ge=1)
    description: str = Field(min_length=1, max_length=256)
    operations: tuple[Operation, ...] = Field(min_length=1)

    def apply(self, connection: Connection) -> None:
        for operation in self.operations:
            operation.apply(connection)


def column_spec(column: Column[object]) -> ColumnSpec:
    """How a migration describes a column of the schema modules; a type it cannot describe is refused by name."""
    column_type = column.type
    name = type(column_type).__name__
    if name not in TYPES:
        raise ValueError(
            f"column {column.table.name}.{column.name} has type {name}, which migrations cannot describe yet; "
            f"use one of {', '.join(TYPES)} or add the type to storage/migrations/operations.py"
        )
    if column.server_default is not None or column.default is not None:
        raise ValueError(
            f"column {column.table.name}.{column.name} has a default, which migrations cannot describe yet; "
            "fill the values in a data step (storage/migrations/data_steps.py) instead"
        )
    return ColumnSpec(
        name=column.name,
        type=ColumnType(
            name=name,
            length=getattr(column_type, "length", None) if name == "String" else None,
            timezone=bool(getattr(column_type, "timezone", False)) if name == "DateTime" else False,
        ),
        nullable=bool(column.nullable),
        primary_key=column.primary_key,
        autoincrement=column.autoincrement if isinstance(column.autoincrement, bool) else "auto",
    )


def table_spec(table: Table) -> TableSpec:
    indexes = sorted(table.indexes, key=lambda index: str(index.name))
    return TableSpec(
        name=table.name,
        columns=tuple(column_spec(column) for column in table.columns),
        indexes=tuple(
            IndexSpec(name=str(index.name), columns=tuple(c.name for c in index.columns), unique=bool(index.unique))
            for index in indexes
        ),
    )
