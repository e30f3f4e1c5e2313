"""``mlmodelscope agent run``: the entrypoint of a predictor Job (and of each local agent process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlmodelscope.agent.run import read_run_spec, run_agent

agent_app = typer.Typer(help="Run one evaluation as an agent that publishes to NATS.", no_args_is_help=True)


@agent_app.command("run")
def run(
    spec: Annotated[Path, typer.Option("--spec", help="The run spec (JSON), as the CLI or the operator wrote it.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the result JSON here.")] = None,
) -> None:
    """Evaluate one model on one framework and publish spans, queries, progress and the result to NATS."""
    run_spec = read_run_spec(spec)
    code, result, error = run_agent(run_spec)
    if output is not None and result is not None:
        result.write(output)
    console = Console(stderr=True, highlight=False)
    if error:
        console.print(f"[bold red]error:[/] {error}", soft_wrap=True)
    elif result is not None:
        console.print(json.dumps({"run_id": run_spec.run_id, "status": "succeeded"}))
    raise typer.Exit(code)
