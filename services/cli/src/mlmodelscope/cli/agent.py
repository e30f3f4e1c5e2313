"""``mlmodelscope agent run``: the entrypoint of a predictor Job (and of each local agent process).

Local mode passes the run spec as a file (``--spec``); the operator's Jobs pass it inline in an environment variable
(``--spec-env MLMODELSCOPE_RUN_SPEC``), so a Job needs no ConfigMap of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from mlmodelscope.agent.run import RunSpec, read_run_spec, run_agent
from mlmodelscope.cli.terminal import labelled, literal_console
from mlmodelscope.core.errors import ManifestError

agent_app = typer.Typer(help="Run one evaluation as an agent that publishes to NATS.", no_args_is_help=True)


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
    run_spec = _spec_from_env(spec_env) if spec_env is not None else None
    if run_spec is None:
        if spec is None:
            raise ManifestError("no run spec.", hint="Pass --spec FILE or --spec-env VARIABLE.")
        run_spec = read_run_spec(spec)
    code, result, error = run_agent(run_spec)
    if output is not None and result is not None:
        result.write(output)
    console = literal_console(stderr=True)
    if error:
        console.print(labelled("error:", error, style="bold red"), soft_wrap=True)
    elif result is not None:
        console.print(json.dumps({"run_id": run_spec.run_id, "status": "succeeded"}))
    raise typer.Exit(code)


def _spec_from_env(name: str) -> RunSpec:
    """The run spec in environment variable ``name``; ManifestError naming the variable and the invalid fields."""
    text = os.environ.get(name)
    if not text:
        raise ManifestError(f"environment variable {name} holds no run spec.", hint="Set it to the RunSpec JSON.")
    try:
        return RunSpec.model_validate_json(text)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
        raise ManifestError(
            f"${name}: invalid run spec: {problems}.", hint="See `RunSpec` in mlmodelscope.agent.run."
        ) from e
