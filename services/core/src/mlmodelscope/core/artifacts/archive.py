"""Unpacking tar and zip archives without letting any member land outside the extraction folder.

Model artifacts are often archives (a SavedModel folder, an MXNet symbol + params pair) fetched from places the
user does not control, so every member is checked before a single byte is written: no absolute paths, no ``..``
escapes, no links that point outside or that later members could be written through, no device files or FIFOs.
Extraction then happens in a temporary sibling folder that is renamed into place, so the target folder either
holds the complete archive or does not exist.
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from mlmodelscope.core.errors import ArtifactError, UnsafeArchiveError

ArchiveKind = Literal["tar", "zip"]

_SUFFIXES: dict[str, ArchiveKind] = {
    ".tar": "tar",
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tbz2": "tar",
    ".tar.xz": "tar",
    ".txz": "tar",
    ".zip": "zip",
}
ARCHIVE_SUFFIXES = tuple(_SUFFIXES)
_DIR_MODE = 0o755
PARTIAL_SUFFIX = ".partial"
# FilterError (a member the "data" filter refuses) exists from Python 3.11.4 on.
_FILTER_ERRORS: tuple[type[Exception], ...] = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)


def archive_kind(file_name: str) -> ArchiveKind | None:
    """'tar' or 'zip' from a file name's suffix (case-insensitive), or None for anything else."""
    lowered = file_name.lower()
    for suffix, kind in _SUFFIXES.items():
        if lowered.endswith(suffix):
            return kind
    return None


def safe_extract(archive: Path, target_dir: Path) -> None:
    """Unpack ``archive`` into ``target_dir``, which must not exist yet (or be empty).

    Raises ``UnsafeArchiveError`` naming the first offending member, before anything is written.
    """
    _extract(archive, target_dir, accept_existing=False)


def extract_once(archive: Path, target_dir: Path) -> None:
    """Like ``safe_extract``, but a ``target_dir`` created meanwhile by another process counts as success.

    Only for content-addressed targets, where whoever extracted first produced the same files.
    """
    _extract(archive, target_dir, accept_existing=True)


def _extract(archive: Path, target_dir: Path, *, accept_existing: bool) -> None:
    kind = archive_kind(archive.name)
    if kind is None:
        raise ArtifactError(
            f"{archive}: not an archive type that can be unpacked.",
            hint=f"Use one of {', '.join(ARCHIVE_SUFFIXES)}, or fetch the file without extracting it.",
        )
    if target_dir.exists() and not (target_dir.is_dir() and not any(target_dir.iterdir())):
        if accept_existing and target_dir.is_dir():
            return
        raise ArtifactError(
            f"cannot unpack {archive} into {target_dir}: it already exists and is not an empty folder.",
            hint="Unpack into a new folder, or remove the existing one first.",
        )
    try:
        if kind == "tar":
            _extract_tar(archive, target_dir, accept_existing=accept_existing)
        else:
            _extract_zip(archive, target_dir, accept_existing=accept_existing)
    except _READ_ERRORS as e:
        if isinstance(e, _FILTER_ERRORS):
            raise UnsafeArchiveError(
                f"{archive}: {e}; nothing was extracted.",
                hint="Only unpack archives from trusted sources; rebuild it with relative paths that stay inside it.",
            ) from e
        raise ArtifactError(
            f"cannot unpack {archive} into {target_dir}: {e}.",
            hint="The archive may be damaged or not what its name says (check its sha256), or the disk holding "
            f"{target_dir.parent} is full or read-only.",
        ) from e


# --- validation ------------------------------------------------------------------------------------------------


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: member '{member}' {why}; nothing was extracted.",
        hint="Only unpack archives from trusted sources; rebuild it with relative paths that stay inside it "
        "(e.g. `tar -czf model.tar.gz -C folder .`).",
    )


