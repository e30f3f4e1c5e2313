"""One run's per-query records as the arrays the statistics need: sorted latencies, items and completion gaps.

Built from the collector's ``queries`` rows (performance mode: the timed LoadGen run) or from synthetic arrays in
tests. Latency is ``end_ns - start_ns`` of one predictor call; the completion gap of a query is the time since the
previous completion (for the first one, its own latency), so the gaps sum to the run's wall time from the first
start to the last end (when calls do not overlap, otherwise they sum to the span of completions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.core.analysis.errors import NotEnoughDataError


@dataclass(frozen=True)
class QuerySample:
    """Latencies (ascending), and per query in completion order: items predicted and the completion gap."""

    sorted_latency_ns: NDArray[np.int64]
    items: NDArray[np.int64]
    gaps_ns: NDArray[np.int64]

    @property
    def count(self) -> int:
        return len(self.sorted_latency_ns)

    @classmethod
    def from_intervals(
        cls, start_ns: Iterable[int], end_ns: Iterable[int], items: Iterable[int] | None = None
    ) -> QuerySample:
        starts = _int64_array(start_ns)
        ends = _int64_array(end_ns)
        if len(starts) != len(ends):
            raise NotEnoughDataError(f"{len(starts)} start times but {len(ends)} end times")
        if len(starts) == 0:
            raise NotEnoughDataError("the run has no performance-mode query records", hint=_HINT)
        counts = np.ones(len(starts), dtype=np.int64) if items is None else _int64_array(items)
        order = np.argsort(ends, kind="stable")
        ends_sorted = ends[order]
        gaps = np.diff(ends_sorted, prepend=ends_sorted[0] - (ends[order[0]] - starts[order[0]]))
        return cls(
            sorted_latency_ns=np.sort(ends - starts),
            items=counts[order],
            gaps_ns=np.maximum(gaps, 0),
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> QuerySample:
        """From mappings with ``start_ns``, ``end_ns`` and ``item_count`` (the collector's query rows)."""
        rows = list(records)
        return cls.from_intervals(
            (int(r["start_ns"]) for r in rows), (int(r["end_ns"]) for r in rows), (int(r["item_count"]) for r in rows)
        )

    @classmethod
    def from_latencies(cls, latencies_ns: Iterable[int], items_per_query: int = 1) -> QuerySample:
        """Back-to-back calls of the given latencies (synthetic runs in tests)."""
        values = np.fromiter(latencies_ns, dtype=np.int64)
        if len(values) == 0:
            raise NotEnoughDataError("no latencies given")
        return cls(
            sorted_latency_ns=np.sort(values),
            items=np.full(len(values), items_per_query, dtype=np.int64),
            gaps_ns=values.copy(),
        )


_HINT = "Compare runs that ran in performance (or both) mode at trace level model or above."


def _int64_array(values: Iterable[int]) -> NDArray[np.int64]:
    """An int64 array of ``values``: an array as it is (the collector's columns), any other iterable read once."""
    if isinstance(values, np.ndarray):
        return values.astype(np.int64, copy=False)
    return np.fromiter(values, dtype=np.int64)
