"""Entry point of the ``mlmodelscope`` command: the typer app and the one place errors become messages.

Any ``MLModelScopeError`` (and invalid settings) ends the command with a one-paragraph message on stderr and exit
code 1; a usage error (unknown command or flag, missing argument) prints the usage line, the problem and a
suggestion (``usage.py``) and exits 2 — never a traceback, which is for bugs only. Messages are printed literally
(``terminal.py``): a regex or a path in brackets is data, not rich markup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from typer._click.exceptions import ClickException, UsageError

from mlmodelscope.cli import agent, catalog, collector, evaluate, operator, report, runs, validate
from mlmodelscope.cli.sandbox.command import sandbox_app
from mlmodelscope.cli.terminal import labelled, literal_console
from mlmodelscope.cli.usage import usage_error_text
from mlmodelscope.core.errors import MLModelScopeError

EXIT_ERROR = 1
PROG_NAME = "mlmodelscope"

app = typer.Typer(
    name="mlmodelscope",
    help="Evaluate and profile ML models across frameworks, datasets and hardware, reproducibly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(catalog.models_app, name="models")
app.add_typer(catalog.frameworks_app, name="frameworks")
app.add_typer(catalog.datasets_app, name="datasets")
app.add_typer(agent.agent_app, name="agent")
app.add_typer(collector.collector_app, name="collector")
app.add_typer(operator.operator_app, name="operator")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(runs.trace_app, name="trace")
app.command("evaluate")(evaluate.evaluate)
app.command("report")(report.report)
app.command("validate")(validate.validate)


@app.callback()
def _root(
    ctx: typer.Context,
    assets: Annotated[
        list[Path] | None,
        typer.Option(
            "--assets", help="Extra folder with models/, frameworks/, datasets/ (repeatable).", show_default=False
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Artifact cache (default: $MLMODELSCOPE_CACHE_DIR or ~/.cache).")
    ] = None,
) -> None:
    ctx.obj = {"assets": list(assets or []), "cache_dir": cache_dir}


def _settings_problem(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    console = literal_console(stderr=True)
    args = sys.argv[1:] if argv is None else argv
    try:
        outcome = app(args=args, prog_name=PROG_NAME, standalone_mode=False)
    except MLModelScopeError as e:
        console.print(labelled("error:", e.message, style="bold red"), soft_wrap=True)
        if e.hint:
            console.print(labelled("how to fix:", e.hint, style="bold"), soft_wrap=True)
        return EXIT_ERROR
    except ValidationError as e:
        message = f"invalid evaluation settings: {_settings_problem(e)}."
        console.print(labelled("error:", message, style="bold red"), soft_wrap=True)
        return EXIT_ERROR
    except typer.Abort:
        console.print("aborted")
        return EXIT_ERROR
    except UsageError as e:
        sys.stderr.write(usage_error_text(e, root=typer.main.get_command(app), prog_name=PROG_NAME, argv=args))
        return int(e.exit_code)
    except ClickException as e:
        console.print(labelled("error:", e.format_message(), style="bold red"), soft_wrap=True)
        return int(e.exit_code)
    return outcome if isinstance(outcome, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
