"""Schema version 3: each run's headline accuracy figure, whatever its task (frozen as it was at this version).

``accuracy_top1`` only exists for classification; detection runs are judged by mAP and segmentation runs by mean
IoU. ``accuracy_metric`` names the task's primary figure (``top1``, ``mAP``, ``mIoU``: ``AccuracyResult.primary``)
and ``accuracy_value`` holds it, so listings, metrics and comparisons read one pair of columns for every task.
``accuracy_top1`` stays as it was. Runs stored before this version get ``top1`` and their top-1 copied over.
"""

from __future__ import annotations

from sqlalchemy import Connection, Float, MetaData, String, Table, text, update


def apply(connection: Connection) -> None:
    dialect = connection.dialect
    for name, column_type in (("accuracy_metric", String(32)), ("accuracy_value", Float())):
        connection.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {column_type.compile(dialect=dialect)}"))
    runs = Table("runs", MetaData(), autoload_with=connection)
    connection.execute(
        update(runs)
        .where(runs.c.accuracy_top1.is_not(None))
        .values(accuracy_metric="top1", accuracy_value=runs.c.accuracy_top1)
    )
