"""The messages of a run that NATS never acknowledged, kept on disk so nothing the agent computed is lost.

When NATS stays unreachable past the publisher's bound, every message not yet acknowledged (the one in flight, the
buffered ones, and all published later, the result included) is appended to ``<run dir>/unpublished/<run>.jsonl``:
one envelope per line, exactly the bytes that would have gone on the wire, with the same message ids. Importing the
file later (``mlmodelscope runs import``) stores each message once: the collector drops any id it already has, so
a message that did reach NATS before it died, or a second import, adds nothing.

The span streamer (``agent.streaming``) uses a second file, ``<run>.spill.jsonl``, while NATS is slower than the
run: it is read back and published after the run, and removed once the publisher has every line (acknowledged,
or kept in the first file); should the agent die before, ``runs import`` finds it like any spool file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mlmodelscope.core.run_contract import SPOOL_FOLDER

SPOOL_SUFFIX = ".jsonl"


class UnpublishedSpool:
    """Appends envelopes (one JSON document per line) to ``<directory>/<run id>.jsonl``; created on first use."""

    def __init__(self, directory: Path, run_id: str, part: str = "") -> None:
        self.directory = directory
        self.path = directory / f"{run_id}{part}{SPOOL_SUFFIX}"
        self.count = 0
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    def add(self, data: bytes) -> None:
        """Append one encoded envelope; OSError if the file cannot be written (the caller reports it)."""
        with self._lock:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
            self._file.write(data.rstrip(b"\n") + b"\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        """Flush to the disk and close (a later ``add`` reopens the file in append mode)."""
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None

    def read_back(self) -> Iterator[bytes]:
        """Every envelope added so far (the file closed first); nothing when none was."""
        self.close()
        if self.count and self.path.exists():
            for _, data in read_spool(self.path):
                yield data

    def remove(self) -> None:
        """Delete the file (its messages are accounted for elsewhere)."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.count = 0


def spool_files(path: Path) -> list[Path]:
    """The spool files under ``path``: a file itself, or every ``unpublished/*.jsonl`` below a run or data folder."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob(f"{SPOOL_FOLDER}/*{SPOOL_SUFFIX}") if p.is_file())


def read_spool(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, envelope bytes) of every non-empty line of one spool file."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            data = line.strip()
            if data:
                yield number, data
