"""One client of the collector's REST API, sync and async, for the CLI, the operator and the tests.

Why: the CLI's local mode, its report and run commands, and the operator each wrote their own, and each decided on
its own what a 404, a 5xx or a refused connection means. Here it is decided once (``interpret``):

* 200: the JSON document;
* a status the caller names in ``missing`` (404 for "no such run yet", 422 for "no analysis of this run"): None;
* 5xx, or no answer at all: ``CollectorUnavailableError``, a ``TransientError``: retry later (the operator's next
  reconcile, the CLI's restart of a local collector);
* any other status: ``CollectorAnswerError`` with the collector's own ``detail`` and the status, not retried.

Run paths are built by ``collector_paths.run_api_path`` (the id percent-encoded as one segment).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from mlmodelscope.core.collector_paths import RUNS_API_PATH, run_api_path
from mlmodelscope.core.errors import MLModelScopeError, TransientError

DEFAULT_TIMEOUT_S = 30.0
NOT_FOUND = frozenset({404})
_CHECK_URL_HINT = "Check --collector-url (or MLMODELSCOPE_COLLECTOR_URL), and that the collector runs."


class CollectorClientError(MLModelScopeError):
    """The collector's REST API did not give the document asked for."""


class CollectorUnavailableError(CollectorClientError, TransientError):
    """The collector did not answer, or answered that it cannot now (5xx)."""


class CollectorAnswerError(CollectorClientError):
    """The collector refused the request (a 4xx the caller did not expect); ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status


def interpret(response: httpx.Response, path: str, *, missing: frozenset[int] = frozenset()) -> Any:
    """The document of a response to ``GET path`` (see the module docstring); None for a status in ``missing``."""
    status = response.status_code
    if status == 200:
        return response.json()
    if status in missing:
        return None
    detail: Any = response.text[:300]
    with contextlib.suppress(ValueError, KeyError, TypeError):
        detail = response.json()["detail"]
    if status >= 500:
        raise CollectorUnavailableError(f"GET {path}: the collector answered {status}: {detail}", hint=_CHECK_URL_HINT)
    hint = "See `mlmodelscope runs list` for run ids." if status == 404 else ""
    raise CollectorAnswerError(f"GET {path}: the collector answered {status}: {detail}", status=status, hint=hint)


def unreachable(base_url: str, path: str, error: httpx.HTTPError) -> CollectorUnavailableError:
    return CollectorUnavailableError(
        f"the collector at {base_url} did not answer GET {path}: {error}", hint=_CHECK_URL_HINT
    )


def runs_path(query: str = "") -> str:
    """``/api/v1/runs`` with an already-encoded query string (``urlencode``)."""
    return f"{RUNS_API_PATH}?{query}" if query else RUNS_API_PATH


class CollectorClient:
    """Blocking client (the CLI, the tests): ``with CollectorClient(url) as client: client.run(run_id)``."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get_json(self, path: str, *, missing: frozenset[int] = frozenset()) -> Any:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as e:
            raise unreachable(self.base_url, path, e) from e
        return interpret(response, path, missing=missing)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run's row (status, labels, ...); None when the collector has not heard of it."""
        document: dict[str, Any] | None = self.get_json(run_api_path(run_id), missing=NOT_FOUND)
        return document

    def result(self, run_id: str) -> dict[str, Any] | None:
        """The run's RunResult document as stored (the caller validates it); None when there is none."""
        document: dict[str, Any] | None = self.get_json(run_api_path(run_id, "result"), missing=NOT_FOUND)
        return document

    def download(self, path: str, destination: Path) -> None:
        """GET ``path`` into ``destination`` as it streams (no read timeout: the collector writes as it goes)."""
        try:
            with self._client.stream("GET", path, timeout=httpx.Timeout(DEFAULT_TIMEOUT_S, read=None)) as response:
                if response.status_code != 200:
                    response.read()
                    interpret(response, path)
                with destination.open("wb") as handle:
                    for chunk in response.iter_raw():
                        handle.write(chunk)
        except httpx.HTTPError as e:
            raise unreachable(self.base_url, path, e) from e


class AsyncCollectorClient:
    """The same client for asyncio code (the operator)."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def get_json(self, path: str, *, missing: frozenset[int] = frozenset()) -> Any:
        try:
            response = await self._client.get(path)
        except httpx.HTTPError as e:
            raise unreachable(self.base_url, path, e) from e
        return interpret(response, path, missing=missing)

    async def run(self, run_id: str) -> dict[str, Any] | None:
        document: dict[str, Any] | None = await self.get_json(run_api_path(run_id), missing=NOT_FOUND)
        return document

    async def result(self, run_id: str) -> dict[str, Any] | None:
        document: dict[str, Any] | None = await self.get_json(run_api_path(run_id, "result"), missing=NOT_FOUND)
        return document
