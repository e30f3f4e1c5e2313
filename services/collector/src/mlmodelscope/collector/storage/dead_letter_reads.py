"""Reads of the dead-letter table for the API: newest first, filtered by reason or run, paged."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from mlmodelscope.collector.storage import schema

_dead_letters = schema.dead_letters


def list_dead_letters(
    connection: Connection, *, reason: str | None, run_id: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """(how many match, one page of them as column dicts, newest first)."""
    conditions = []
    if reason is not None:
        conditions.append(_dead_letters.c.reason == reason)
    if run_id is not None:
        conditions.append(_dead_letters.c.run_id == run_id)
    total = connection.execute(select(func.count()).select_from(_dead_letters).where(*conditions)).scalar_one()
    rows = connection.execute(
        select(_dead_letters).where(*conditions).order_by(_dead_letters.c.id.desc()).limit(limit).offset(offset)
    ).mappings()
    return int(total), [dict(row) for row in rows]
