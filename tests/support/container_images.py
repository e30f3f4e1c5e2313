"""The container images the smoke tests build and run: which ones, and when they cannot be built here.

Shared by tests/deploy/test_image_smoke.py and tests/deploy/test_sandbox_podman.py; the ``built`` fixture
(tests/deploy/conftest.py) builds them with scripts/build_images.py, as ``make images`` does.
"""

from __future__ import annotations

import shutil

import pytest

SMOKE_IMAGES = ("collector", "operator", "agent-null", "agent-onnxruntime")
BUILD_TIMEOUT_S = 1800

needs_podman = pytest.mark.skipif(
    shutil.which("podman") is None or shutil.which("buildah") is None,
    reason="buildah/podman are not installed (make images-test installs Debian's buildah, podman, runc)",
)
