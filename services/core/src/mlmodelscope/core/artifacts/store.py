"""The artifact store: fetch a model or dataset file by URI, verify its sha256, keep it in a local cache.

This is the one door through which predictors and the evaluation runner get bytes from outside. It resolves the
URI (local path, ``file://``, ``http(s)://``, ``s3://``), serves pinned artifacts from the content-addressed cache
without touching the network, and otherwise downloads into a temporary file, hashes while writing, verifies, and
atomically moves the file into the cache. Archives can be unpacked once per content hash, and a file with
sidecars (an ONNX model and its external data) is served from a folder that holds them side by side.

HTTP(S) downloads retry transient failures themselves, within a deadline (``DownloadSettings``); a failure that
outlasts them (``StoreUnreachableError``, a ``TransientError``) is left to the caller. Whatever ends a download
early (an error, Ctrl-C's ``KeyboardInterrupt``, a termination signal) leaves nothing in the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from mlmodelscope.core.artifacts.archive import ARCHIVE_SUFFIXES, archive_kind, extract_once
from mlmodelscope.core.artifacts.bundles import SidecarFile, assemble_bundle, bundle_key, entry_in
from mlmodelscope.core.artifacts.cache import ContentCache
from mlmodelscope.core.artifacts.digests import HashingWriter, normalize_sha256
from mlmodelscope.core.artifacts.http_source import download_http
from mlmodelscope.core.artifacts.local_source import copy_local
from mlmodelscope.core.artifacts.locations import HttpObject, LocalFile, Location, S3Object, parse_uri
from mlmodelscope.core.artifacts.settings import DownloadSettings, S3Settings
from mlmodelscope.core.errors import ArtifactError, ChecksumMismatchError

logger = logging.getLogger(__name__)


class ArtifactStore:
    """Fetches artifacts into ``cache_dir``; safe to share one cache folder between processes."""

    def __init__(
        self, cache_dir: Path, *, s3: S3Settings | None = None, downloads: DownloadSettings | None = None
    ) -> None:
        self._cache = ContentCache(cache_dir)
        self._s3 = s3
        self._downloads = downloads or DownloadSettings()
        self._swept = False

    @property
    def cache_dir(self) -> Path:
        return self._cache.root

    @property
    def s3(self) -> S3Settings | None:
        return self._s3

    @property
    def downloads(self) -> DownloadSettings:
        return self._downloads

    def fetch(self, uri: str, sha256: str | None, *, base_dir: Path | None = None) -> Path:
        """The local path of the artifact at ``uri``, verified against ``sha256`` when one is given.

        The result lies at ``cache_dir/sha256/<hex>/<file name>``, so its parent folder's name is the digest
        even when none was pinned. Relative paths are resolved against ``base_dir``.
        """
        path, _ = self._fetch(uri, sha256, base_dir)
        return path

    def fetch_and_extract(
        self, uri: str, sha256: str | None, *, base_dir: Path | None = None, entrypoint: str | None = None
    ) -> Path:
        """Fetch an archive (.tar, .tar.gz, .tgz, .zip, ...) and return the folder it was safely unpacked into.

        The folder is ``cache_dir/extracted/<hex of the archive>``; it is unpacked once and reused afterwards.
        With ``entrypoint`` (a relative path) the result is that file or folder inside it, which must exist.
        """
        location = parse_uri(uri, base_dir)
        if archive_kind(location.name) is None:
            raise ArtifactError(
                f"{uri}: '{location.name}' is not an archive type the store can unpack.",
                hint=f"Use one of {', '.join(ARCHIVE_SUFFIXES)}, or declare the artifact as a plain file.",
            )
        folder = None
        if sha256 is not None:
            pinned = self._cache.extracted_dir(normalize_sha256(sha256, uri=uri))
            folder = pinned if pinned.is_dir() else None
        if folder is None:
            archive, digest = self._fetch(uri, sha256, base_dir)
            folder = self._cache.extracted_dir(digest)
            if not folder.is_dir():
                extract_once(archive, folder)
                logger.info("unpacked %s into %s", uri, folder)
        return folder if entrypoint is None else entry_in(folder, entrypoint, uri=uri)

    def fetch_with_sidecars(
        self, uri: str, sha256: str, sidecars: Sequence[SidecarFile], *, base_dir: Path | None = None
    ) -> Path:
        """Fetch a file and its sidecars; return the file's path in a folder that holds each sidecar beside it.

        A sidecar lies at its ``name`` relative to the file (default: its URI's last path segment), which is how
        the file refers to it: ONNX Runtime opens an ONNX model's external data by the name the model records.
        The folder is ``cache_dir/bundles/<key>`` (see ``bundles``); all digests must be pinned.
        """
        main_name = parse_uri(uri, base_dir).name
        names = [main_name, *(s.name or parse_uri(s.uri, base_dir).name for s in sidecars)]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ArtifactError(
                f"{uri}: more than one of the file and its sidecars would be named {', '.join(duplicated)}.",
                hint="Give each sidecar the name the model file refers to it by (`name:`), distinct from the rest.",
            )
        digests = [normalize_sha256(sha256, uri=uri), *(normalize_sha256(s.sha256, uri=s.uri) for s in sidecars)]
        folder = self._cache.bundle_dir(bundle_key(list(zip(digests, names, strict=True))))
        if not folder.is_dir():
            files = [(self.fetch(uri, sha256, base_dir=base_dir), main_name)]
            files += [
                (self.fetch(s.uri, s.sha256, base_dir=base_dir), name)
                for s, name in zip(sidecars, names[1:], strict=True)
            ]
            try:
                assemble_bundle(folder, files)
            except OSError as e:
                raise ArtifactError(
                    f"{uri}: cannot place the file and its sidecars side by side in {folder}: {e}.",
                    hint="Free disk space, or point the cache at a writable folder (MLMODELSCOPE_CACHE_DIR).",
                ) from e
            logger.info("placed %s and %d sidecar(s) in %s", uri, len(sidecars), folder)
        return folder / main_name

    # --- internals -------------------------------------------------------------------------------------------

    def _fetch(self, uri: str, sha256: str | None, base_dir: Path | None) -> tuple[Path, str]:
        location = parse_uri(uri, base_dir)
        expected = None if sha256 is None else normalize_sha256(sha256, uri=uri)
        if expected is not None:
            hit = self._cache.lookup(expected, location.name)
            if hit is not None:
                return hit, expected
        return self._download(location, expected)

    def _download(self, location: Location, expected: str | None) -> tuple[Path, str]:
        if not self._swept:
            self._swept = True
            self._cache.sweep_temp()
        try:
            with self._cache.staging() as staged:
                self._copy(location, staged.writer)
                actual = staged.writer.hexdigest()
                if expected is not None and actual != expected:
                    raise ChecksumMismatchError(
                        f"{location.uri}: the fetched bytes have sha256 {actual}, but {expected} was expected.",
                        hint="Re-check the sha256 in the manifest, or whether the artifact at that URI was replaced "
                        "or corrupted; the file was not cached.",
                    )
                path = self._cache.commit(staged, actual, location.name)
        except OSError as e:
            raise ArtifactError(
                f"{location.uri}: cannot write into the artifact cache at {self._cache.root}: {e}.",
                hint="Free disk space, or point the cache at a writable folder (MLMODELSCOPE_CACHE_DIR).",
            ) from e
        except BaseException as e:
            if not isinstance(e, Exception):  # Ctrl-C or a termination signal; staging removed the partial file
                logger.warning("the download of %s was interrupted; nothing was cached", location.uri)
            raise
        logger.info(
            "fetched %s (%d bytes, sha256 %s%s)",
            location.uri,
            staged.writer.size_bytes,
            actual,
            "" if expected is not None else ", not pinned",
        )
        return path, actual

    def _copy(self, location: Location, sink: HashingWriter) -> None:
        if isinstance(location, LocalFile):
            copy_local(location, sink)
        elif isinstance(location, HttpObject):
            download_http(location, sink, settings=self._downloads)
        elif isinstance(location, S3Object):
            from mlmodelscope.core.artifacts.s3_source import download_s3  # the minio SDK only for s3:// URIs

            download_s3(location, sink, settings=self._s3, read_timeout_s=self._downloads.read_timeout_s)
        else:  # pragma: no cover - Location is a closed union
            raise AssertionError(location)
