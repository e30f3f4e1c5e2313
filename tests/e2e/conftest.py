"""The end-to-end tests: the whole pipeline started for real (agents, NATS and the collector as processes, local
mode through ``mlmodelscope evaluate``, the operator in the sandbox), including the tests that kill parts of it.

Every test collected here is marked ``e2e`` (``-m e2e`` selects them, ``-m "not e2e"`` leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox_process import Sandbox

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects, so that the marker takes part in the selection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """``mlmodelscope sandbox up`` running (its kubeconfig written), stopped with SIGTERM at the end."""
    running = Sandbox(tmp_path)
    try:
        yield running
    finally:
        running.stop()
