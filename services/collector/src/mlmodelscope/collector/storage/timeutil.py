"""UTC instants in and out of the database: SQLite hands back naive datetimes, so we re-attach UTC on the way out."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def now() -> datetime:
    return datetime.now(UTC)
