"""Usage errors through the installed ``mlmodelscope`` command: the usage line, the problem, a suggestion, exit 2.

Every case runs the entry point as a user does (a subprocess), because the bug this guards against lived between
typer and the entry point: typer's vendored click exceptions escaped ``main`` as tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli

USAGE_ERRORS = [
    pytest.param(
        ["frameworks", "show", "onnxruntime"],
        "mlmodelscope frameworks",
        ["No such command 'show'", "Did you mean 'mlmodelscope datasets show' or 'mlmodelscope models show'?"],
        id="command-of-another-group",
    ),
    pytest.param(["evalute"], "mlmodelscope", ["No such command 'evalute'", "Did you mean 'evaluate'"], id="typo"),
    pytest.param(
        ["frameworks", "nonsense"],
        "mlmodelscope frameworks",
        ["No such command 'nonsense'", "The commands of 'mlmodelscope frameworks' are: list."],
        id="command-without-match",
    ),
    pytest.param(["evaluate", "--bogus"], "mlmodelscope evaluate", ["No such option: --bogus."], id="option"),
    pytest.param(
        ["evaluate", "--modle", "digits-cnn"],
        "mlmodelscope evaluate",
        ["No such option: --modle", "Did you mean '--mode' or '--model'?"],
        id="option-typo",
    ),
    pytest.param(
        ["runs", "list", "--limt", "3"],
        "mlmodelscope runs list",
        ["No such option: --limt", "Did you mean '--limit'?"],
        id="nested-option-typo",
    ),
    pytest.param(
        ["evaluate", "--assets", "elsewhere"],
        "mlmodelscope evaluate",
        ["'--assets' is an option of 'mlmodelscope': put it right after 'mlmodelscope', before 'evaluate'"],
        id="option-of-the-parent",
    ),
    pytest.param(
        ["--framework", "onnxruntime", "evaluate"],
        "mlmodelscope",
        ["'--framework' is an option of ", "'mlmodelscope evaluate'", "put it after the command's name."],
        id="option-of-a-subcommand",
    ),
    pytest.param(
        ["evaluate", "--model"], "mlmodelscope evaluate", ["Option '--model' requires an argument."], id="no-value"
    ),
    pytest.param(["report"], "mlmodelscope report", ["Missing argument"], id="missing-argument"),
    pytest.param(["validate"], "mlmodelscope validate", ["Missing argument 'FILE'"], id="missing-file"),
    pytest.param(["--version"], "mlmodelscope", ["No such option: --version."], id="root-option"),
]


@pytest.mark.parametrize(("argv", "command", "fragments"), USAGE_ERRORS)
def test_usage_errors(tmp_path: Path, argv: list[str], command: str, fragments: list[str]) -> None:
    run = run_cli(*argv, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert "Traceback" not in output, output
    assert run.returncode == 2, output
    lines = run.stderr.splitlines()
    assert lines[0].startswith(f"Usage: {command} "), run.stderr
    assert lines[1].startswith("error: "), run.stderr
    for fragment in fragments:
        assert fragment in lines[1], run.stderr
    assert lines[2] == f"Try '{command} --help' for help.", run.stderr


@pytest.mark.parametrize(
    ("argv", "usage", "listed"),
    [
        pytest.param(["runs"], "Usage: mlmodelscope runs", "list", id="subgroup"),
        pytest.param([], "Usage: mlmodelscope [OPTIONS] COMMAND", "evaluate", id="root"),
    ],
)
def test_a_group_without_a_command_shows_its_help(tmp_path: Path, argv: list[str], usage: str, listed: str) -> None:
    run = run_cli(*argv, cwd=tmp_path)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    assert run.returncode == 2
    assert usage in run.stdout
    assert listed in run.stdout
    assert run.stderr == "", run.stderr


def test_every_help_is_the_plain_one_with_room_for_the_text(tmp_path: Path) -> None:
    """Subcommands' help is click's plain help like the root's (no rich boxes whose help column, at 80 columns, was
    ~15 characters wide), and a group lists each command's whole first help paragraph, never cut with "..."."""
    env = {"COLUMNS": "80"}
    evaluate = run_cli("evaluate", "--help", cwd=tmp_path, env=env)
    assert evaluate.returncode == 0, evaluate.stderr
    assert (
        "-m, --model <str>  " in evaluate.stdout and "Model name (see `mlmodelscope models list`)." in evaluate.stdout
    )
    models = run_cli("models", "--help", cwd=tmp_path, env=env)
    assert models.returncode == 0, models.stderr
    listed = " ".join(models.stdout.partition("Commands:")[2].split())
    assert "list List the registered models (with --dataset: which of them fit that dataset, with the reasons" in listed
    for run in (evaluate, models):
        assert not set("╭│╰") & set(run.stdout), run.stdout
        assert max(len(line) for line in run.stdout.splitlines()) <= 80, run.stdout
