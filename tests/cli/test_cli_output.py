"""What the CLI prints is printed literally: square brackets in data are not rich markup.

Rich takes ``[a-z0-9]`` or ``[draft]`` for a style tag and drops it, which turned the name pattern in an error into
``'^([-a-z0-9]*)?$'`` and lost the brackets of paths; errors, tables and OK lines now go through consoles with
markup off (``mlmodelscope.cli.terminal``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.support.cli import run_cli
from tests.support.paths import ASSETS

NAME_PATTERN = "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"


def _draft_assets(tmp_path: Path) -> Path:
    root = tmp_path / "[draft]"
    shutil.copytree(ASSETS, root, ignore=shutil.ignore_patterns("examples"))
    return root


def test_an_error_keeps_the_regex_and_the_bracketed_path(tmp_path: Path) -> None:
    root = _draft_assets(tmp_path)
    path = root / "datasets" / "digits.yaml"
    document = yaml.safe_load(path.read_text())
    document["metadata"]["name"] = "Digits_Test"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    run = run_cli("--assets", "[draft]", "datasets", "list", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("error: [draft]/datasets/digits.yaml: invalid Dataset: metadata.name"), run.stderr
    assert NAME_PATTERN in run.stderr


def test_tables_and_ok_lines_keep_bracketed_paths(tmp_path: Path) -> None:
    _draft_assets(tmp_path)
    listing = run_cli("--assets", "[draft]", "datasets", "list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "[draft]/datasets/digits.yaml" in listing.stdout
    checked = run_cli("validate", "[draft]/datasets/digits.yaml", cwd=tmp_path)
    assert checked.stdout == "OK [draft]/datasets/digits.yaml: Dataset digits\n", checked.stderr
