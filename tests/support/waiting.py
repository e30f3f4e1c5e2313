"""Waiting, bounded, for something a test cannot be told about: one poll loop for synchronous checks and one for
asynchronous ones (the collector's app, the operator against KMock), each failing with what it waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``check`` until it returns something other than None/False; AssertionError after ``timeout_s``.

    ``ignoring``: exceptions that mean "not yet" (a server not listening yet), not a failure."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except ignoring:
            value = None
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout_s: float = 20, what: str = "condition", interval_s: float = 0.1
) -> T:
    """Await ``check`` until it returns something truthy, and return that; AssertionError after ``timeout_s``.

    It sleeps between checks without blocking the event loop, so whatever else runs in it (KMock, the operator,
    the collector's consumer) goes on meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)
