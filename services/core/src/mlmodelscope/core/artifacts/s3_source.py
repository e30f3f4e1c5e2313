"""Downloading artifacts from an S3-compatible object store (MinIO, SeaweedFS, AWS) with the minio SDK.

The client is built with a short connect timeout and a single retry, so a wrong or dead endpoint fails within
seconds with ``StoreUnreachableError`` rather than hanging in the SDK's default backoff for minutes.
"""

from __future__ import annotations

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from mlmodelscope.core.artifacts.digests import CHUNK_BYTES, HashingWriter
from mlmodelscope.core.artifacts.locations import S3Object
from mlmodelscope.core.artifacts.settings import ACCESS_KEY_ENV, ENDPOINT_ENV, SECRET_KEY_ENV, SECURE_ENV, S3Settings
from mlmodelscope.core.errors import ArtifactError, ArtifactNotFoundError, StoreUnreachableError

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "ResourceNotFound"})
_CREDENTIALS = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "ExpiredToken", "InvalidToken"}
)
_TRANSIENT = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})
_CREDENTIALS_HINT = f"Check {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} and that these credentials may read the bucket."


def _endpoint_url(settings: S3Settings) -> str:
    return f"{'https' if settings.secure else 'http'}://{settings.endpoint}"


def _client(settings: S3Settings, http: urllib3.PoolManager) -> Minio:
    try:
        return Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )
    except ValueError as e:
        raise ArtifactError(
            f"S3 endpoint '{settings.endpoint}' is not usable: {e}.",
            hint=f"Set {ENDPOINT_ENV} to host:port (no scheme, no path) and {SECURE_ENV}=true for https.",
        ) from e


def download_s3(location: S3Object, sink: HashingWriter, *, settings: S3Settings | None, read_timeout_s: float) -> None:
    """Stream the object's bytes, exactly as stored, into ``sink``."""
    if settings is None:
        raise ArtifactError(
            f"{location.uri}: no S3 endpoint is configured, so s3:// artifacts cannot be fetched.",
            hint=f"Set {ENDPOINT_ENV}=host:port (and {ACCESS_KEY_ENV}/{SECRET_KEY_ENV} if the bucket is private).",
        )
    endpoint = _endpoint_url(settings)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout_s, read=read_timeout_s),
        retries=urllib3.Retry(total=1, backoff_factor=0.2),
    )
    try:
        client = _client(settings, http)
        response = client.get_object(location.bucket, location.key)
        try:
            for chunk in response.stream(CHUNK_BYTES, decode_content=False):
                sink.write(chunk)
        finally:
            response.close()
            response.release_conn()
    except S3Error as e:
        raise _from_s3_error(location, endpoint, e) from e
    except ServerError as e:
        raise StoreUnreachableError(
            f"{location.uri}: the S3 endpoint {endpoint} failed with HTTP {e.status_code}.",
            hint=f"Check that the S3 server at {endpoint} is healthy, then retry.",
        ) from e
    except InvalidResponseError as e:
        raise ArtifactError(
            f"{location.uri}: {endpoint} did not answer like an S3 server: {e}.",
            hint=f"Check that {ENDPOINT_ENV} points at the S3 API port, not a web console or proxy page.",
        ) from e
    except urllib3.exceptions.HTTPError as e:
        reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason is not None else e
        raise StoreUnreachableError(
            f"{location.uri}: cannot reach the S3 endpoint {endpoint}: {reason}.",
            hint=f"Check {ENDPOINT_ENV} and {SECURE_ENV}, that the S3 server runs, and that it is reachable from here.",
        ) from e
    finally:
        http.clear()


def _from_s3_error(location: S3Object, endpoint: str, error: S3Error) -> ArtifactError:
    code = error.code or "UnknownError"
    what = f"{location.uri}: {endpoint} answered {code}"
    if code == "NoSuchBucket":
        return ArtifactNotFoundError(
            f"{what}: there is no bucket '{location.bucket}'.",
            hint="Check the bucket name in the uri, and that it was created on this endpoint.",
        )
    if code in _NOT_FOUND:
        return ArtifactNotFoundError(
            f"{what}: bucket '{location.bucket}' holds no object '{location.key}'.",
            hint="Check the key in the uri and that the artifact was uploaded.",
        )
    if code in _CREDENTIALS:
        return ArtifactError(f"{what}: access refused.", hint=_CREDENTIALS_HINT)
    if code in _TRANSIENT:
        return StoreUnreachableError(
            f"{what} ({error.message}).", hint="The S3 server is busy or failing; retry later."
        )
    return ArtifactError(f"{what} ({error.message}).", hint="Check the uri in the manifest and the S3 settings.")
