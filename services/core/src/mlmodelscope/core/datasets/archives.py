"""Where a folder or coco dataset's files lie on this machine: a plain folder, or an archive unpacked into the cache.

A ``folder``/``coco`` source's ``uri`` names either a folder (relative to the manifest's folder, or ``file:///``)
or an archive (.tar, .tar.gz, .tgz, .zip; a local file, http(s):// or s3://) pinned by its sha256. Archives go
through the artifact store, which verifies the sha256 before unpacking, refuses members that would escape the
extraction folder, and unpacks each archive once per content hash. ``root`` then picks the folder inside.

Both readers need the same two more things, so they live here too: which files of a folder are images (by
extension, hidden files skipped, in a sorted and therefore reproducible order), and the fingerprint that keys the
pre-processed-sample cache (the archive's sha256 when there is one, else a hash of the listing with sizes and
modification times, so that editing any file changes it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlmodelscope.core.artifacts.digests import normalize_sha256
from mlmodelscope.core.artifacts.locations import LocalFile, parse_uri
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import DatasetError, naming_the_manifest
from mlmodelscope.core.manifests.dataset_spec import ARCHIVE_URI_SUFFIXES, is_archive_uri
from mlmodelscope.core.manifests.resources import Dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_MOST_NAMED = 5


@dataclass(frozen=True)
class DatasetRoot:
    """The folder holding a dataset's files, and the sha256 of the archive it was unpacked from (None: a folder)."""

    path: Path
    archive_sha256: str | None


def is_image_file(name: str) -> bool:
    """Whether a file name has one of the image suffixes a folder/coco dataset reads (case-insensitive)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def is_hidden(name: str) -> bool:
    """Dot files and folders (.DS_Store, .git, ._x from macOS archives) are never part of a dataset."""
    return name.startswith(".")


def dataset_root(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> DatasetRoot:
    """The dataset's root folder: ``uri`` (unpacked into the cache when it is an archive), then ``root`` inside."""
    source = dataset.spec.source
    assert source.uri is not None  # DatasetSource requires it for folder and coco
    where = f"dataset '{dataset.name}'"
    if is_archive_uri(source.uri):
        assert source.sha256 is not None  # DatasetSource requires it for archives
        with naming_the_manifest(f"{where}: spec.source.uri"):
            folder = store.fetch_and_extract(source.uri, source.sha256, base_dir=base_dir)
        archive_sha256: str | None = normalize_sha256(source.sha256, uri=source.uri)
        what = f"the archive '{source.uri}' (unpacked into {folder})"
    else:
        with naming_the_manifest(f"{where}: spec.source.uri"):
            location = parse_uri(source.uri, base_dir)
        assert isinstance(location, LocalFile)  # every other location is an archive URI
        folder, archive_sha256, what = location.path, None, f"'{source.uri}' ({location.path})"
        if not folder.is_dir():
            found = "is a file" if folder.exists() else "does not exist"
            raise DatasetError(
                f"{where}: spec.source.uri {what} {found}; a {source.kind} source needs a folder or an archive.",
                hint="Point spec.source.uri at the dataset's folder (relative to the manifest's folder, or "
                f"file:///abs), or at an archive ({', '.join(ARCHIVE_URI_SUFFIXES)}) with its sha256.",
            )
    if source.root is None:
        return DatasetRoot(path=folder, archive_sha256=archive_sha256)
    path = folder / source.root
    if not path.is_dir():
        raise DatasetError(
            f"{where}: spec.source.root '{source.root}' is not a folder inside {what}.",
            hint=f"Its top level holds: {top_level(folder)}. Set spec.source.root to the folder that holds the "
            "dataset (or remove it to use the top level).",
        )
    return DatasetRoot(path=path, archive_sha256=archive_sha256)


def top_level(folder: Path) -> str:
    """The first few entries of a folder, for messages (folders with a trailing '/')."""
    try:
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder) if not is_hidden(e.name))
    except OSError as e:
        return f"(cannot be listed: {e})"
    return named(names) if names else "nothing"


def named(items: Iterable[str], most: int = _MOST_NAMED) -> str:
    """``'a', 'b', 'c' and 4 more``: a list for a message, cut short."""
    items = list(items)
    shown = ", ".join(f"'{item}'" for item in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def image_files(folder: Path) -> list[str]:
    """Every image file under ``folder``, recursively, as sorted POSIX paths relative to it; hidden ones skipped."""
    found: list[str] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        prefix = Path(current).relative_to(folder).as_posix()
        for name in files:
            if not is_hidden(name) and is_image_file(name):
                found.append(name if prefix == "." else f"{prefix}/{name}")
    return sorted(found)


def listing_sha256(root: Path, relative_paths: Iterable[str], *, what: str) -> str:
    """sha256 over each file's (relative path, size, mtime_ns): changes whenever a file is replaced or edited."""
    digest = hashlib.sha256()
    for relative in relative_paths:
        try:
            stat = (root / relative).stat()
        except OSError as e:
            raise DatasetError(
                f"{what}: cannot read '{relative}' in {root}: {e.strerror or e}.",
                hint="Check that the file exists and is readable.",
            ) from e
        digest.update(f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fingerprint(parts: Iterable[str]) -> str:
    """sha256 of the given lines: what selects the items (source kind, root, files) and their content."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_item(path: Path, *, what: str) -> bytes:
    """The raw bytes of one image file; DatasetError naming it when it cannot be read or is no image file.

    Only the first bytes are checked here (the signature of JPEG, PNG, WebP, BMP or TIFF): decoding happens later,
    in the sample library, whose errors name the item too.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(
            f"{what}: cannot read {path}: {e.strerror or e}.",
            hint="Check that the file still exists and is readable (the dataset's files changed after it was opened?).",
        ) from e
    if image_format(data[:16]) is None:
        raise DatasetError(
            f"{what}: {path} is not an image file: its first bytes ({data[:8]!r}) are not those of JPEG, PNG, WebP, "
            "BMP or TIFF.",
            hint="Replace or remove the file (it may be truncated, or another kind of file with an image's name).",
        )
    return data


def image_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce (JPEG, PNG, WEBP, BMP, TIFF), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    return None
