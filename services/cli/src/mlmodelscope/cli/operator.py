"""``mlmodelscope operator``: run the Kubernetes operator, and write its CRDs.

The operator package (and kopf) are imported when a command runs, not when the CLI starts, so every other command
works where the operator distribution is not installed.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from mlmodelscope.cli.plain_help import cli_app
from mlmodelscope.core.errors import MLModelScopeError

operator_app = cli_app(
    help="The Kubernetes operator: Evaluation resources become predictor Jobs.", no_args_is_help=True
)


def _operator_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"mlmodelscope.operator.{name}")
    except ImportError as e:
        raise MLModelScopeError(
            f"the operator is not installed here ({e}).",
            hint="`pip install -e operator` (mlmodelscope-operator, with kopf).",
        ) from e


@operator_app.command("run")
def run(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch this namespace (repeatable); default: all.")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="API server URL (default: in-cluster/kubeconfig).")
    ] = None,
    nats_url: Annotated[str | None, typer.Option("--nats-url", help="NATS URL the predictor Jobs publish to.")] = None,
    collector_url: Annotated[str | None, typer.Option("--collector-url", help="Collector REST API URL.")] = None,
) -> None:
    """Reconcile Evaluations: one Job per run, results from the collector into the Evaluation's status.

    Every setting can also be given as MLMODELSCOPE_OPERATOR_<NAME> (e.g. ..._FPGA_RESOURCE, ..._AGENT_ASSETS_DIR).
    """
    import asyncio
    import logging

    run_operator = _operator_module("main").run_operator
    settings = _operator_module("settings").OperatorSettings.from_env(
        os.environ, namespaces=namespace or None, server=server, nats_url=nats_url, collector_url=collector_url
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_operator(settings))


@operator_app.command("crds")
def crds(directory: Annotated[Path, typer.Argument(help="Where to write the CRD YAML files.")] = Path("crds")) -> None:
    """Write the CustomResourceDefinitions generated from the pydantic resources (what crds/ holds)."""
    for path in _operator_module("crds").generate(directory):
        typer.echo(str(path))
