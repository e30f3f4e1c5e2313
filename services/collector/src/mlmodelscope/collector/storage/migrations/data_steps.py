"""The hand-written part of migrations: rows copied or filled in when a schema change alone would lose or leave them.

A generated migration file holds DDL only; where an upgrade must carry data across (a table replaced by another,
a new column computed from an old one), its file names one of these functions in a ``data_step`` operation, in the
place among the operations where it must run. Each reads the tables it touches by reflection, as they are at that
point of the history, and never imports ``storage.schema``: replaying the history must always do the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, MetaData, Table, literal, null, select, update

StepName = Literal["copy_rejected_messages_to_dead_letters", "fill_accuracy_metric_from_top1"]


def _table(connection: Connection, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=connection)


def copy_rejected_messages_to_dead_letters(connection: Connection) -> None:
    """Schema version 2: ``dead_letters`` replaces ``rejected_messages``.

    A dead letter is any message the collector terminated without storing: refused on sight (as before), or a
    poison message whose storing failed on each of its bounded deliveries. The old rows are copied as one
    delivery each, their message ids and stream sequences unknown, so the dead-letter counter seeded from the
    table is unchanged by the upgrade; the migration drops ``rejected_messages`` after this step.
    """
    old, dead_letters = _table(connection, "rejected_messages"), _table(connection, "dead_letters")
    copied: dict[str, ColumnElement[Any]] = {"reason": old.c.reason, "subject": old.c.subject, "deliveries": literal(1)}
    copied |= {name: null() for name in ("message_id", "run_id", "stream_sequence", "payload_sha256")}
    copied |= {name: old.c[name] for name in ("size_bytes", "detail", "payload_head", "received_at")}
    connection.execute(dead_letters.insert().from_select(list(copied), select(*copied.values()).order_by(old.c.id)))


def fill_accuracy_metric_from_top1(connection: Connection) -> None:
    """Schema version 3: every run's headline accuracy figure, whatever its task.

    ``accuracy_top1`` only exists for classification; detection runs are judged by mAP and segmentation runs by
    mean IoU. ``accuracy_metric`` names the task's primary figure (``top1``, ``mAP``, ``mIoU``) and
    ``accuracy_value`` holds it; runs stored before this version get ``top1`` and their top-1 copied over.
    """
    runs = _table(connection, "runs")
    connection.execute(
        update(runs)
        .where(runs.c.accuracy_top1.is_not(None))
        .values(accuracy_metric="top1", accuracy_value=runs.c.accuracy_top1)
    )


STEPS: dict[StepName, Callable[[Connection], None]] = {
    "copy_rejected_messages_to_dead_letters": copy_rejected_messages_to_dead_letters,
    "fill_accuracy_metric_from_top1": fill_accuracy_metric_from_top1,
}
