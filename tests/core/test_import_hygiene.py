"""Importing a light module loads no heavy dependency, and the ``mlmodelscope`` command imports only what it runs.

Issue 17 found ``operator.planning`` loading PIL and numpy and ``core.messages`` loading psutil through package
``__init__`` re-exports, and ``mlmodelscope --help`` importing every command (seconds). Timing would be a flaky
guard on a shared machine, so these tests assert *what is imported*: each case imports a module in a fresh
interpreter and lists which of the heavy packages ended up in ``sys.modules``. A re-export or a top-level import
that brings one back fails here, naming the module and the package.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from contextlib import redirect_stdout

import pytest
import typer

from tests.support.paths import REPO

DATA = ("numpy", "PIL", "psutil")
NETWORK = ("httpx", "minio", "nats")
WEB = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "jinja2")
CLUSTER = ("kopf", "kubernetes")
ML = ("torch", "tensorflow", "keras", "onnxruntime", "onnx", "mxnet", "ai_edge_litert", "mlperf_loadgen")
HEAVY = DATA + NETWORK + WEB + CLUSTER + ML

# module -> packages it must not load (with why, in the id)
CASES = [
    pytest.param("mlmodelscope.core.messages", (*HEAVY, "yaml"), id="bus-messages-need-pydantic-only"),
    pytest.param("mlmodelscope.core.tracing.spans", (*HEAVY, "yaml"), id="span-types-need-pydantic-only"),
    pytest.param("mlmodelscope.core.manifests.registry", HEAVY, id="manifest-schema-not-the-image-code"),
    pytest.param("mlmodelscope.core.run_contract", HEAVY, id="run-contract-not-the-artifact-clients"),
    pytest.param("mlmodelscope.core.artifacts.locations", HEAVY, id="uri-parsing-not-the-artifact-clients"),
    pytest.param("mlmodelscope.operator.planning", HEAVY, id="planning-is-pure"),
    pytest.param("mlmodelscope.cli.catalog", HEAVY, id="models-list-command"),
    pytest.param("mlmodelscope.cli.main", (*HEAVY, "yaml"), id="cli-entry-point"),
]

# What starting ``mlmodelscope`` may import of our own code: the entry point, its lazy group and its error printing.
CLI_START_MODULES = {
    "mlmodelscope",
    "mlmodelscope.cli",
    "mlmodelscope.cli.lazy",
    "mlmodelscope.cli.main",
    "mlmodelscope.cli.plain_help",
    "mlmodelscope.cli.terminal",
    "mlmodelscope.cli.usage",
    "mlmodelscope.core",
    "mlmodelscope.core.errors",
}


def _loaded_after(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; return the top-level packages and our modules it left in sys.modules
    (``top``, ``ours``) and what it printed before them (``printed``)."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        "print(json.dumps({'top': sorted({m.split('.')[0] for m in sys.modules}),"
        " 'ours': sorted(m for m in sys.modules if m.split('.')[0] == 'mlmodelscope')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")} | {"COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.strip().splitlines()
    loaded: dict[str, list[str]] = json.loads(last)
    return loaded | {"printed": printed}


@pytest.mark.parametrize(("module", "forbidden"), CASES)
def test_importing_a_module_loads_no_heavy_package(module: str, forbidden: tuple[str, ...]) -> None:
    loaded = set(_loaded_after(f"import {module}")["top"])
    assert not loaded & set(forbidden), f"importing {module} loads {sorted(loaded & set(forbidden))}"


def test_starting_the_cli_imports_no_command_module() -> None:
    ours = set(_loaded_after("import mlmodelscope.cli.main")["ours"])
    assert ours <= CLI_START_MODULES, f"mlmodelscope.cli.main imports {sorted(ours - CLI_START_MODULES)} at start"


def test_root_help_imports_no_command_module() -> None:
    loaded = _loaded_after("from mlmodelscope.cli.main import main\nassert main(['--help']) == 0")
    assert any("Commands" in line for line in loaded["printed"]), loaded["printed"]
    ours = set(loaded["ours"])
    assert ours <= CLI_START_MODULES, f"'mlmodelscope --help' imports {sorted(ours - CLI_START_MODULES)}"


def test_root_help_imports_neither_rich_nor_pydantic() -> None:
    """typer's rich help formatter (rich, markdown-it, pygments) was most of ``--help``'s start-up (issue 17): the
    root help is click's plain help, and the error consoles (rich) and settings errors (pydantic) load on error."""
    loaded = _loaded_after("from mlmodelscope.cli.main import main\nassert main(['--help']) == 0")
    assert "Commands:" in loaded["printed"], loaded["printed"]
    heavy_for_help = {"rich", "markdown_it", "pygments", "pydantic", "pydantic_core"}
    assert not set(loaded["top"]) & heavy_for_help, f"'--help' loads {sorted(set(loaded['top']) & heavy_for_help)}"


