"""sha256 digests: hashing files and streams, and reading the digest a manifest pins.

Every byte the store keeps passes through a ``HashingWriter`` on its way to disk, so the digest is known the moment
the download ends, without reading the file a second time.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

from mlmodelscope.core.errors import ArtifactError

CHUNK_BYTES = 1024 * 1024
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_PREFIX = "sha256:"


def sha256_of_file(path: Path) -> str:
    """Lower-case hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_sha256(value: str, *, uri: str) -> str:
    """The 64 lower-case hex digits of a pinned digest; accepts an optional ``sha256:`` prefix."""
    text = value.strip().lower()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    if not _HEX_DIGEST.fullmatch(text):
        raise ArtifactError(
            f"{uri}: the pinned sha256 {value!r} is not 64 hexadecimal digits.",
            hint="Fix the artifact's sha256 in the manifest; compute it with `sha256sum FILE`.",
        )
    return text


class HashingWriter:
    """Writes chunks to a binary file while hashing and counting them."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._digest = hashlib.sha256()
        self.size_bytes = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._digest.update(chunk)
        self.size_bytes += len(chunk)

    def reset(self) -> None:
        """Forget everything written so far and empty the file, for a download that starts again."""
        self._file.seek(0)
        self._file.truncate()
        self._digest = hashlib.sha256()
        self.size_bytes = 0

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
