"""``mlmodelscope collector serve``: the collector service (the entrypoint of its Deployment)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mlmodelscope.cli.plain_help import cli_app
from mlmodelscope.collector.main import serve as serve_collector
from mlmodelscope.collector.settings import CollectorSettings

collector_app = cli_app(help="The collector: NATS -> database, REST API, Prometheus metrics.", no_args_is_help=True)


@collector_app.command("serve")
def serve(
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (sqlite:///x.db, postgresql+psycopg://…).")
    ] = None,
    nats_url: Annotated[str | None, typer.Option(help="NATS URL; no consumer runs without one.")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
) -> None:
    """Serve until interrupted. Flags override MLMODELSCOPE_COLLECTOR_* environment variables."""
    settings = CollectorSettings.from_env(os.environ)
    overrides = {"database_url": database_url, "nats_url": nats_url, "host": host, "port": port}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    serve_collector(CollectorSettings.model_validate(settings.model_dump()))
