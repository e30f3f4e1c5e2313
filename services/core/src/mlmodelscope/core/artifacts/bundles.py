"""A main file and its sidecars side by side in one cache folder, and the file an archive's ``entrypoint`` names.

Some model files are not self-contained: an ONNX model above 2 GB must keep its weights in an external data file
(``model.onnx`` plus ``model.onnx.data``) that the runtime opens by a name relative to the model file. The cache
keeps every verified file in its own ``sha256/<hex>/`` folder, so such files never lie side by side there. A
*bundle* puts them side by side::

    bundles/<key>/<main file name>
    bundles/<key>/<sidecar name>...

``<key>`` is the sha256 of the bundle's listing (one ``<sha256>  <name>`` line per file, the main file first), so
the folder is addressed by its content like everything else in the cache. Files are hard links to the verified
blobs (copies where the file system has no hard links), and the folder is assembled in a temporary sibling and
renamed into place, so its presence proves it is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlmodelscope.core.artifacts.archive import staged_folder
from mlmodelscope.core.errors import ArtifactError

_LISTED_FILES = 10


@dataclass(frozen=True)
class SidecarFile:
    """A file the main file refers to by ``name``, a path relative to the main file's folder."""

    uri: str
    sha256: str
    name: str | None = None


def bundle_key(files: Sequence[tuple[str, str]]) -> str:
    """The sha256 of the listing of ``(sha256, name)`` pairs, main file first."""
    listing = "".join(f"{digest}  {name}\n" for digest, name in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def assemble_bundle(target_dir: Path, files: Sequence[tuple[Path, str]]) -> None:
    """Place each ``(verified file, name)`` under ``target_dir/name``; a folder that appeared meanwhile wins."""
    with staged_folder(target_dir, accept_existing=True) as staging:
        for source, name in files:
            destination = staging / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, destination)
            except OSError:  # no hard links here (another file system, FAT, some network mounts)
                shutil.copyfile(source, destination)


def entry_in(folder: Path, entrypoint: str, *, uri: str) -> Path:
    """The file or folder ``entrypoint`` names inside the unpacked archive ``folder``; ArtifactError if absent."""
    entry = folder.joinpath(*entrypoint.split("/"))
    if entry.exists():
        return entry
    held = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    shown = ", ".join(held[:_LISTED_FILES]) + (f", ... ({len(held)} files)" if len(held) > _LISTED_FILES else "")
    raise ArtifactError(
        f"{uri}: the archive holds no '{entrypoint}' (the artifact's entrypoint); it holds: {shown or 'no files'}.",
        hint="Set entrypoint to the path of the model file inside the archive, relative to its root "
        "(e.g. `entrypoint: model.onnx`), or rebuild the archive (e.g. `tar -czf model.tar.gz -C folder .`).",
    )
