"""The publisher's first connection to NATS: bounded in time, and given up at once when NATS refuses the credentials.

nats-py's first connect retries forever with ``max_reconnect_attempts=-1`` (reporting each failure to the error
callback only), so a publisher would hang on a NATS that is not there; this bounds it by ``give_up_after_s`` and
watches the connection report for refused credentials, which no retry can fix. Once connected, the client
reconnects on its own (a NATS restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import nats

from mlmodelscope.agent.bus.connection import connect_options
from mlmodelscope.agent.bus.errors import PublishError
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV


async def first_connect(
    url: str, run_id: str, token: str | None, *, connect_timeout_s: float, give_up_after_s: float
) -> Any:
    """A connected NATS client for the publisher of ``run_id``; PublishError when that cannot happen in time."""
    deadline = time.monotonic() + give_up_after_s
    while True:
        left_s = max(deadline - time.monotonic(), 0.05)
        report, options = connect_options(url, f"run {run_id}", token)
        opening = asyncio.ensure_future(_open(url, run_id, connect_timeout_s, options))
        refused = asyncio.ensure_future(report.credentials_refused.wait())
        done, _ = await asyncio.wait({opening, refused}, timeout=left_s, return_when=asyncio.FIRST_COMPLETED)
        for task in (opening, refused):
            if task not in done:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if refused in done:
            raise PublishError(
                f"NATS at {url} refused the agent's credentials ({report.last_error}).",
                hint=f"Give the agent the server's token in {NATS_TOKEN_ENV} (the chart's NATS Secret).",
            )
        error: BaseException | None = None
        if opening in done:
            error = opening.exception()
            if error is None:
                return opening.result()
        if time.monotonic() >= deadline:
            raise PublishError(
                f"cannot connect to NATS at {url} for {give_up_after_s:g} s.",
                hint="Check the NATS URL and that the server runs.",
            ) from error
        await asyncio.sleep(0.2)


async def _open(url: str, run_id: str, connect_timeout_s: float, options: dict[str, Any]) -> Any:
    return await nats.connect(
        url,
        name=f"mlmodelscope-agent-{run_id}",
        connect_timeout=connect_timeout_s,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        allow_reconnect=True,
        **options,
    )
