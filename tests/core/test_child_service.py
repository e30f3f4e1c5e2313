"""The one life cycle of a child service (core.child_service): a real child process, a stand-in Python script that
listens on its port (or exits, stays silent, ignores SIGTERM), so the test sees exactly what ``start`` waits for,
what an early exit or a silent child raises, and which signal ends it."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from mlmodelscope.core.child_service import ChildService, free_port, terminate_all
from mlmodelscope.core.errors import MLModelScopeError

CHILD = """
import signal, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
print(f"child {mode} on {port}", flush=True)
if mode == "exit":
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode != "silent":
    listener = socket.create_server(("127.0.0.1", port))
while True:
    time.sleep(1)
"""


class StandInError(MLModelScopeError):
    """What the stand-in service raises."""


class StandIn(ChildService):
    name = "the stand-in"
    scheme = "tcp"
    error = StandInError
    start_timeout_s = 20.0
    stop_timeout_s = 5.0
    poll_s = 0.02

    def __init__(self, log_path: Path, mode: str) -> None:
        super().__init__(log_path)
        self.mode = mode

    def command(self) -> list[str]:
        return [sys.executable, "-c", CHILD, self.mode, str(self.port)]

    def environment(self) -> dict[str, str]:
        return {"STAND_IN": "1"}

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


def test_start_returns_the_url_once_the_child_answers_and_stop_sends_sigterm(tmp_path: Path) -> None:
    service = StandIn(tmp_path / "logs" / "stand-in.log", "serve")
    assert service.pid is None and not service.running
    assert service.start() == f"tcp://127.0.0.1:{service.port}" == service.url
    assert service.running and service.pid is not None
    assert service.answers()
    service.stop()
    assert not service.running and service._process is not None
    assert service._process.returncode == -signal.SIGTERM
    assert service.log_path.read_text() == f"child serve on {service.port}\n"


def test_a_child_that_exits_while_starting_is_an_error_naming_its_log(tmp_path: Path) -> None:
    service = StandIn(tmp_path / "stand-in.log", "exit")
    with pytest.raises(StandInError) as raised:
        service.start()
    assert raised.value.message == f"the stand-in exited with code 3 while starting on port {service.port}."
    assert raised.value.hint == f"See {service.log_path}."


def test_a_child_that_never_answers_is_stopped_and_reported(tmp_path: Path) -> None:
    service = StandIn(tmp_path / "stand-in.log", "silent")
    with pytest.raises(StandInError) as raised:
        service.start(timeout_s=0.5)
    assert raised.value.message == f"the stand-in was not ready on port {service.port} within 0.5 s."
    assert str(service.log_path) in raised.value.hint
    assert not service.running


def test_wait_ready_before_launch_says_what_to_call(tmp_path: Path) -> None:
    with pytest.raises(StandInError) as raised:
        StandIn(tmp_path / "stand-in.log", "serve").wait_ready()
    assert raised.value.hint == "Call StandIn.launch() first."


def test_stop_kills_a_child_that_ignores_sigterm_and_kill_is_abrupt(tmp_path: Path) -> None:
    stubborn = StandIn(tmp_path / "stubborn.log", "stubborn")
    with stubborn:  # ready means: listening, so the SIGTERM trap is set
        assert stubborn.running
        stubborn.stop(timeout_s=0.5)
        assert stubborn._process is not None and stubborn._process.returncode == -signal.SIGKILL
    crashed = StandIn(tmp_path / "crashed.log", "serve")
    crashed.start()
    crashed.kill()
    assert crashed._process is not None and crashed._process.returncode == -signal.SIGKILL
    crashed.stop()  # a no-op once it is gone


def test_a_restarted_service_appends_to_its_log(tmp_path: Path) -> None:
    service = StandIn(tmp_path / "stand-in.log", "serve")
    first_port = service.port
    with service:
        pass
    service.port = free_port()
    with service:
        assert service.answers()
    lines = service.log_path.read_text().splitlines()
    assert lines == [f"child serve on {first_port}", f"child serve on {service.port}"]


def test_terminate_all_stops_every_survivor_each_by_the_signal_it_needs(tmp_path: Path) -> None:
    services = [StandIn(tmp_path / f"{mode}.log", mode) for mode in ("serve", "stubborn", "serve")]
    for service in services:
        service.start()
    processes = [service._process for service in services if service._process is not None]
    terminate_all(processes, timeout_s=1.0)
    assert [process.returncode for process in processes] == [-signal.SIGTERM, -signal.SIGKILL, -signal.SIGTERM]
