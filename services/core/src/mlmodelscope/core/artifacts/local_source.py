"""Reading artifacts from the local file system (plain paths and ``file://`` URIs).

Local artifacts are copied into the cache like remote ones: the copy is what gets verified, and later runs keep
working even if the original moves.
"""

from __future__ import annotations

from typing import BinaryIO

from mlmodelscope.core.artifacts.digests import CHUNK_BYTES, HashingWriter
from mlmodelscope.core.artifacts.locations import LocalFile
from mlmodelscope.core.errors import ArtifactError, ArtifactNotFoundError


def copy_local(location: LocalFile, sink: HashingWriter) -> None:
    """Stream the file at ``location`` into ``sink``."""
    path = location.path
    try:
        source = path.open("rb")
    except FileNotFoundError as e:
        raise ArtifactNotFoundError(
            f"{location.uri}: no file at {path}.",
            hint="Check the uri in the manifest; relative paths are resolved against the manifest's folder.",
        ) from e
    except IsADirectoryError as e:
        raise ArtifactError(
            f"{location.uri}: {path} is a folder, not a file.",
            hint="Point the uri at a file; pack a folder as .tar.gz or .zip and mark the artifact as an archive.",
        ) from e
    except OSError as e:
        raise ArtifactError(
            f"{location.uri}: cannot open {path}: {e.strerror or e}.",
            hint="Check the file's permissions and that the path is right.",
        ) from e
    with source:
        _pump(location, source, sink)


def _pump(location: LocalFile, source: BinaryIO, sink: HashingWriter) -> None:
    while True:
        try:
            chunk = source.read(CHUNK_BYTES)
        except OSError as e:
            raise ArtifactError(
                f"{location.uri}: reading {location.path} failed: {e.strerror or e}.",
                hint="Check the disk or network file system that holds the file.",
            ) from e
        if not chunk:
            return
        sink.write(chunk)
