"""Analysis schema version 1: baselines per (model, framework, arch, accelerator, scenario, batch size) and the
regression check of each run against its baseline (frozen as they were at this version)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Connection, DateTime, Float, Integer, MetaData, String, Table


def apply(connection: Connection) -> None:
    metadata = MetaData()
    Table(
        "baselines",
        metadata,
        Column("model", String(256), primary_key=True),
        Column("framework", String(256), primary_key=True),
        Column("arch", String(64), primary_key=True),
        Column("accelerator", String(256), primary_key=True),
        Column("scenario", String(64), primary_key=True),
        Column("batch_size", Integer, primary_key=True, autoincrement=False),
        Column("run_id", String(128), nullable=False),
        Column("set_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "regression_checks",
        metadata,
        Column("run_id", String(128), primary_key=True),
        Column("baseline_run_id", String(128), nullable=False),
        Column("model", String(256), nullable=False),
        Column("framework", String(256), nullable=False),
        Column("arch", String(64), nullable=False),
        Column("accelerator", String(256), nullable=False),
        Column("scenario", String(64), nullable=False),
        Column("batch_size", Integer, nullable=False),
        Column("regressed", Boolean, nullable=False),
        Column("p99_ratio", Float, nullable=False),
        Column("throughput_ratio", Float, nullable=False),
        Column("report", JSON, nullable=False),
        Column("checked_at", DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(connection, checkfirst=False)
