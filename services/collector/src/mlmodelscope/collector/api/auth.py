"""The token that mutating requests must carry (``Authorization: Bearer <token>``, or the form's token field).

No token configured means mutations are off (403 saying how to turn them on); a missing token is 401, a wrong one
403. Tokens are compared in constant time.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from mlmodelscope.collector.settings import CollectorSettings


def check_token(settings: CollectorSettings, supplied: str | None) -> None:
    """Raise the HTTPException a request with this token deserves, or return when it may mutate."""
    if settings.api_token is None:
        raise HTTPException(
            status_code=403,
            detail="mutating requests are disabled: start the collector with MLMODELSCOPE_COLLECTOR_API_TOKEN set",
        )
    if not supplied:
        raise HTTPException(
            status_code=401,
            detail="this request changes state and needs the collector's token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(supplied.encode(), settings.api_token.get_secret_value().encode()):
        raise HTTPException(status_code=403, detail="the token is not this collector's token")


def require_token(
    request: Request, authorization: Annotated[str | None, Header(description="Bearer <token>")] = None
) -> None:
    settings: CollectorSettings = request.app.state.settings
    supplied = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        supplied = value.strip() if scheme.lower() == "bearer" else None
    check_token(settings, supplied)


TokenRequired = Depends(require_token)
TokenDep = Annotated[None, TokenRequired]
