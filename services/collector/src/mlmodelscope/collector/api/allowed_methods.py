"""``405 Method Not Allowed`` with an ``Allow`` header naming every method the OpenAPI document lists for the path.

Starlette answers a method no route of a path handles with the ``Allow`` header of the *first* route that matched
the path; where one path has several routes (``GET`` and ``PUT /api/v1/baselines``, the runs list and the launch
endpoint under ``/api/v1/evaluations``), that header left out the others, so ``OPTIONS`` and a wrong method
reported fewer methods than the OpenAPI document lists. The document is the contract, so the header is built from
it (plus ``HEAD`` wherever ``GET`` is, which Starlette answers too); paths outside it (the pages) keep Starlette's.
"""

from __future__ import annotations

import re
from functools import cache

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
_PARAMETER = re.compile(r"\{[^}/]+\}")


@cache
def _template(path: str) -> re.Pattern[str]:
    """An OpenAPI path template (``/api/v1/runs/{run_id}``) as a regular expression of concrete paths."""
    parts = _PARAMETER.split(path)
    return re.compile("[^/]+".join(re.escape(part) for part in parts) + r"\Z")


def methods_of_path(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for the path (HEAD wherever GET is), upper-case and sorted."""
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        if _template(template).match(path):
            methods.update(method.upper() for method in item if method in _METHODS)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def with_complete_allow(request: Request, error: StarletteHTTPException) -> StarletteHTTPException:
    """A 405 with the ``Allow`` header of every documented method of the path; any other error as it is."""
    if error.status_code != 405:
        return error
    methods = methods_of_path(request.app, request.url.path)
    if not methods:
        return error
    headers = {**(error.headers or {}), "Allow": ", ".join(methods)}
    return StarletteHTTPException(405, detail=error.detail, headers=headers)
