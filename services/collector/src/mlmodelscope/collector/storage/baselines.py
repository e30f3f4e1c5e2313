"""Reads and writes of baselines and regression checks (the analysis tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select

from mlmodelscope.collector.storage import schema
from mlmodelscope.collector.storage.analysis_schema import LABEL_NAMES, baselines, regression_checks
from mlmodelscope.collector.storage.timeutil import now

_runs = schema.runs


def labels_of_run(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The baseline key of a run (None while a placeholder without labels)."""
    if any(run.get(name) is None for name in LABEL_NAMES):
        return None
    return {name: run[name] for name in LABEL_NAMES}


def set_baseline(connection: Connection, labels: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    key = [baselines.c[name] == labels[name] for name in LABEL_NAMES]
    connection.execute(delete(baselines).where(*key))
    row = {**labels, "run_id": run_id, "set_at": now()}
    connection.execute(insert(baselines).values(**row))
    return row


def delete_baseline_of_run(connection: Connection, run_id: str) -> int:
    return int(connection.execute(delete(baselines).where(baselines.c.run_id == run_id)).rowcount)


def baseline_for(connection: Connection, labels: Mapping[str, Any]) -> dict[str, Any] | None:
    row = connection.execute(
        select(baselines).where(*[baselines.c[name] == labels[name] for name in LABEL_NAMES])
    ).first()
    return None if row is None else dict(row._mapping)


def list_baselines(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(select(baselines).order_by(*[baselines.c[name] for name in LABEL_NAMES]))
    return [dict(row._mapping) for row in rows]


def unchecked_candidates(connection: Connection) -> list[str]:
    """Succeeded runs that finished after the baseline of their labels was set and have no check yet."""
    joined = _runs.join(baselines, and_(*[_runs.c[name] == baselines.c[name] for name in LABEL_NAMES]))
    statement = (
        select(_runs.c.run_id)
        .select_from(joined)
        .where(
            _runs.c.status == "succeeded",
            _runs.c.run_id != baselines.c.run_id,
            _runs.c.finished_at >= baselines.c.set_at,
            _runs.c.run_id.not_in(select(regression_checks.c.run_id)),
        )
        .order_by(_runs.c.finished_at)
    )
    return [str(run_id) for run_id in connection.execute(statement).scalars()]


def record_check(connection: Connection, row: Mapping[str, Any]) -> None:
    connection.execute(insert(regression_checks).values(**row, checked_at=now()))


def get_check(connection: Connection, run_id: str) -> dict[str, Any] | None:
    row = connection.execute(select(regression_checks).where(regression_checks.c.run_id == run_id)).first()
    return None if row is None else dict(row._mapping)


def all_checks(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(select(regression_checks).order_by(regression_checks.c.checked_at))
    return [dict(row._mapping) for row in rows]
