"""HTTP artifact downloads against a real, scripted HTTP server on 127.0.0.1: the overall deadline, retries with
backoff for transient failures only, and Ctrl-C, with nothing partial ever left in the cache.

The server counts the requests it gets, so "retried" and "not retried" are what the server saw. Deadlines are
small (1 s) and the assertions are on behaviour (which error, which message, how many requests, what is cached),
never on elapsed time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlmodelscope.core.artifacts.settings import DownloadSettings
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import ArtifactError, ArtifactNotFoundError, StoreUnreachableError
from tests.support.paths import REPO
from tests.support.pipeline_processes import resolved_resources

DATA = bytes(range(256)) * 64  # 16 KiB
TRICKLE_INTERVAL_S = 0.1
TRICKLE_BYTES = 600  # at most a minute of trickling; the client hangs up long before


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*") if p.is_file())


class _Server(http.server.ThreadingHTTPServer):
    """Answers each path as ``script[path](handler, n)`` says, n being the how-manieth request for that path."""

    script: dict[str, Callable[[_Handler, int], None]]
    counts: Counter[str]
    trickled_bytes: int
    lock: threading.Lock
    stopping: threading.Event


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.counts[self.path] += 1
            n = self.server.counts[self.path]
        route = self.server.script.get(self.path)
        if route is None:
            self.send_error(404, "no such file")
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up at its deadline
            route(self, n)

    def body(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def trickle(self) -> None:
        """Headers at once, then one byte every 0.1 s: never idle long enough for a read timeout."""
        self.send_response(200)
        self.send_header("Content-Length", str(TRICKLE_BYTES))
        self.end_headers()
        for _ in range(TRICKLE_BYTES):
            if self.server.stopping.wait(TRICKLE_INTERVAL_S):
                return
            self.wfile.write(b"x")
            self.wfile.flush()
            with self.server.lock:
                self.server.trickled_bytes += 1

    def silence(self) -> None:
        """Headers, then nothing until the test ends."""
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.flush()
        self.server.stopping.wait(60)


@dataclass
class Site:
    url: str
    server: _Server

    def requests(self, path: str) -> int:
        with self.server.lock:
            return self.server.counts[path]

    @property
    def trickled_bytes(self) -> int:
        with self.server.lock:
            return self.server.trickled_bytes


def _flaky(failures: int) -> Callable[[_Handler, int], None]:
    def route(handler: _Handler, n: int) -> None:
        if n <= failures:
            handler.status(503, {"Retry-After": "0"})
        else:
            handler.body(DATA)

    return route


def _cut_short_once(handler: _Handler, n: int) -> None:
    if n == 1:  # announces the whole file, sends half, hangs up
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(DATA)))
        handler.end_headers()
        handler.wfile.write(DATA[: len(DATA) // 2])
        handler.close_connection = True
    else:
        handler.body(DATA)


SCRIPT: dict[str, Callable[[_Handler, int], None]] = {
    "/model.onnx": lambda h, n: h.body(DATA),
    "/trickle.onnx": lambda h, n: h.trickle(),
    "/silent.onnx": lambda h, n: h.silence(),
    "/flaky.onnx": _flaky(2),
    "/throttled.onnx": lambda h, n: h.status(429, {"Retry-After": "0"}) if n == 1 else h.body(DATA),
    "/cut-once.onnx": _cut_short_once,
    "/down.onnx": lambda h, n: h.status(503),
    "/forbidden.onnx": lambda h, n: h.status(403),
}


@contextlib.contextmanager
def _serving(context: ssl.SSLContext | None = None) -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.script, server.counts, server.trickled_bytes = SCRIPT, Counter(), 0
    server.lock, server.stopping = threading.Lock(), threading.Event()
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def site() -> Iterator[Site]:
    with _serving() as server:
        yield Site(url=f"http://127.0.0.1:{server.server_address[1]}", server=server)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _store(cache_dir: Path, **settings: float) -> ArtifactStore:
    return ArtifactStore(cache_dir, downloads=DownloadSettings(**{"backoff_s": 0.01, **settings}))


# --- the deadline ----------------------------------------------------------------------------------------------


def test_a_trickling_server_is_cut_off_at_the_deadline(site: Site, cache_dir: Path) -> None:
    url = f"{site.url}/trickle.onnx"
    store = _store(cache_dir, deadline_s=1.0, read_timeout_s=30.0)
    with pytest.raises(StoreUnreachableError) as info:
        store.fetch(url, None)
    message = info.value.message
    assert url in message and "deadline of 1 s" in message, message
    assert "MLMODELSCOPE_DOWNLOAD_DEADLINE_S" in info.value.hint
    assert site.requests("/trickle.onnx") == 1  # a deadline is final: not retried
    assert cache_files(cache_dir) == []


def test_a_server_silent_after_its_headers_is_cut_off_at_the_deadline(site: Site, cache_dir: Path) -> None:
    """The read timeout (30 s) is capped by the time left, so silence ends at the deadline, not after it."""
    url = f"{site.url}/silent.onnx"
    with pytest.raises(StoreUnreachableError) as info:
        _store(cache_dir, deadline_s=1.0, read_timeout_s=30.0).fetch(url, None)
    assert url in info.value.message and "deadline of 1 s" in info.value.message
    assert cache_files(cache_dir) == []


def test_no_retry_pause_runs_past_the_deadline(site: Site, cache_dir: Path) -> None:
    with pytest.raises(StoreUnreachableError) as info:
        _store(cache_dir, deadline_s=1.0, attempts=5, backoff_s=60.0).fetch(f"{site.url}/down.onnx", None)
    assert "deadline of 1 s" in info.value.message
    assert site.requests("/down.onnx") == 1
    assert cache_files(cache_dir) == []


# --- retries ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "requests"), [("/flaky.onnx", 3), ("/throttled.onnx", 2), ("/cut-once.onnx", 2)], ids=str
)
def test_transient_failures_are_retried_until_the_download_succeeds(
    site: Site, cache_dir: Path, path: str, requests: int
) -> None:
    fetched = _store(cache_dir, attempts=4).fetch(f"{site.url}{path}", sha(DATA))
    assert fetched.read_bytes() == DATA  # a retry starts the file again: the digest is that of the whole file
    assert site.requests(path) == requests
    assert cache_files(cache_dir) == [fetched]


def test_a_server_that_stays_down_is_tried_attempts_times(site: Site, cache_dir: Path) -> None:
    url = f"{site.url}/down.onnx"
    with pytest.raises(StoreUnreachableError) as info:
        _store(cache_dir, attempts=3).fetch(url, None)
    assert url in info.value.message and "503" in info.value.message and "tried 3 times" in info.value.message
    assert "MLMODELSCOPE_DOWNLOAD_ATTEMPTS" in info.value.hint
    assert site.requests("/down.onnx") == 3
    assert cache_files(cache_dir) == []


@pytest.mark.parametrize(
    ("path", "error"), [("/missing.onnx", ArtifactNotFoundError), ("/forbidden.onnx", ArtifactError)], ids=str
)
def test_404_and_403_are_not_retried(site: Site, cache_dir: Path, path: str, error: type[Exception]) -> None:
    url = f"{site.url}{path}"
    with pytest.raises(error) as info:
        _store(cache_dir, attempts=4).fetch(url, None)
    assert not isinstance(info.value, StoreUnreachableError)
    assert url in str(info.value)
    assert site.requests(path) == 1
    assert cache_files(cache_dir) == []


# --- settings --------------------------------------------------------------------------------------------------


def test_download_settings_from_env() -> None:
    assert DownloadSettings.from_env({}) == DownloadSettings()
    settings = DownloadSettings.from_env(
        {
            "MLMODELSCOPE_DOWNLOAD_DEADLINE_S": "90",
            "MLMODELSCOPE_DOWNLOAD_READ_TIMEOUT_S": "2.5",
            "MLMODELSCOPE_DOWNLOAD_CONNECT_TIMEOUT_S": "1",
            "MLMODELSCOPE_DOWNLOAD_ATTEMPTS": "2",
            "MLMODELSCOPE_DOWNLOAD_BACKOFF_S": "0.5",
            "MLMODELSCOPE_DOWNLOAD_MAX_BACKOFF_S": "1.5",
        }
    )
    assert settings == DownloadSettings(
        deadline_s=90, read_timeout_s=2.5, connect_timeout_s=1, attempts=2, backoff_s=0.5, max_backoff_s=1.5
    )
    assert [settings.backoff_before(retry) for retry in (1, 2, 3)] == [0.5, 1.0, 1.5]


@pytest.mark.parametrize(
    ("name", "value"),
    [("MLMODELSCOPE_DOWNLOAD_DEADLINE_S", "soon"), ("MLMODELSCOPE_DOWNLOAD_DEADLINE_S", "0"),
     ("MLMODELSCOPE_DOWNLOAD_ATTEMPTS", "0"), ("MLMODELSCOPE_DOWNLOAD_READ_TIMEOUT_S", "-1")],
)  # fmt: skip
def test_download_settings_from_env_name_the_bad_variable(name: str, value: str) -> None:
    with pytest.raises(ArtifactError) as info:
        DownloadSettings.from_env({name: value})
    assert f"{name}={value!r}" in info.value.message and info.value.hint


# --- through the agent: environment settings and Ctrl-C ---------------------------------------------------------


def _agent_run(tmp_path: Path, url: str) -> tuple[Path, Path]:
    """Assets whose only model is fetched from ``url``, and the agent's run spec (no NATS: nothing published)."""
    assets = tmp_path / "assets"
    for kind in ("models", "frameworks", "datasets"):
        (assets / kind).mkdir(parents=True)
    (assets / "frameworks" / "onnxruntime.yaml").write_bytes((REPO / "assets/frameworks/onnxruntime.yaml").read_bytes())
    (assets / "datasets" / "synthetic-imagenet.yaml").write_bytes(
        (REPO / "assets/datasets/synthetic-imagenet.yaml").read_bytes()
    )
    model = {
        "apiVersion": "mlmodelscope.org/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "remote"},
        "spec": {
            "task": "image_classification",
            "framework": {"name": "onnxruntime"},
            "artifacts": [{"uri": url, "sha256": sha(b"never completes"), "format": "onnx"}],
            "inputs": [{"name": "x", "shape": [3, 224, 224]}],
            "outputs": [{"name": "y", "shape": [1000]}],
            "dataset": "synthetic-imagenet",
        },
    }
    (assets / "models" / "remote.yaml").write_text(json.dumps(model), encoding="utf-8")
    spec = {
        "run_id": "00000000-0000-4000-8000-000000000001",
        "evaluation_id": "downloads",
        "model": "remote",
        "framework": "onnxruntime",
        "dataset": "synthetic-imagenet",
        "resources": resolved_resources(assets, "remote", "onnxruntime"),
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
    }
    spec_path = tmp_path / "run.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    return spec_path, tmp_path / "cache"


