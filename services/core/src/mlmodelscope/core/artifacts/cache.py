"""The content-addressed cache on disk, and the only code that places files in it.

Layout under the cache folder::

    sha256/<hex>/<file name>   verified artifacts, addressed by the sha256 of their bytes
    extracted/<hex>/           unpacked archives, addressed by the archive's sha256
    bundles/<key>/             a file and its sidecars side by side (see bundles.py)
    tmp/                       downloads in progress (``*.part``)
    extracted/.<hex>.*.partial extractions in progress (bundles/.<key>.*.partial: bundles)

A file reaches ``sha256/`` only by ``os.replace`` of a fully written, fsynced and verified temporary file in the
same file system, so its presence alone proves its content: a cache hit never re-reads or re-hashes anything.
A crash mid-download leaves at most a ``tmp/*.part`` file, which lookups ignore and later runs sweep away.
Two processes fetching the same artifact each write their own temporary file and replace the same final path
with identical bytes, which is harmless.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlmodelscope.core.artifacts.archive import PARTIAL_SUFFIX
from mlmodelscope.core.artifacts.digests import HashingWriter

STALE_TEMP_AGE_S = 24 * 3600.0
# Read-only: nothing may change a file whose name claims its content's digest.
_FILE_MODE = 0o444


@dataclass
class StagedFile:
    """A download in progress: bytes go to ``writer``; ``ContentCache.commit`` moves the file into place."""

    path: Path
    writer: HashingWriter
    file: BinaryIO
    committed: bool = False


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; a no-op where directories cannot be opened (not POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ContentCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def temp_dir(self) -> Path:
        return self.root / "tmp"

    def blob_path(self, digest: str, name: str) -> Path:
        return self.root / "sha256" / digest / name

    @property
    def extracted_root(self) -> Path:
        return self.root / "extracted"

    def extracted_dir(self, digest: str) -> Path:
        return self.extracted_root / digest

    @property
    def bundles_root(self) -> Path:
        return self.root / "bundles"

    def bundle_dir(self, key: str) -> Path:
        return self.bundles_root / key

    def lookup(self, digest: str, name: str) -> Path | None:
        """The cached file for this digest and name, or None."""
        path = self.blob_path(digest, name)
        return path if path.is_file() else None

    @contextlib.contextmanager
    def staging(self) -> Iterator[StagedFile]:
        """A temporary file next to the cache, deleted on exit unless it was committed."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.temp_dir, prefix="download-", suffix=".part")
        staged: StagedFile | None = None
        try:
            with os.fdopen(fd, "wb") as file:
                staged = StagedFile(path=Path(name), writer=HashingWriter(file), file=file)
                yield staged
        finally:
            if staged is None or not staged.committed:
                Path(name).unlink(missing_ok=True)

    def commit(self, staged: StagedFile, digest: str, name: str) -> Path:
        """Flush, fsync and atomically move a verified download to its content address."""
        staged.file.flush()
        os.fsync(staged.file.fileno())
        staged.path.chmod(_FILE_MODE)
        final = self.blob_path(digest, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        staged.path.replace(final)
        staged.committed = True
        _fsync_dir(final.parent)
        return final

    def sweep_temp(self, *, max_age_s: float = STALE_TEMP_AGE_S) -> int:
        """Delete downloads and extractions older than ``max_age_s`` that killed runs left; returns how many.

        Younger ones may belong to a fetch running in another process right now, so they are kept.
        """
        cutoff = time.time() - max_age_s
        leftovers = [
            *self.temp_dir.glob("*.part"),
            *self.extracted_root.glob(f".*{PARTIAL_SUFFIX}"),
            *self.bundles_root.glob(f".*{PARTIAL_SUFFIX}"),
        ]
        removed = 0
        for path in leftovers:
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime >= cutoff:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
        return removed
