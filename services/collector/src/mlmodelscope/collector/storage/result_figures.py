"""The figures of a stored result document that get columns of their own (listings, metrics, comparisons).

The document is read as plain JSON rather than validated as an ``RunResult``: a result of another schema
version, or one with a missing part, still gives whatever figures it has. The primary accuracy figure follows
``AccuracyResult.primary``: top-1 for classification, mAP@[.5:.95] for detection, mean IoU for segmentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (metric name, path inside ``accuracy``), in AccuracyResult.primary's order.
_PRIMARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("top1", ("top1",)),
    ("mAP", ("detection", "map")),
    ("mIoU", ("segmentation", "mean_iou")),
)


def number(document: Mapping[str, Any] | None, *path: str) -> float | None:
    """The number at ``path`` (None when a key is missing or the value is not a number)."""
    value: Any = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def primary_accuracy(document: Mapping[str, Any] | None) -> tuple[str, float] | None:
    """('top1', x), ('mAP', x) or ('mIoU', x) of a result document; None without accuracy figures."""
    for metric, path in _PRIMARY:
        value = number(document, "accuracy", *path)
        if value is not None:
            return metric, value
    return None