def test_models_list_imports_only_its_command() -> None:
    loaded = _loaded_after("from mlmodelscope.cli.main import main\nassert main(['models', 'list']) == 0")
    assert any("digits-cnn" in line for line in loaded["printed"]), loaded["printed"]
    assert not set(loaded["top"]) & set(HEAVY), f"'models list' loads {sorted(set(loaded['top']) & set(HEAVY))}"
    others = [m for m in loaded["ours"] if m.startswith(("mlmodelscope.agent", "mlmodelscope.collector"))]
    assert not others, f"'models list' imports {others}"
    assert "mlmodelscope.cli.evaluate" not in loaded["ours"]


def _help_of(root: typer.core.TyperGroup) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        root.main(["--help"], prog_name="mlmodelscope", standalone_mode=False)
    return out.getvalue()


def test_the_lazy_help_is_the_help_of_the_loaded_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The short helps written in ``main.COMMANDS`` are what each command says of itself, in the same list."""
    monkeypatch.setenv("COLUMNS", "200")
    from mlmodelscope.cli.lazy import LazyGroup
    from mlmodelscope.cli.main import COMMANDS, app

    lazy = typer.main.get_command(app)
    loaded = typer.main.get_command(app)
    assert isinstance(lazy, LazyGroup) and isinstance(loaded, LazyGroup)
    loaded.load_all()
    assert [spec.name for spec in COMMANDS] == lazy.list_commands(typer.Context(lazy))
    assert _help_of(lazy) == _help_of(loaded)
    shown = " ".join(_help_of(lazy).split())  # the plain help wraps at the terminal width, 80 columns at most
    for spec in COMMANDS:
        assert spec.help in shown, spec.name


def test_the_root_help_wraps_each_short_help_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a narrow terminal the plain root help wraps a long short help onto more lines, never cuts it with "..."
    (click's own command list does)."""
    monkeypatch.setenv("COLUMNS", "60")
    from mlmodelscope.cli.main import app

    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    shown = _help_of(root)
    assert "..." not in shown.partition("Commands:")[2], shown
    assert max(len(line) for line in shown.splitlines()) <= 60, shown
    assert "running each Job as a local process." in " ".join(shown.split()), shown
    # Options show the metavar users read elsewhere, not typer's plain-help rendering of the Python type.
    assert "--assets <path>" in shown and "list[" not in shown, shown


def test_every_core_module_is_in_a_layer() -> None:
    """A new core module or package must be placed in the import-linter layers contract, or it is unchecked."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    layered = {name.strip() for layer in layers for name in layer.split("|")}
    core = REPO / "services/core/src/mlmodelscope/core"
    modules = {
        f"mlmodelscope.core.{path.stem}"
        for path in core.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()
    }
    assert modules - layered == set(), f"core modules in no layer of pyproject.toml: {sorted(modules - layered)}"


def test_a_stray_settings_error_is_still_a_one_line_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main`` catches pydantic's ValidationError without importing pydantic at start (``_settings_error``)."""
    from pydantic import BaseModel, PositiveInt

    from mlmodelscope.cli import main as cli_main

    class Settings(BaseModel):
        threads: PositiveInt

    broken = typer.Typer()

    @broken.command()
    def run() -> None:
        Settings(threads=0)

    monkeypatch.setattr(cli_main, "app", broken)
    assert cli_main.main([]) == cli_main.EXIT_ERROR
    err = capsys.readouterr().err
    assert "error: invalid evaluation settings: threads: Input should be greater than 0." in err, err
    assert "Traceback" not in err
