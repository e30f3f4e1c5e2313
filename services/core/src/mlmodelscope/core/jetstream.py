"""The JetStream stream that carries run messages, created the same way by whichever side connects first.

Agents (publishing) and the collector (consuming) may each be the first to reach a fresh NATS server, so both
call ``ensure_stream``; one definition keeps the stream's configuration — subjects, file storage, the
de-duplication window that makes ``Nats-Msg-Id`` effective — from depending on who came first.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from mlmodelscope.core.messages import STREAM_NAME, STREAM_SUBJECTS

DUPLICATE_WINDOW_S = 120.0
# The token a client presents to NATS servers that require one (the chart's Secret, local mode's generated token):
# passed to agents, the CLI and the operator's Jobs through the environment, never in a run spec or command line.
NATS_TOKEN_ENV = "MLMODELSCOPE_NATS_TOKEN"


def stream_config(duplicate_window_s: float = DUPLICATE_WINDOW_S) -> StreamConfig:
    return StreamConfig(
        name=STREAM_NAME,
        subjects=[STREAM_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=duplicate_window_s,
    )


async def ensure_stream(js: Any, *, duplicate_window_s: float = DUPLICATE_WINDOW_S) -> bool:
    """Create the stream if it does not exist (an existing one is left as it is); True when it was created."""
    try:
        await js.stream_info(STREAM_NAME)
    except NotFoundError:
        await js.add_stream(stream_config(duplicate_window_s))
        return True
    return False