def _resolve(archive: Path, member: str, path: str, what: str, symlinks: frozenset[str]) -> str:
    """``path`` resolved component by component, relative to the archive root ("." for the root itself).

    Refuses absolute paths, ``..`` that climbs above the root, and any path that would have to pass *through* a
    symlink member (``link/x``, ``link/..``): such paths cannot be judged without following the link, so they are
    refused whatever the member order. Without symlinks on the way, the lexical result is the real location.
    """
    if path.startswith(("/", "\\")) or posixpath.isabs(path):
        raise _unsafe(archive, member, f"has an absolute {what} ('{path}')")
    components = [c for c in path.split("/") if c not in {"", "."}]
    resolved: list[str] = []
    for index, component in enumerate(components):
        if component == "..":
            if not resolved:
                raise _unsafe(archive, member, f"has a {what} that leads outside the archive ('{path}')")
            resolved.pop()
        else:
            resolved.append(component)
        prefix = "/".join(resolved)
        if index < len(components) - 1 and prefix in symlinks:
            raise _unsafe(archive, member, f"has a {what} that passes through the symlink '{prefix}' ('{path}')")
    return "/".join(resolved) or "."


def _check_tar(archive: Path, members: Sequence[tarfile.TarInfo]) -> None:
    symlinks = frozenset(posixpath.normpath(m.name) for m in members if m.issym())
    files: set[str] = set()
    for member in members:
        name = _resolve(archive, member.name, member.name, "path", symlinks)
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            kind = "a device file" if member.isdev() else "not a regular file, folder or link"
            raise _unsafe(archive, member.name, f"is {kind}")
        if name == "." and not member.isdir():
            raise _unsafe(archive, member.name, "would replace the extraction folder itself")
        if name in symlinks and not member.issym():
            raise _unsafe(archive, member.name, "has the same path as a symlink member and would be written through it")
        if member.issym():
            if member.linkname.startswith("/"):
                raise _unsafe(archive, member.name, f"is a symlink to the absolute path '{member.linkname}'")
            link_path = posixpath.join(posixpath.dirname(name), member.linkname)
            _resolve(archive, member.name, link_path, "symlink target", symlinks)
        elif member.islnk():
            target = _resolve(archive, member.name, member.linkname, "hard link target", symlinks)
            if target not in files:
                raise _unsafe(archive, member.name, f"is a hard link to '{member.linkname}', not to an earlier file")
        if member.isreg() or member.islnk():
            files.add(name)


def _check_zip(archive: Path, members: Sequence[zipfile.ZipInfo]) -> None:
    for member in members:
        name = _resolve(archive, member.filename, member.filename, "path", frozenset())
        if name == "." and not member.is_dir():
            raise _unsafe(archive, member.filename, "would replace the extraction folder itself")


# --- extraction ------------------------------------------------------------------------------------------------


def _extract_tar(archive: Path, target_dir: Path, *, accept_existing: bool) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        _check_tar(archive, members)
        with staged_folder(target_dir, accept_existing=accept_existing) as staging:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                tar.extractall(staging, members=members, filter="data")
            else:  # pragma: no cover
                tar.extractall(staging, members=members)


def _extract_zip(archive: Path, target_dir: Path, *, accept_existing: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        _check_zip(archive, members)
        with staged_folder(target_dir, accept_existing=accept_existing) as staging:
            zf.extractall(staging, members=members)


@contextlib.contextmanager
def staged_folder(target_dir: Path, *, accept_existing: bool) -> Iterator[Path]:
    """A temporary sibling folder to extract into, renamed to ``target_dir`` when the block succeeds."""
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target_dir.parent, prefix=f".{target_dir.name}.", suffix=PARTIAL_SUFFIX))
    try:
        yield staging
        staging.chmod(_DIR_MODE)
        try:
            staging.rename(target_dir)
        except OSError as e:
            lost_race = e.errno in {errno.ENOTEMPTY, errno.EEXIST} and target_dir.is_dir()
            if not lost_race:
                raise
            if not accept_existing:
                raise ArtifactError(
                    f"cannot unpack into {target_dir}: another process filled it meanwhile.",
                    hint="Unpack into a folder nothing else writes to.",
                ) from e
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
