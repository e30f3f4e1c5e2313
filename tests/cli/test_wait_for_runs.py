"""`evaluate` waits for the collector to store its runs: a stall is an error, slow but steady ingestion is not.

A long traced run on a busy machine takes the collector a while to store; failing it after a fixed time (the run
is computed and published, nothing is wrong) made `evaluate` exit 1 under load. These tests drive the waiting loop
with a collector whose answers are scripted per poll, so they do not depend on the machine's speed.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mlmodelscope.cli import local
from mlmodelscope.cli.local import wait_for_runs
from mlmodelscope.core.errors import EvaluationError


class ScriptedCollector:
    """Answers GET /api/v1/runs/{id} with the next detail of a script (the last one once it runs out)."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        self.details = details
        self.polls = 0

    def get(self, path: str, timeout_s: float = 30.0) -> httpx.Response:
        assert path == "/api/v1/runs/r1"
        detail = self.details[min(self.polls, len(self.details) - 1)]
        self.polls += 1
        return httpx.Response(200, json=detail)


def _detail(status: str, spans: int, complete: bool | None = None) -> dict[str, Any]:
    return {"status": status, "received_span_count": spans, "received_query_count": spans, "complete": complete}


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_POLL_S", 0.01)


def test_steady_ingestion_is_waited_for_beyond_the_stall_bound() -> None:
    # 60 polls of growing counts (~0.6 s or more) against a 0.2 s stall bound: every poll shows progress.
    script = [_detail("succeeded", n, complete=False) for n in range(60)] + [_detail("succeeded", 60, True)]
    collector = ScriptedCollector(script)
    details = wait_for_runs(collector, ["r1"], timeout_s=0.2)  # type: ignore[arg-type]
    assert details["r1"]["complete"] is True and collector.polls == len(script)


def test_a_stalled_run_is_an_error_that_says_nothing_more_was_stored() -> None:
    collector = ScriptedCollector([_detail("running", 5)])
    with pytest.raises(EvaluationError, match=r"stored nothing more of run\(s\) r1 within 0.2 s"):
        wait_for_runs(collector, ["r1"], timeout_s=0.2)  # type: ignore[arg-type]


def test_the_whole_wait_is_bounded_even_while_counts_grow() -> None:
    collector = ScriptedCollector([_detail("succeeded", n, complete=False) for n in range(100_000)])
    with pytest.raises(EvaluationError, match=r"had not finished run\(s\) r1 within 0.3 s"):
        wait_for_runs(collector, ["r1"], timeout_s=5.0, max_wait_s=0.3)  # type: ignore[arg-type]
