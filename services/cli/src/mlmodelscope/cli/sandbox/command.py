"""The ``mlmodelscope sandbox`` commands (typer). The machinery (KMock, kopf, aiohttp) is imported when a command
runs, so the CLI starts as fast as before."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mlmodelscope.cli.context import DEFAULT_ASSETS
from mlmodelscope.cli.plain_help import cli_app
from mlmodelscope.core.manifests.registry import ASSETS_ENV, asset_roots

sandbox_app = cli_app(
    help="A local cluster sandbox: KMock as the API server, the operator, NATS, the collector and a kubelet "
    "stand-in running each Job as a local process.",
    no_args_is_help=True,
)


@sandbox_app.command("up")
def up(
    ctx: typer.Context,
    kubeconfig: Annotated[
        Path, typer.Option("--kubeconfig", help="Written once everything is ready; removed on exit.")
    ],
    port: Annotated[int, typer.Option("--port", help="Port of the Kubernetes API (0: a free one).")] = 0,
    artifacts_port: Annotated[
        int, typer.Option("--artifacts-port", help="Port of the built-in artifacts' HTTP server (0: a free one).")
    ] = 0,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The namespace Evaluations run in.")] = "default",
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Keep NATS, the collector's database and pod logs here (default: temporary)."),
    ] = None,
    max_running: Annotated[
        int, typer.Option("--max-running", min=1, help="Containers run at once (1: benchmarks do not share CPUs).")
    ] = 1,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="process: each Job's command runs as a local process; podman: as the Job's image under podman "
            "(the images must be built: make images).",
        ),
    ] = "process",
    image_storage: Annotated[
        Path,
        typer.Option("--image-storage", help="The container storage scripts/build_images.py fills (podman runtime)."),
    ] = Path(".cache/containers"),
) -> None:
    """Run the sandbox in the foreground until Ctrl-C or SIGTERM; then stop everything it started."""
    import asyncio

    from mlmodelscope.cli.sandbox.up import SandboxOptions, serve

    if runtime not in ("process", "podman"):
        raise typer.BadParameter(f"{runtime!r}: one of process, podman", param_hint="--runtime")
    extra = (ctx.obj or {}).get("assets", [])
    defaults = [DEFAULT_ASSETS] if DEFAULT_ASSETS.is_dir() else []
    roots = asset_roots(defaults, os.environ.get(ASSETS_ENV), extra)
    options = SandboxOptions(
        kubeconfig=kubeconfig.absolute(),
        asset_roots=roots,
        namespace=namespace,
        api_port=port,
        artifacts_port=artifacts_port,
        state_dir=state_dir,
        max_running=max_running,
        runtime=runtime,
        image_storage=image_storage.absolute(),
    )
    asyncio.run(serve(options, print_line=lambda line: typer.echo(line)))
