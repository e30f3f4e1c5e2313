"""``Annotated`` dependencies the routers share: the running collector, and validated path parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from mlmodelscope.collector.runtime import CollectorRuntime


def get_runtime(request: Request) -> CollectorRuntime:
    runtime: CollectorRuntime | None = request.app.state.runtime
    if runtime is None:
        raise HTTPException(status_code=503, detail="the collector is not started (or is shutting down)")
    return runtime


RuntimeDep = Annotated[CollectorRuntime, Depends(get_runtime)]
RunIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$", description="The run's id.")]
