"""An on-disk cache of pre-processed samples, so a second run over the same images does not decode them again.

Decoding and resizing a JPEG costs milliseconds; reading back its pre-processed tensor costs microseconds. Entries
are content-addressed: the key is a sha256 of the dataset reader's fingerprint (which changes whenever any item's
bytes could) and of the canonical JSON of the model input's preprocess steps, shape and dtype, so a changed image
or a changed pipeline simply misses. One ``.npy`` file per item under ``<artifact cache>/samples/<key>/``, written
atomically (a temporary file, then a rename), so concurrent runs sharing a cache folder never read half a file. A
damaged entry (truncated, wrong header, wrong dtype) is detected, removed and recomputed by the caller.

The cache holds only the items that were loaded (LoadGen's performance set, or every item after an accuracy run).
It only changes how fast samples are loaded, never what they are: results do not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mlmodelscope.core.manifests.model_tensors import ModelInput

SAMPLES_DIR = "samples"
_FORMAT_VERSION = 1  # bump when the entry layout changes


def cache_key(fingerprint: str, spec: ModelInput) -> str:
    """sha256 of what determines a pre-processed sample: the dataset's bytes and the input's pipeline."""
    canonical = json.dumps(
        {
            "format": _FORMAT_VERSION,
            "dataset": fingerprint,
            "preprocess": [step.model_dump(mode="json", exclude_none=True) for step in spec.preprocess],
            "shape": list(spec.shape),
            "dtype": spec.dtype,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class SampleCache:
    """Per-item pre-processed tensors of one (dataset, model input) pair, under ``root / samples / key``."""

    def __init__(self, root: Path, fingerprint: str, spec: ModelInput) -> None:
        self.directory = root / SAMPLES_DIR / cache_key(fingerprint, spec)
        self.dtype = np.dtype(spec.dtype)
        self.hits = 0
        self.misses = 0

    def path(self, index: int) -> Path:
        return self.directory / f"{index}.npy"

    def get(self, index: int) -> np.ndarray | None:
        """Item ``index``'s cached tensor, or None (absent, or damaged: then the entry is removed)."""
        path = self.path(index)
        try:
            with path.open("rb") as file:
                array = _read_checked(file, os.fstat(file.fileno()).st_size, self.dtype)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, EOFError):
            array = None
        if array is None:
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return array

    def put(self, index: int, array: np.ndarray) -> None:
        """Store item ``index``'s tensor atomically; a full disk or a read-only cache only costs the speed-up."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary = self.directory / f".{index}.{uuid.uuid4().hex}.tmp"
            with temporary.open("wb") as file:
                np.lib.format.write_array(file, np.ascontiguousarray(array), allow_pickle=False)
            temporary.replace(self.path(index))
        except OSError:
            return


def _read_checked(file: BinaryIO, size_bytes: int, dtype: np.dtype) -> np.ndarray | None:
    """The array in an open .npy file when its header is sound, its dtype expected and its size exact."""
    fmt = np.lib.format
    version = fmt.read_magic(file)
    if version != (1, 0):
        return None
    shape, fortran, stored = fmt.read_array_header_1_0(file)
    if fortran or stored != dtype:
        return None
    expected = file.tell() + int(np.prod(shape, dtype=np.int64)) * stored.itemsize
    if size_bytes != expected:
        return None
    data = file.read()
    return np.frombuffer(data, dtype=stored).reshape(shape)
