"""Entry point of the ``mlmodelscope`` command: the typer app and the one place errors become messages.

Any ``MLModelScopeError`` (and invalid settings) ends the command with a one-paragraph message on stderr and exit
code 1; a usage error (unknown command or flag, missing argument) prints the usage line, the problem and a
suggestion (``usage.py``) and exits 2 — never a traceback, which is for bugs only. Messages are printed literally
(``terminal.py``): a regex or a path in brackets is data, not rich markup.

``mlmodelscope --help`` is typed at a prompt, so starting the command imports neither rich nor pydantic: help is
click's plain help (``plain_help.py``), and the console that prints errors is made, importing rich, only once there
is an error to print.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from typer._click import Command
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from mlmodelscope.cli.lazy import LazyCommand, LazyGroup
from mlmodelscope.cli.plain_help import PlainHelpGroup, cli_app
from mlmodelscope.cli.usage import usage_error_text
from mlmodelscope.core.errors import MLModelScopeError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.console import Console

EXIT_ERROR = 1
PROG_NAME = "mlmodelscope"

# Every subcommand, in the order ``--help`` lists them, imported only when it runs (``lazy.py``): the help shown
# here must equal the command's own first help paragraph (tests/core/test_import_hygiene.py compares them).
COMMANDS = (
    LazyCommand(
        "evaluate",
        "mlmodelscope.cli.evaluate:evaluate",
        "Evaluate MODEL on FRAMEWORK(s): accuracy and/or performance under an MLPerf LoadGen scenario.",
    ),
    LazyCommand(
        "report",
        "mlmodelscope.cli.report:report",
        "Write a report over runs: latency/throughput, layer top-N, op types, optimal batch size, comparisons.",
    ),
    LazyCommand(
        "validate",
        "mlmodelscope.cli.validate:validate",
        "Check resource files against the pydantic models and the CRD schemas; start nothing.",
    ),
    LazyCommand("models", "mlmodelscope.cli.catalog:models_app", "Models in the registry."),
    LazyCommand("frameworks", "mlmodelscope.cli.catalog:frameworks_app", "Frameworks in the registry."),
    LazyCommand("datasets", "mlmodelscope.cli.catalog:datasets_app", "Datasets in the registry."),
    LazyCommand("agent", "mlmodelscope.cli.agent:agent_app", "Run one evaluation as an agent that publishes to NATS."),
    LazyCommand(
        "collector",
        "mlmodelscope.cli.collector:collector_app",
        "The collector: NATS -> database, REST API, Prometheus metrics.",
    ),
    LazyCommand(
        "operator",
        "mlmodelscope.cli.operator:operator_app",
        "The Kubernetes operator: Evaluation resources become predictor Jobs.",
    ),
    LazyCommand("runs", "mlmodelscope.cli.runs:runs_app", "Past evaluations stored by the collector."),
    LazyCommand(
        "sandbox",
        "mlmodelscope.cli.sandbox.command:sandbox_app",
        "A local cluster sandbox: KMock as the API server, the operator, NATS, the collector and a kubelet stand-in "
        "running each Job as a local process.",
    ),
    LazyCommand("trace", "mlmodelscope.cli.runs:trace_app", "Traces of runs."),
)


class RootGroup(LazyGroup, PlainHelpGroup):
    """The ``mlmodelscope`` group: ``COMMANDS``, each imported when it runs, listed with the plain help."""

    lazy_commands = COMMANDS


app = cli_app(
    name="mlmodelscope",
    help="Evaluate and profile ML models across frameworks, datasets and hardware, reproducibly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=RootGroup,
)


@app.callback()
def _root(
    ctx: typer.Context,
    assets: Annotated[
        list[Path] | None,
        typer.Option(
            "--assets",
            help="Extra folder with models/, frameworks/, datasets/ (repeatable).",
            show_default=False,
            metavar="<path>",
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


class _NoSettingsError(Exception):
    """Stands for pydantic's ``ValidationError`` while pydantic is not imported: none can have been raised then."""


def _settings_error() -> type[Exception]:
    """pydantic's ``ValidationError``, without importing pydantic for every command (``--help`` needs none of it).

    An ``except`` clause evaluates its class when an exception reaches it, so this runs only on the error path."""
    pydantic = sys.modules.get("pydantic")
    return _NoSettingsError if pydantic is None else cast("type[Exception]", pydantic.ValidationError)


def _print_error(label: str, message: str, *, style: str = "bold red") -> None:
    """``label message`` as one paragraph on stderr, only the label styled; rich is imported here, on error only."""
    from mlmodelscope.cli.terminal import labelled

    _error_console().print(labelled(label, message, style=style), soft_wrap=True)


def _error_console() -> Console:
    from mlmodelscope.cli.terminal import literal_console

    return literal_console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        outcome = app(args=args, prog_name=PROG_NAME, standalone_mode=False)
    except MLModelScopeError as e:
        _print_error("error:", e.message)
        if e.hint:
            _print_error("how to fix:", e.hint, style="bold")
        return EXIT_ERROR
    except _settings_error() as e:
        _print_error("error:", f"invalid evaluation settings: {_settings_problem(cast('ValidationError', e))}.")
        return EXIT_ERROR
    except typer.Abort:
        _error_console().print("aborted")
        return EXIT_ERROR
    except NoArgsIsHelpError as e:
        # A group without a command: its help on stdout, as ``--help`` prints it (a rich group has printed it
        # already and left the message empty; the plain root leaves its help in the message), and exit 2.
        if help_text := e.format_message():
            sys.stdout.write(help_text + "\n")
        return int(e.exit_code)
    except UsageError as e:
        sys.stderr.write(usage_error_text(e, root=_loaded_root(e), prog_name=PROG_NAME, argv=args))
        return int(e.exit_code)
    except ClickException as e:
        _print_error("error:", e.format_message())
        return int(e.exit_code)
    return outcome if isinstance(outcome, int) else 0


def _loaded_root(error: UsageError) -> Command:
    """The command tree with every lazy command imported, also in ``error``'s contexts: suggestions search it all."""
    ctx = error.ctx
    while ctx is not None:
        if isinstance(ctx.command, LazyGroup):
            ctx.command.load_all()
        ctx = ctx.parent
    root = typer.main.get_command(app)
    if isinstance(root, LazyGroup):
        root.load_all()
    return root


if __name__ == "__main__":
    raise SystemExit(main())
