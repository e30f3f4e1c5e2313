"""The MXNet runtime (.venv-mxnet) seen from the main test session: where it is, running a script in it, and the
digits CNN exported to MXNet by ``scripts/digits_mxnet.py`` as a user would.

MXNet 1.9.1 needs numpy < 1.24 and cannot be imported in the main environment (numpy 2), so the tests run their
MXNet half in a ``.venv-mxnet`` subprocess that prints one JSON line back. Tests that need the runtime carry the
``mxnet`` marker; tests/conftest.py skips them, saying why, where ``make setup`` has not built it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import REPO

MXNET_PYTHON = REPO / ".venv-mxnet" / "bin" / "python"
MXNET_MISSING = f"{MXNET_PYTHON} is missing: `make setup` builds the MXNet environment"
EXPORT_SCRIPT = REPO / "scripts" / "digits_mxnet.py"
ARCHIVE = "digits_cnn.mxnet.tar"


def run_mxnet(script: str, *args: str, timeout_s: float = 300) -> Any:
    """Run ``script`` with the MXNet environment's Python; its last stdout line, parsed as JSON."""
    completed = subprocess.run(
        [str(MXNET_PYTHON), "-W", "error", "-c", script, *args],  # warnings are errors, as under pytest here
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith(("MLMODELSCOPE_", "OMP_", "MXNET_"))},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:] + completed.stdout[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def export_digits(weights: Path, out: Path) -> Path:
    """The digits weights (an npz of torch's state_dict) exported to ``out`` by scripts/digits_mxnet.py; the archive."""
    completed = subprocess.run(
        [str(MXNET_PYTHON), "-W", "error", str(EXPORT_SCRIPT), "--weights", str(weights), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    archive = out / ARCHIVE
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in completed.stdout  # printed for the manifest
    return archive


def with_mxnet_artifact(assets: Path, archive: Path) -> None:
    """Give the scratch digits-cnn manifest the MXNet artifact, and the mxnet framework this checkout's runtime."""
    manifest = assets / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["spec"]["artifacts"] = [a for a in document["spec"]["artifacts"] if a["format"] != "mxnet"]
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    document["spec"]["artifacts"].append({"uri": str(archive), "sha256": sha256, "format": "mxnet", "archive": True})
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    framework = assets / "frameworks" / "mxnet.yaml"
    document = yaml.safe_load(framework.read_text())
    document["spec"]["runtime"]["python"] = str(MXNET_PYTHON)  # the scratch copy is outside the checkout
    framework.write_text(yaml.safe_dump(document, sort_keys=False))
