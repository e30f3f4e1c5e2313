"""Downloading artifacts over HTTP(S) with httpx, streamed to disk in chunks.

Status codes and transport failures are mapped onto the core's error types: 404/410 mean the artifact does not
exist, 5xx/429 and network failures mean the store is unreachable (transient), anything else is permanent.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from mlmodelscope.core.artifacts.digests import CHUNK_BYTES, HashingWriter
from mlmodelscope.core.artifacts.locations import HttpObject
from mlmodelscope.core.errors import ArtifactError, ArtifactNotFoundError, StoreUnreachableError

# The bytes hashed must be the bytes the server stores, never a transfer-decoded variant of them.
_HEADERS = {"Accept-Encoding": "identity"}


def download_http(location: HttpObject, sink: HashingWriter, *, timeout_s: float) -> None:
    """Stream the body of a GET on ``location.url`` into ``sink``; follows redirects."""
    parts = urlsplit(location.url)
    endpoint = f"{parts.scheme}://{parts.netloc}"
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True, headers=_HEADERS) as client,
            client.stream("GET", location.url) as response,
        ):
            _check_status(location, endpoint, response)
            for chunk in response.iter_bytes(CHUNK_BYTES):
                sink.write(chunk)
    except httpx.TimeoutException as e:
        raise StoreUnreachableError(
            f"{location.uri}: {endpoint} did not answer within {timeout_s:g} s ({type(e).__name__}).",
            hint=f"Check that the server at {endpoint} runs and is reachable from here, then retry.",
        ) from e
    except httpx.RemoteProtocolError as e:
        raise StoreUnreachableError(
            f"{location.uri}: the download from {endpoint} broke off: {e}.",
            hint=f"Retry; if it keeps failing, check the server at {endpoint}.",
        ) from e
    except httpx.TransportError as e:
        raise StoreUnreachableError(
            f"{location.uri}: cannot reach {endpoint}: {e}.",
            hint=f"Check the host name and port in the URL and that the server at {endpoint} runs, then retry.",
        ) from e
    except httpx.InvalidURL as e:
        raise ArtifactError(f"{location.uri}: not a valid URL: {e}.", hint="Fix the uri in the manifest.") from e


def _check_status(location: HttpObject, endpoint: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    what = f"{location.uri}: {endpoint} answered HTTP {status} {response.reason_phrase}"
    if status in {404, 410}:
        raise ArtifactNotFoundError(f"{what}.", hint="Check the uri in the manifest and that the file was uploaded.")
    if status >= 500 or status == 429:
        raise StoreUnreachableError(f"{what}.", hint=f"The server at {endpoint} is failing or overloaded; retry later.")
    if status in {401, 403}:
        raise ArtifactError(
            f"{what}: access refused.",
            hint="Make the file public or use a URL that carries its own access token (e.g. a presigned URL).",
        )
    raise ArtifactError(f"{what}.", hint="Check the uri in the manifest.")
