"""Fixtures of the deployment tests (the Helm chart, the CRDs, the images, the dashboards, the generated files): a
HOME for helm, and the smoke images built (or found up to date in the layer cache)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.build_images import BY_KEY
from tests.support.container_images import BUILD_TIMEOUT_S, SMOKE_IMAGES
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm's own HOME (no repositories, no cache shared with the user), one per module."""
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """The smoke images, built (or found up to date in the layer cache); {key: reference}."""
    command = [sys.executable, str(REPO / "scripts" / "build_images.py"), "--images", ",".join(SMOKE_IMAGES)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {key: BY_KEY[key].reference() for key in SMOKE_IMAGES}