def _agent(spec_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mlmodelscope.agent", "--spec", str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_the_agent_reads_the_deadline_from_its_environment(site: Site, tmp_path: Path) -> None:
    url = f"{site.url}/trickle.onnx"
    spec_path, cache_dir = _agent_run(tmp_path, url)
    agent = _agent(spec_path, MLMODELSCOPE_DOWNLOAD_DEADLINE_S="1")
    _, stderr = agent.communicate(timeout=120)
    assert agent.returncode == 1, stderr
    assert url in stderr and "deadline of 1 s" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert site.requests("/trickle.onnx") == 1
    assert cache_files(cache_dir) == []


def test_ctrl_c_during_a_download_prints_no_traceback_and_caches_nothing(site: Site, tmp_path: Path) -> None:
    spec_path, cache_dir = _agent_run(tmp_path, f"{site.url}/trickle.onnx")
    agent = _agent(spec_path)
    try:
        for _ in range(1200):  # until the download is under way (bounded: 2 minutes)
            if site.trickled_bytes >= 3 or agent.poll() is not None:
                break
            time.sleep(0.1)
        assert agent.poll() is None, agent.communicate()[1]
        assert list((cache_dir / "tmp").glob("*.part")), "the download should be in progress"
        agent.send_signal(signal.SIGINT)
        _, stderr = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    assert agent.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stderr
    assert cache_files(cache_dir) == []


@pytest.fixture
def self_signed_site(tmp_path: Path) -> Iterator[str]:
    """An https server whose certificate nobody trusts (made with the openssl binary)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with _serving(context) as server:
        yield f"https://127.0.0.1:{server.server_address[1]}"


def test_an_untrusted_certificate_is_permanent_not_retried(self_signed_site: str, cache_dir: Path) -> None:
    url = f"{self_signed_site}/model.onnx"
    with pytest.raises(ArtifactError) as info:
        _store(cache_dir, attempts=2, backoff_s=0.01).fetch(url, None)  # a retry would end unreachable
    assert not isinstance(info.value, StoreUnreachableError)
    assert url in info.value.message and "certificate" in info.value.message
    assert cache_files(cache_dir) == []
