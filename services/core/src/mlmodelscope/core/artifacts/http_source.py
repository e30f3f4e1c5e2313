"""Downloading artifacts over HTTP(S) with httpx, streamed to disk, within a deadline and with bounded retries.

Status codes and transport failures are mapped onto the core's error types: 404/410 mean the artifact does not
exist and 401/403 that access is refused (neither is retried); 5xx, 429, timeouts, connection errors and bodies
cut short may pass, so they are tried again (``DownloadSettings.attempts`` in all, exponential backoff, honouring
``Retry-After``) and end as ``StoreUnreachableError`` when every attempt failed.

httpx's timeouts bound each wait, not the whole transfer: a server that sends one byte every few seconds never
trips a read timeout. So the download also has an overall deadline (``deadline_s``, retries and pauses included),
checked each time bytes arrive; every connect and read timeout is capped by the time left, so a silent server is
cut off at the deadline too. A retry starts the file again from its first byte.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from mlmodelscope.core.artifacts.digests import HashingWriter
from mlmodelscope.core.artifacts.locations import HttpObject
from mlmodelscope.core.artifacts.settings import ATTEMPTS_ENV, DEADLINE_ENV, READ_TIMEOUT_ENV, DownloadSettings
from mlmodelscope.core.errors import ArtifactError, ArtifactNotFoundError, StoreUnreachableError

logger = logging.getLogger(__name__)

# The bytes hashed must be the bytes the server stores, never a transfer-decoded variant of them.
_HEADERS = {"Accept-Encoding": "identity"}

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class _Deadline:
    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends_at = clock() + seconds

    @property
    def remaining_s(self) -> float:
        return max(0.0, self._ends_at - self._clock())

    @property
    def passed(self) -> bool:
        return self.remaining_s <= 0.0


class _Retryable(Exception):
    """One attempt failed in a way that may pass; ``error`` is what the user sees if no attempt succeeds."""

    def __init__(self, error: StoreUnreachableError, retry_after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after_s = retry_after_s


def download_http(
    location: HttpObject,
    sink: HashingWriter,
    *,
    settings: DownloadSettings,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> None:
    """Stream the body of a GET on ``location.url`` into ``sink``; follows redirects, retries transient failures."""
    endpoint = _endpoint(location)
    deadline = _Deadline(settings.deadline_s, clock)
    attempt = 1
    while True:
        try:
            _attempt(location, endpoint, sink, settings, deadline, attempt)
            return
        except _Retryable as failure:
            if attempt >= settings.attempts:
                raise _gave_up(failure.error, attempt, settings) from failure.error
            pause_s = settings.backoff_before(attempt)
            if failure.retry_after_s is not None:
                pause_s = max(pause_s, min(failure.retry_after_s, settings.max_backoff_s))
            if pause_s >= deadline.remaining_s:
                raise _deadline_error(location, endpoint, deadline, sink, attempt, settings) from failure.error
            logger.warning(
                "%s; attempt %d of %d failed, retrying in %.2g s",
                failure.error.message,
                attempt,
                settings.attempts,
                pause_s,
            )
            sleep(pause_s)
            sink.reset()
            attempt += 1


def _attempt(
    location: HttpObject,
    endpoint: str,
    sink: HashingWriter,
    settings: DownloadSettings,
    deadline: _Deadline,
    attempt: int,
) -> None:
    remaining_s = deadline.remaining_s
    read_timeout_s = min(settings.read_timeout_s, remaining_s)
    timeout = httpx.Timeout(
        connect=min(settings.connect_timeout_s, remaining_s), read=read_timeout_s, write=read_timeout_s, pool=None
    )
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True, headers=_HEADERS) as client,
            client.stream("GET", location.url) as response,
        ):
            _check_status(location, endpoint, response)
            for chunk in response.iter_bytes():
                sink.write(chunk)
                if deadline.passed:
                    raise _deadline_error(location, endpoint, deadline, sink, attempt, settings)
    except httpx.TimeoutException as e:
        if deadline.passed:
            raise _deadline_error(location, endpoint, deadline, sink, attempt, settings) from e
        raise _Retryable(
            StoreUnreachableError(
                f"{location.uri}: {endpoint} did not answer within {read_timeout_s:g} s ({type(e).__name__}).",
                hint=f"Check that the server at {endpoint} runs and is reachable from here, or raise "
                f"{READ_TIMEOUT_ENV}, then retry.",
            )
        ) from e
    except httpx.RemoteProtocolError as e:
        raise _Retryable(
            StoreUnreachableError(
                f"{location.uri}: the download from {endpoint} broke off: {e}.",
                hint=f"Retry; if it keeps failing, check the server at {endpoint}.",
            )
        ) from e
    except httpx.ConnectError as e:
        if "CERTIFICATE_VERIFY_FAILED" in str(e):  # permanent: trying again meets the same certificate
            raise ArtifactError(
                f"{location.uri}: the TLS certificate of {endpoint} is not trusted: {e}.",
                hint="Use the server's proper https name, or add its CA to the system's trust store (SSL_CERT_FILE).",
            ) from e
        raise _Retryable(_unreachable(location, endpoint, e)) from e
    except httpx.TransportError as e:
        raise _Retryable(_unreachable(location, endpoint, e)) from e
    except httpx.InvalidURL as e:
        raise ArtifactError(f"{location.uri}: not a valid URL: {e}.", hint="Fix the uri in the manifest.") from e


def _unreachable(location: HttpObject, endpoint: str, error: httpx.TransportError) -> StoreUnreachableError:
    """The retryable error of a server that could not be reached (a refused connection, a lost route)."""
    return StoreUnreachableError(
        f"{location.uri}: cannot reach {endpoint}: {error}.",
        hint=f"Check the host name and port in the URL and that the server at {endpoint} runs, then retry.",
    )


def _endpoint(location: HttpObject) -> str:
    parts = urlsplit(location.url)
    return f"{parts.scheme}://{parts.netloc}"


def _deadline_error(
    location: HttpObject,
    endpoint: str,
    deadline: _Deadline,
    sink: HashingWriter,
    attempt: int,
    settings: DownloadSettings,
) -> StoreUnreachableError:
    return StoreUnreachableError(
        f"{location.uri}: the download from {endpoint} did not finish within its deadline of {deadline.seconds:g} s "
        f"({sink.size_bytes} bytes received in attempt {attempt} of {settings.attempts}); nothing was cached.",
        hint=f"Check the server at {endpoint} and the network in between; for a large file on a slow link raise "
        f"{DEADLINE_ENV} (seconds).",
    )


def _gave_up(error: StoreUnreachableError, attempts: int, settings: DownloadSettings) -> StoreUnreachableError:
    tried = "once" if attempts == 1 else f"{attempts} times"
    retries = f"{ATTEMPTS_ENV} sets how many attempts are made (now {settings.attempts})."
    return StoreUnreachableError(
        f"{error.message.removesuffix('.')} (tried {tried}; nothing was cached).",
        hint=f"{error.hint} {retries}" if error.hint else retries,
    )


def _retry_after_s(response: httpx.Response) -> float | None:
    """The pause a ``Retry-After`` header asks for (seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _check_status(location: HttpObject, endpoint: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    what = f"{location.uri}: {endpoint} answered HTTP {status} {response.reason_phrase}"
    if status in {404, 410}:
        raise ArtifactNotFoundError(f"{what}.", hint="Check the uri in the manifest and that the file was uploaded.")
    if status >= 500 or status == 429:
        raise _Retryable(
            StoreUnreachableError(f"{what}.", hint=f"The server at {endpoint} is failing or overloaded; retry later."),
            retry_after_s=_retry_after_s(response),
        )
    if status in {401, 403}:
        raise ArtifactError(
            f"{what}: access refused.",
            hint="Make the file public or use a URL that carries its own access token (e.g. a presigned URL).",
        )
    raise ArtifactError(f"{what}.", hint="Check the uri in the manifest.")
