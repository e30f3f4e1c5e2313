"""The collector's schema is written once, in ``storage/schema.py`` and ``storage/analysis_schema.py``; its migrations
are generated from them (``migrations/autogenerate.py``). This holds the two equal: a database migrated from empty
has exactly the tables, columns (names, types, nullability, defaults), primary keys, indexes and constraints that
the schema modules describe, the replayed history leaves the generator nothing to write, and a schema change becomes
a migration that builds it (or is refused with what to do instead).

Both sides are built in a real database of the same dialect (the migrations into one, ``metadata.create_all`` into
another) and read back with SQLAlchemy's inspector, so types are compared as the database stores them, not as two
spellings of one type in Python. SQLite always; PostgreSQL when a local server answers
(``tests/collector/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Index, Inspector, Integer, MetaData, String, Table, Text, inspect

from mlmodelscope.collector.errors import MigrationError
from mlmodelscope.collector.storage import analysis_schema, schema
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.migrations import (
    ANALYSIS_MIGRATIONS,
    ANALYSIS_TRACK,
    INGEST_TRACK,
    MIGRATIONS,
    TRACKS_DIR,
    Migration,
    analysis_schema_version,
    migrate,
)
from mlmodelscope.collector.storage.migrations.autogenerate import UnsupportedSchemaChange, file_name, pending
from mlmodelscope.collector.storage.migrations.files import history, read, render

VERSION_TABLES = {"schema_version", "analysis_schema_version"}
METADATA: tuple[MetaData, ...] = (schema.metadata, analysis_schema.metadata)


def _table(inspector: Inspector, name: str) -> dict[str, Any]:
    columns = {
        c["name"]: {"type": str(c["type"]), "nullable": c["nullable"], "default": c.get("default")}
        for c in inspector.get_columns(name)
    }
    indexes = {i["name"]: (tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(name)}
    uniques = sorted((u["name"] or "", tuple(u["column_names"])) for u in inspector.get_unique_constraints(name))
    foreign_keys = sorted(
        (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
        for f in inspector.get_foreign_keys(name)
    )
    checks = sorted(" ".join(c["sqltext"].split()) for c in inspector.get_check_constraints(name))
    return {
        "columns": columns,
        "primary key": inspector.get_pk_constraint(name)["constrained_columns"],
        "indexes": indexes,
        "unique constraints": uniques,
        "foreign keys": foreign_keys,
        "check constraints": checks,
    }


def _describe(database: Database) -> dict[str, dict[str, Any]]:
    with database.read() as connection:
        inspector = inspect(connection)
        names = set(inspector.get_table_names()) - VERSION_TABLES
        return {name: _table(inspector, name) for name in sorted(names)}


def _migrated(url: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> dict[str, dict[str, Any]]:
    database = Database(url)
    try:
        migrate(database, migrations)
        migrate(database, ANALYSIS_MIGRATIONS, versions=analysis_schema_version)
        return _describe(database)
    finally:
        database.dispose()


def _from_metadata(url: str, metadatas: tuple[MetaData, ...] = METADATA) -> dict[str, dict[str, Any]]:
    database = Database(url)
    try:
        with database.write() as connection:
            for metadata in metadatas:
                metadata.create_all(connection)
        return _describe(database)
    finally:
        database.dispose()


def _empty_again(url: str, tmp_path: Path) -> str:
    """A second empty database of the same dialect: another SQLite file, or the PostgreSQL one emptied."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'from-metadata.db'}"
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return url


def test_a_database_migrated_from_empty_is_exactly_the_schema_modules(database_url: str, tmp_path: Path) -> None:
    migrated = _migrated(database_url)
    described = _from_metadata(_empty_again(database_url, tmp_path))
    assert set(migrated) == set(described), (
        f"tables only the migrations make: {sorted(set(migrated) - set(described))}; "
        f"only schema.py/analysis_schema.py: {sorted(set(described) - set(migrated))}"
    )
    for table in sorted(described):
        for aspect, expected in described[table].items():
            assert migrated[table][aspect] == expected, (
                f"{table}: {aspect} differ between the migrations and the schema modules "
                f"(migrated: {migrated[table][aspect]}; schema modules: {expected}); a schema change needs a new "
                "migration in storage/migrations/ that makes the same change"
            )


def _differences(migrated: dict[str, dict[str, Any]], described: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{table}: {aspect}"
        for table in described
        for aspect in described[table]
        if migrated.get(table, {}).get(aspect) != described[table][aspect]
    ]


