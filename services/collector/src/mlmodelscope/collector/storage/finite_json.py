"""Stored documents as strict JSON: NaN and +/-Infinity, which JSON cannot express, become ``null`` plus a reason.

Agents send results and span attributes as JSON; Python's encoder writes ``NaN``/``Infinity`` literals, and a
database that keeps JSON as text (SQLite) stores them as sent. Serving them back as they are would be invalid JSON
(the API used to answer 500). The read side passes every stored document through ``finite_json`` before it leaves
the collector: each non-finite number becomes ``null`` and is listed (its JSON path and what it was) so the answer
can say which values were replaced and why.
"""

from __future__ import annotations

import math
from typing import Any

# The most replaced values named one by one (a header stays short; the count is always exact).
MAX_NAMED_VALUES = 20


def finite_json(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """(``value`` with every non-finite float replaced by None, ``["<json path>: NaN", ...]`` of what was)."""
    replaced: list[str] = []
    return _walk(value, path, replaced), replaced


def _walk(value: Any, path: str, replaced: list[str]) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        replaced.append(f"{path or '$'}: {_spelling(value)}")
        return None
    if isinstance(value, dict):
        return {key: _walk(item, f"{path}.{key}" if path else str(key), replaced) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, f"{path}[{index}]", replaced) for index, item in enumerate(value)]
    return value


def _spelling(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def describe_replaced(replaced: list[str]) -> str:
    """One line for a response header: how many values were replaced by null, and the first of them."""
    named = "; ".join(replaced[:MAX_NAMED_VALUES])
    more = f"; and {len(replaced) - MAX_NAMED_VALUES} more" if len(replaced) > MAX_NAMED_VALUES else ""
    line = f"{len(replaced)} non-finite number(s) served as null (JSON has no NaN/Infinity): {named}{more}"
    # A header is printable ASCII: other characters of a key are escaped, control characters dropped.
    escaped = line.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c for c in escaped if " " <= c <= "~")
