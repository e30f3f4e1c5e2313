"""A service run as a child process on a free 127.0.0.1 port, and the one rule for stopping child processes.

Why: local mode runs two services of its own, the embedded NATS server and the collector, and each had its own
copy of the same life cycle: spawn the process, poll until it answers (or fail with an error naming its log when
it exits early or stays silent), report its pid, whether it runs and its URL, stop it with SIGTERM then SIGKILL,
kill it abruptly for failure tests. ``ChildService`` is that life cycle once; a subclass says only what is its
own: the command line, the environment and the readiness probe (and anything more, such as the collector's
restarts). ``terminate`` and ``terminate_all`` are the SIGTERM-then-SIGKILL rule, also the one
``core.run_supervisor`` stops the agents with.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from mlmodelscope.core.errors import MLModelScopeError

_KILL_WAIT_S = 10.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM a child process, SIGKILL it if it has not exited after ``timeout_s``; no-op if already gone."""
    terminate_all([process] if process is not None else [], timeout_s)


def terminate_all(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM every process still running, wait for all of them together at most ``timeout_s``, then SIGKILL
    the ones left, and reap them all."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()


class ChildService(ABC):
    """A child process serving on ``port`` of 127.0.0.1, its output appended to ``log_path``.

    ``start`` returns its URL once it is ready; ``launch`` and ``wait_ready`` split it, so that a caller's own
    start-up can overlap the service's. A service that exits while starting, or is not ready within the timeout
    (then it is stopped), raises ``error`` naming the log. ``stop``: SIGTERM (a graceful shutdown), then SIGKILL;
    ``kill``: an abrupt death, as a crash would be (failure tests). As a context manager: started, then stopped.

    A subclass sets ``name`` (how errors call it), ``scheme`` (of its URL), ``error`` and the timings, and says
    its ``command``, ``environment`` and readiness probe ``answers``."""

    name: ClassVar[str]
    scheme: ClassVar[str]
    error: ClassVar[type[MLModelScopeError]]
    start_timeout_s: ClassVar[float] = 30.0
    stop_timeout_s: ClassVar[float] = 10.0
    poll_s: ClassVar[float] = 0.1

    def __init__(self, log_path: Path, *, port: int | None = None) -> None:
        self.log_path = log_path
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that runs the service on ``self.port``."""

    @abstractmethod
    def environment(self) -> dict[str, str]:
        """The service's whole environment."""

    @abstractmethod
    def answers(self) -> bool:
        """One readiness probe: True once the service serves."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float | None = None) -> str:
        """Launch the service and return its URL once it is ready."""
        self.launch()
        self.wait_ready(timeout_s)
        return self.url

    def launch(self) -> None:
        """Start the service's process without waiting for it (``wait_ready`` does)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready = False
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), env=self.environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Return once the launched service answers; ``error`` if it exits or is not ready within ``timeout_s``
        (default ``start_timeout_s``)."""
        if self._ready:
            return
        if self._process is None:
            raise self.error(f"{self.name} was not launched.", hint=f"Call {type(self).__name__}.launch() first.")
        limit_s = self.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise self.error(
                    f"{self.name} exited with code {self._process.returncode} while starting on port {self.port}.",
                    hint=f"See {self.log_path}.",
                )
            if self.answers():
                self._ready = True
                return
            time.sleep(self.poll_s)
        self.stop()
        raise self.error(
            f"{self.name} was not ready on port {self.port} within {limit_s:g} s.", hint=f"See {self.log_path}."
        )

    def stop(self, timeout_s: float | None = None) -> None:
        """Graceful stop (SIGTERM), then SIGKILL after ``timeout_s`` (default ``stop_timeout_s``)."""
        terminate(self._process, self.stop_timeout_s if timeout_s is None else timeout_s)

    def kill(self) -> None:
        """Abrupt death (SIGKILL: no shutdown hook), as a crash would be (used by failure tests)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=_KILL_WAIT_S)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
