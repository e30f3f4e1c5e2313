"""The token that mutating requests must carry (``Authorization: Bearer <token>``, or the form's token field).

No token configured means mutations are off (403 saying how to turn them on); a missing token is 401, a wrong one
403. Both the configured and the supplied token are stripped of surrounding whitespace (a token read from a file
keeps its newline); they are compared in constant time.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


# Declared in the OpenAPI document as the bearer security scheme (clients and testers know how to send it);
# auto_error=False so a missing or non-bearer header gets this module's 401 with its hint.
_BEARER = HTTPBearer(auto_error=False, description="The collector's API token (MLMODELSCOPE_COLLECTOR_API_TOKEN).")


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None
) -> None:
    settings: CollectorSettings = request.app.state.settings
    check_token(settings, credentials.credentials.strip() if credentials is not None else None)


TokenRequired = Depends(require_token)
TokenDep = Annotated[None, TokenRequired]
