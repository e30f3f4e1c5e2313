"""Noticing SIGTERM at once, even while the main thread is inside LoadGen.

A pod being deleted (or its Evaluation cancelled) gets SIGTERM, then SIGKILL after the grace period. Python runs
signal handlers only in the main thread between bytecodes, and the agent's main thread spends the run inside
LoadGen's ``StartTest`` (C++), so a plain handler would run only after the test, too late. The C-level handler
does write the signal number to the wakeup fd at once, though (``signal.set_wakeup_fd``): ``SigtermWatcher``
reads that fd in its own thread and calls back within milliseconds.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do, the watcher thread already acted on the wakeup byte."""


class SigtermWatcher:
    """Within ``with``: SIGTERM calls ``on_sigterm`` once, in a thread of its own; outside, SIGTERM is as before.

    Only the main thread can install signal handlers; used from any other thread the watcher does nothing.
    """

    def __init__(self, on_sigterm: Callable[[], None]) -> None:
        self._on_sigterm = on_sigterm
        self._active = False
        self._previous_handler: Any = None
        self._previous_fd = -1
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SigtermWatcher:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_handler = signal.signal(signal.SIGTERM, _noted)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._active = True
        self._thread = threading.Thread(target=self._watch, name="sigterm-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._active:
            return
        signal.set_wakeup_fd(self._previous_fd)
        signal.signal(signal.SIGTERM, self._previous_handler)
        self._active = False
        assert self._writer is not None and self._reader is not None
        with contextlib.suppress(OSError):
            self._writer.shutdown(socket.SHUT_RDWR)
        self._writer.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._reader.close()

    def _watch(self) -> None:
        assert self._reader is not None
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return  # closed by __exit__
            if signal.SIGTERM in data:
                self._on_sigterm()
                return
