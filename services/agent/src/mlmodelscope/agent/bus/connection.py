"""How the agent's (and the CLI's) NATS clients connect: with the bus's credentials, and quietly.

Credentials: the NATS servers MLModelScope starts require a token (the chart's Secret, local mode's generated one),
read from ``MLMODELSCOPE_NATS_TOKEN``; it is passed through the environment, never in a run spec or on a command
line. A server without authorization accepts a client that sends one.

Quiet: nats-py reports every failed reconnect attempt through its error callback, whose default logs a full
traceback each time (hundreds per NATS outage). ``ConnectionReport`` replaces the callbacks: the first problem of
an outage is one log line, repeats are silent until the client is connected again; ``quiet_nats_logging`` keeps
nats-py's own logger from printing the tracebacks it logs directly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import nats.errors

from mlmodelscope.core.jetstream import NATS_TOKEN_ENV

log = logging.getLogger(__name__)

_TOKEN_BYTES = 32


def nats_token(environ: Mapping[str, str]) -> str | None:
    """The bus token from the environment (``MLMODELSCOPE_NATS_TOKEN``); None when unset or blank."""
    token = environ.get(NATS_TOKEN_ENV, "").strip()
    return token or None


def generate_token() -> str:
    """A fresh random token for a NATS server this process starts (URL-safe, 256 bits). The letter prefix keeps
    nats-server from reading it as a number or a boolean when its config takes it from the environment."""
    return "mlms" + secrets.token_urlsafe(_TOKEN_BYTES)


def refused_credentials(error: BaseException) -> bool:
    """True when NATS refused the client's credentials (retrying cannot help)."""
    return isinstance(error, nats.errors.AuthorizationError) or "authorization violation" in str(error).lower()


def quiet_nats_logging() -> None:
    """nats-py's logger prints only what is critical: ``ConnectionReport`` says what matters, once."""
    logging.getLogger("nats").setLevel(logging.CRITICAL)


class ConnectionReport:
    """nats-py callbacks that log the first error of an outage as one line, and nothing more until reconnected."""

    def __init__(self, url: str, who: str) -> None:
        self.url = url
        self.who = who
        self.errors = 0
        self.last_error = ""
        self.credentials_refused = asyncio.Event()  # retrying cannot help: whoever waits on the connect gives up
        self._reported = False

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        return {
            "error_cb": self.on_error,
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
        }

    async def on_error(self, error: Exception) -> None:
        self.errors += 1
        self.last_error = str(error) or type(error).__name__
        if refused_credentials(error):
            self.credentials_refused.set()
        if not self._reported:
            self._reported = True
            detail = str(error) or type(error).__name__
            log.warning("%s: NATS at %s: %s (retrying quietly)", self.who, self.url, detail)

    async def on_disconnected(self) -> None:
        """The error callback says why; a disconnect alone is not worth a line."""

    async def on_reconnected(self) -> None:
        if self._reported:
            log.warning("%s: NATS at %s is reachable again", self.who, self.url)
        self._reported = False


def connect_options(url: str, who: str, token: str | None) -> tuple[ConnectionReport, dict[str, Any]]:
    """The report and the keyword arguments (callbacks and credentials) every agent-side client connects with."""
    report = ConnectionReport(url, who)
    options = report.options()
    if token:
        options["token"] = token
    return report, options
