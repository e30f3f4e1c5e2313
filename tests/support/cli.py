"""The installed ``mlmodelscope`` command run as a user runs it: its own process, a clean environment (the one every
child process of a test gets), a data folder.

Tests of what the CLI prints and exits with go through ``run_cli`` rather than calling ``main`` in-process, because
the entry point, typer and the environment are part of what a user gets.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import CLI


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any MLMODELSCOPE_* variable (the developer's own settings), plus a wide
    uncoloured terminal, unbuffered Python output and ``extra``: what every child process of a test starts with."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    environment.update(extra)
    return environment


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 300, data_dir: Path | None = None
) -> CliRun:
    """Run the installed `mlmodelscope` command as a user would, in its own process.

    Local mode's data folder (NATS, collector database) is ``data_dir``, or a fresh temporary folder.
    """
    environment = clean_environment()
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="mlmodelscope-data-"))
        atexit.register(shutil.rmtree, data_dir, True)
    environment["MLMODELSCOPE_DATA_DIR"] = str(data_dir)
    environment.update(env or {})
    completed = subprocess.run(
        [str(CLI), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return CliRun(completed.returncode, completed.stdout, completed.stderr)
