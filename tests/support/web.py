"""The environment the browser and report tests share: real evaluations in a local data folder, a collector
serving them with the web UI (NATS, launcher and token configured); the ``web``, ``browser`` and ``page`` fixtures
(tests/conftest.py) hand it and headless Chromium, driven by Playwright, to the tests.

Built once per test session on first use (``shared_environment()``) and torn down at exit, because the real evaluations
take tens of seconds: the collector's web and report tests and the CLI's ``report`` tests all read it. The evaluations
use a minimal copy of the committed digits assets (digits-cnn, onnxruntime, the digits dataset), so manifests being
edited elsewhere in ./assets cannot break them.

Chromium is Debian's (``/usr/bin/chromium``, package ``chromium``), driven by Playwright with ``executable_path``;
no browser is ever downloaded. Screenshots go to ``$MLMODELSCOPE_TEST_ARTIFACTS`` (default
``results/test-artifacts/web``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlmodelscope.cli.local import CollectorProcess
from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from tests.support.cli import run_cli
from tests.support.paths import ASSETS, REPO

CHROMIUM = Path(os.environ.get("MLMODELSCOPE_CHROMIUM", "/usr/bin/chromium"))
TOKEN = "web-ui-test-token"
ARTIFACTS = Path(os.environ.get("MLMODELSCOPE_TEST_ARTIFACTS", REPO / "results" / "test-artifacts" / "web"))
# Flags for a closed network: no background connections, sync or component updates (see the machine notes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def minimal_assets(root: Path) -> Path:
    """digits-cnn, onnxruntime and the digits dataset with their committed artifacts, nothing else."""
    for folder in ("models", "frameworks", "datasets"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSETS / "models" / "digits-cnn.yaml", root / "models")
    shutil.copy(ASSETS / "frameworks" / "onnxruntime.yaml", root / "frameworks")
    shutil.copy(ASSETS / "datasets" / "digits.yaml", root / "datasets")
    shutil.copytree(ASSETS / "artifacts" / "digits", root / "artifacts" / "digits")
    return root


@dataclass
class WebEnvironment:
    root: Path
    assets: Path
    data: Path
    cache: Path
    url: str = ""
    framework_run: str = ""
    sweep_runs: dict[int, str] = field(default_factory=dict)
    sweep_evaluation: str = ""
    nats: EmbeddedNatsServer | None = None
    collector: CollectorProcess | None = None

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=120)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def close(self) -> None:
        if self.collector is not None:
            self.collector.stop(timeout_s=15)
        if self.nats is not None:
            self.nats.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _evaluate(env: WebEnvironment, *args: str) -> dict[str, Any]:
    output = env.root / f"result-{len(list(env.root.glob('result-*')))}.json"
    run = run_cli(
        "--assets",
        str(env.assets),
        "--cache-dir",
        str(env.cache),
        "evaluate",
        "-m",
        "digits-cnn",
        "-f",
        "onnxruntime",
        "--min-duration",
        "1s",
        "--output",
        str(output),
        *args,
        cwd=env.root,
        data_dir=env.data,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    document: dict[str, Any] = json.loads(output.read_text())
    return document


def _start_collector(env: WebEnvironment) -> None:
    """The collector as local mode starts it, on the evaluations' database, with the UI's launcher and token."""
    prefix = "MLMODELSCOPE_COLLECTOR_"
    env.collector = CollectorProcess(
        f"sqlite:///{env.data / 'collector.db'}",
        env.nats.url if env.nats else None,
        env.root / "collector.log",
        settings={
            prefix + "API_TOKEN": TOKEN,
            prefix + "ASSETS": str(env.assets),
            prefix + "LAUNCH_CACHE_DIR": str(env.cache),
            prefix + "LAUNCH_RUNS_DIR": str(env.data / "ui-runs"),
            prefix + "REGRESSION_CHECK_INTERVAL_S": "0.5",
        },
    )
    env.collector.start(timeout_s=60)
    env.url = env.collector.url


_SHARED: list[WebEnvironment] = []


def shared_environment() -> WebEnvironment:
    """Evaluate (framework trace; a 1,4 batch sweep), then serve the data folder with the UI; once per session."""
    if _SHARED:
        return _SHARED[0]
    root = Path(tempfile.mkdtemp(prefix="mlmodelscope-web-"))
    env = WebEnvironment(root=root, assets=minimal_assets(root / "assets"), data=root / "data", cache=root / "cache")
    try:
        traced = _evaluate(env, "--trace-level", "framework")
        env.framework_run = traced["id"]
        sweep = _evaluate(env, "--batch-size", "1,4")
        env.sweep_evaluation = sweep["evaluation_id"]
        env.sweep_runs = {r["requested_settings"]["batch_size"]: r["id"] for r in sweep["results"]}
        env.nats = EmbeddedNatsServer(root / "nats")
        env.nats.start()
        _start_collector(env)
    except BaseException:
        env.close()
        raise
    _SHARED.append(env)
    atexit.register(env.close)
    return env
