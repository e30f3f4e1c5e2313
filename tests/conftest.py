"""Shared fixtures: the repository's assets, a scratch assets folder, and running the real CLI."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
CLI = Path(sys.executable).parent / "mlmodelscope"


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def scratch_assets(tmp_path: Path) -> Path:
    """A copy of the repository's assets that a test may break."""
    target = tmp_path / "assets"
    shutil.copytree(ASSETS, target, ignore=shutil.ignore_patterns("examples"))
    return target


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 300, data_dir: Path | None = None
) -> CliRun:
    """Run the installed `mlmodelscope` command as a user would, in its own process.

    Local mode's data folder (NATS, collector database) is ``data_dir``, or a fresh temporary folder.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="mlmodelscope-data-"))
        atexit.register(shutil.rmtree, data_dir, True)
    environment["MLMODELSCOPE_DATA_DIR"] = str(data_dir)
    environment.update(env or {})
    completed = subprocess.run(
        [str(CLI), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return CliRun(completed.returncode, completed.stdout, completed.stderr)
