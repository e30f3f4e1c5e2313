"""The OpenAPI document, with what FastAPI leaves out: the 400 every operation can answer.

A request whose body or headers cannot be parsed at all (a form body that is not urlencoded, bytes that are not
UTF-8 where text is required, a header the server cannot read) is answered 400 before any parameter is validated;
FastAPI documents only the 422 of invalid parameters. Every operation lists 400 here, once, so clients and
schema-based testers know it is part of the contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

BAD_REQUEST = {"description": "The request cannot be parsed (malformed body, headers or encoding)."}
_OPERATION_KEYS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with a cached builder that adds the 400 response to every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path_item in document.get("paths", {}).values():
                for method, operation in path_item.items():
                    if method in _OPERATION_KEYS:
                        operation.setdefault("responses", {}).setdefault("400", dict(BAD_REQUEST))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
