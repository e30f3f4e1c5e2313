"""Turning an artifact URI from a manifest into a typed location: a local file, an HTTP(S) URL or an S3 object.

Parsing happens before any cache lookup or network traffic, so a typo in a manifest fails at once with a message
naming the URI, and the rest of the store dispatches on a type instead of re-inspecting strings.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from mlmodelscope.core.errors import ArtifactError, UnsupportedUriError

SUPPORTED_SCHEMES = ("file", "http", "https", "s3")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_MAX_NAME_CHARS = 200
_FALLBACK_NAME = "artifact"


def _safe_name(raw: str) -> str:
    """A file name for the cache: the URI's last path segment, never empty, never a path."""
    name = raw.replace("/", "_").replace("\\", "_").replace("\x00", "_")
    if name in {"", ".", ".."}:
        return _FALLBACK_NAME
    # Keep the end of over-long names: it carries the suffix that identifies archives.
    return name[-_MAX_NAME_CHARS:]


@dataclass(frozen=True)
class LocalFile:
    uri: str
    path: Path

    @property
    def name(self) -> str:
        return _safe_name(self.path.name)


@dataclass(frozen=True)
class HttpObject:
    uri: str
    url: str

    @property
    def name(self) -> str:
        return _safe_name(unquote(posixpath.basename(urlsplit(self.url).path)))


@dataclass(frozen=True)
class S3Object:
    uri: str
    bucket: str
    key: str

    @property
    def name(self) -> str:
        return _safe_name(posixpath.basename(self.key))


Location = LocalFile | HttpObject | S3Object


def parse_uri(uri: str, base_dir: Path | None) -> Location:
    """Where ``uri`` points. Relative paths are resolved against ``base_dir`` (the naming manifest's folder)."""
    text = uri.strip()
    if not text:
        raise ArtifactError("an artifact URI is empty.", hint="Give the artifact's uri in the manifest.")
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else ("file" if text.lower().startswith("file:") else "")
    if scheme == "":
        return _plain_path(uri, text, base_dir)
    if scheme == "file":
        return _file_uri(uri, text)
    if scheme in {"http", "https"}:
        if not urlsplit(text).hostname:
            raise ArtifactError(f"{uri}: the URL names no host.", hint="Write it as http(s)://host[:port]/path.")
        return HttpObject(uri=uri, url=text)
    if scheme == "s3":
        return _s3_uri(uri, text)
    raise UnsupportedUriError(
        f"{uri}: the scheme '{scheme}://' is not supported by the artifact store.",
        hint=f"Use one of {', '.join(s + '://' for s in SUPPORTED_SCHEMES)} or a plain path relative to the manifest.",
    )


def is_relative_path(uri: str) -> bool:
    """Whether ``uri`` is a plain relative path, the one kind of URI that needs a base folder to resolve against."""
    text = uri.strip()
    if _SCHEME.match(text) or text.lower().startswith("file:"):
        return False
    return not Path(text).is_absolute()


def _plain_path(uri: str, text: str, base_dir: Path | None) -> LocalFile:
    path = Path(text)
    if path.is_absolute():
        return LocalFile(uri=uri, path=path)
    if base_dir is None:
        raise ArtifactError(
            f"{uri}: a relative artifact path needs a base folder to resolve against, and none was given.",
            hint="Pass base_dir (the folder of the manifest naming the artifact), or use an absolute path.",
        )
    return LocalFile(uri=uri, path=base_dir / path)


def _file_uri(uri: str, text: str) -> LocalFile:
    parts = urlsplit(text)
    if parts.netloc not in {"", "localhost"}:
        raise ArtifactError(
            f"{uri}: a file URI cannot name a host ('{parts.netloc}').",
            hint="Write file:///absolute/path (three slashes), or use a plain path relative to the manifest.",
        )
    path = Path(url2pathname(parts.path))
    if not path.is_absolute():
        raise ArtifactError(
            f"{uri}: a file URI must hold an absolute path.",
            hint="Write file:///absolute/path, or drop the 'file:' prefix to use a path relative to the manifest.",
        )
    return LocalFile(uri=uri, path=path)


def _s3_uri(uri: str, text: str) -> S3Object:
    bucket, _, key = text[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ArtifactError(
            f"{uri}: an S3 URI must name a bucket and an object key.",
            hint="Write it as s3://bucket/path/to/object.",
        )
    return S3Object(uri=uri, bucket=bucket, key=key)
