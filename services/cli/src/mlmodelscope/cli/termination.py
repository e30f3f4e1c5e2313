"""SIGTERM and SIGHUP end a command the way Ctrl-C does: by unwinding it, so that what it started is stopped.

Python's default for SIGTERM and SIGHUP is to die at once, without running ``finally`` blocks, which would leave
local mode's children (the embedded nats-server, the collector, the agents) running: a closed terminal, ``timeout``
or a CI runner's cancel would orphan an agent that keeps evaluating. Inside ``stopping_on_termination_signals``
those signals raise ``TerminationSignal`` in the main thread instead, and every ``finally`` on the way out stops
its processes. Later signals are ignored while that cleanup runs, so a second SIGTERM cannot cut it short.
``signals_deferred`` holds a signal back over a few statements (start a process, then record it) so that nothing
is started without being recorded for the cleanup.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class _Deferral:
    depth: int = 0
    pending: int | None = None


_deferral = _Deferral()  # signal handlers run in the main thread only, so one record is enough


class TerminationSignal(BaseException):
    """SIGTERM or SIGHUP arrived; a BaseException so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def _unwind(signum: int) -> TerminationSignal:
    for other in TERMINATION_SIGNALS:
        signal.signal(other, signal.SIG_IGN)  # the cleanup that the exception starts must run to its end
    return TerminationSignal(signum)


def _raise_once(signum: int, _frame: FrameType | None) -> None:
    if _deferral.depth:
        # Not ignored yet: a process started in the deferred block would inherit SIG_IGN and ignore SIGTERM.
        _deferral.pending = signum
        return
    raise _unwind(signum)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A termination signal that arrives inside this block is raised when it ends, not in the middle of it."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
    if not _deferral.depth and _deferral.pending is not None:
        signum, _deferral.pending = _deferral.pending, None
        raise _unwind(signum)


@contextlib.contextmanager
def stopping_on_termination_signals() -> Iterator[None]:
    """Within this block SIGTERM/SIGHUP raise ``TerminationSignal``; the previous handlers come back afterwards."""
    previous = {signum: signal.getsignal(signum) for signum in TERMINATION_SIGNALS}
    for signum in TERMINATION_SIGNALS:
        signal.signal(signum, _raise_once)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