def test_the_comparison_sees_a_changed_type_a_new_column_and_an_index(tmp_path: Path) -> None:
    migrated = _migrated(f"sqlite:///{tmp_path / 'migrated.db'}")
    assert _differences(migrated, _from_metadata(f"sqlite:///{tmp_path / 'same.db'}")) == []
    changed = MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["runs"].c.accuracy_metric.type = String(64)
    changed.tables["spans"].append_column(Column("extra", Integer, nullable=True))
    Index("ix_queries_end", changed.tables["queries"].c.end_ns)
    described = _from_metadata(f"sqlite:///{tmp_path / 'changed.db'}", (changed, analysis_schema.metadata))
    assert _differences(migrated, described) == ["queries: indexes", "runs: columns", "spans: columns"]


def test_every_schema_table_is_compared() -> None:
    names = {table.name for metadata in METADATA for table in metadata.sorted_tables}
    assert {"runs", "spans", "span_batches", "dead_letters", "baselines"} <= names
    assert not names & VERSION_TABLES


def _copy_of_ingest_schema() -> MetaData:
    copy = MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def test_the_committed_history_leaves_the_generator_nothing_to_write() -> None:
    assert pending(history(TRACKS_DIR / INGEST_TRACK), schema.metadata) is None
    assert pending(history(TRACKS_DIR / ANALYSIS_TRACK), analysis_schema.metadata) is None
    for path in sorted(TRACKS_DIR.glob("*/*.json")):
        assert path.read_text(encoding="utf-8") == render(read(path)), f"{path} is not in its generated form"


def test_a_schema_change_becomes_a_migration_that_builds_it(database_url: str, tmp_path: Path) -> None:
    changed = _copy_of_ingest_schema()
    changed.tables["runs"].append_column(Column("notes", Text, nullable=True))
    Table("labels", changed, Column("run_id", String(128), primary_key=True), Column("label", Text, nullable=False))
    Index("ix_queries_end", changed.tables["queries"].c.end_ns)
    changed.remove(changed.tables["counters"])
    runs = changed.tables["runs"]
    runs.indexes.remove(next(index for index in runs.indexes if index.name == "ix_runs_labels"))
    Index("ix_runs_labels", runs.c.model, runs.c.framework)  # one column fewer: dropped, then made again
    progress = changed.tables["progress"]
    changed.remove(progress)
    kept = [c for c in progress.columns if c.name != "elapsed_s"]
    Table("progress", changed, *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in kept))
    following = pending(history(TRACKS_DIR / INGEST_TRACK), changed)
    assert following is not None
    assert [operation.describe() for operation in following.operations] == [
        "create table labels",
        "drop column progress.elapsed_s",
        "create index ix_queries_end on queries",
        "drop index ix_runs_labels on runs",
        "add column runs.notes",
        "create index ix_runs_labels on runs",
        "drop table counters",
    ]
    assert (following.version, file_name(following)) == (5, "0005_create_table_labels_and_more.json")
    path = tmp_path / file_name(following)
    path.write_text(render(following), encoding="utf-8")
    assert read(path) == following
    assert pending([*history(TRACKS_DIR / INGEST_TRACK), following], changed) is None

    fifth = Migration(following.version, following.description, following.apply)
    migrated = _migrated(database_url, (*MIGRATIONS, fifth))
    described = _from_metadata(_empty_again(database_url, tmp_path), (changed, analysis_schema.metadata))
    assert migrated == described


def test_a_change_that_needs_data_carried_across_is_refused_with_what_to_do() -> None:
    retyped = _copy_of_ingest_schema()
    retyped.tables["runs"].c.accuracy_metric.type = String(64)
    with pytest.raises(UnsupportedSchemaChange, match=r"runs\.accuracy_metric changed .* cannot alter") as caught:
        pending(history(TRACKS_DIR / INGEST_TRACK), retyped)
    assert "data step" in caught.value.hint
    required = _copy_of_ingest_schema()
    required.tables["spans"].append_column(Column("thread", Integer, nullable=False))
    with pytest.raises(UnsupportedSchemaChange, match=r"spans\.thread is new and NOT NULL"):
        pending(history(TRACKS_DIR / INGEST_TRACK), required)


def test_a_migration_file_whose_name_and_version_disagree_is_refused(tmp_path: Path) -> None:
    misnamed = tmp_path / "0007_span_batches.json"
    misnamed.write_bytes((TRACKS_DIR / INGEST_TRACK / "0004_span_batches.json").read_bytes())
    with pytest.raises(MigrationError, match=r"holds version 4, but its name says '0007'"):
        read(misnamed)
