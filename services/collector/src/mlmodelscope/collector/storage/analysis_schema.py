"""The analysis tables (baselines, regression checks): their own ``MetaData`` and migration track.

They are built by ``migrations.ANALYSIS_MIGRATIONS`` (the files of ``migrations/analysis/``, version table
``analysis_schema_version``), separately from the ingest schema in ``schema.py``, so the ingest path's history is
untouched by the UI's features. ``make generate`` writes the migration a change here needs.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, MetaData, String, Table

metadata = MetaData()

LABEL_NAMES = ("model", "framework", "arch", "accelerator", "scenario", "batch_size")

# The baseline run of each (model, framework, hardware, scenario, batch size): new runs are compared with it.
baselines = Table(
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

# One check per run that finished after the baseline of its labels was set; ``report`` is the full verdict.
regression_checks = Table(
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
