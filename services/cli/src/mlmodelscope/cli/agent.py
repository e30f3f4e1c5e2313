"""``mlmodelscope agent run``: one agent run from the CLI, the same run as ``python -m mlmodelscope.agent`` (the
entrypoint of the predictor Jobs and of local agent processes, which needs no CLI in the image).

A run spec comes as a file (``--spec``, local mode) or inline in an environment variable (``--spec-env
MLMODELSCOPE_RUN_SPEC``, the operator's Jobs), so a Job needs no ConfigMap of its own. Either way the spec is the core's
run contract and carries the resources the agent evaluates: no asset folder is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from mlmodelscope.agent.run import read_run_spec, run_agent, run_spec_from_env
from mlmodelscope.cli.plain_help import cli_app
from mlmodelscope.cli.terminal import labelled, literal_console

agent_app = cli_app(help="Run one evaluation as an agent that publishes to NATS.", no_args_is_help=True)


@agent_app.command("run")
def run(
    spec: Annotated[
        Path | None, typer.Option("--spec", help="The run spec (JSON), as the CLI or the operator wrote it.")
    ] = None,
    spec_env: Annotated[
        str | None, typer.Option("--spec-env", help="Read the run spec (JSON) from this environment variable.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the result JSON here.")] = None,
) -> None:
    """Evaluate one model on one framework and publish spans, queries, progress and the result to NATS."""
    if (spec is None) == (spec_env is None):
        raise typer.BadParameter("pass exactly one of --spec FILE and --spec-env VARIABLE.")
    if spec_env is not None:
        run_spec, source = run_spec_from_env(spec_env, os.environ), f"${spec_env}"
    else:
        assert spec is not None
        run_spec, source = read_run_spec(spec), str(spec)
    code, result, error = run_agent(run_spec, source)
    if output is not None and result is not None:
        result.write(output)
    console = literal_console(stderr=True)
    if error:
        console.print(labelled("error:", error, style="bold red"), soft_wrap=True)
    elif result is not None:
        console.print(json.dumps({"run_id": run_spec.run_id, "status": "succeeded"}))
    raise typer.Exit(code)
