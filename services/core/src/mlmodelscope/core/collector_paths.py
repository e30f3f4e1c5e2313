"""Paths of the collector's REST API that name a run, built in one place for the CLI and the operator.

A run id is a path segment whatever it holds: an id with ``/``, ``?``, ``#`` or a space, pasted into a URL as it
is, asks the collector for another resource (``a?b`` would ask for run ``a``). Every client builds the URL of a run
here, so the id is always percent-encoded (``quote(run_id, safe="")``).
"""

from __future__ import annotations

from urllib.parse import quote

RUNS_API_PATH = "/api/v1/runs"


def run_api_path(run_id: str, *resource: str) -> str:
    """``/api/v1/runs/{run_id}[/resource...]`` with ``run_id`` percent-encoded as one path segment.

    ``resource`` are the fixed segments after the id (``"result"``, ``"trace"``), written by the caller, not
    encoded: ``run_api_path("a/b", "result") == "/api/v1/runs/a%2Fb/result"``.
    """
    return "/".join((RUNS_API_PATH, quote(run_id, safe=""), *resource))
