"""TEMPORARY: the npz and synthetic sources as DatasetReaders, until core.datasets.opening.open_reader lands.

The eager loaders of the former samples.py, wrapped as readers over in-memory arrays; deleted once H1's readers
are committed (the runner then imports open_reader from core.datasets.opening).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlmodelscope.core.artifacts import ArtifactStore
from mlmodelscope.core.artifacts.locations import LocalFile, parse_uri
from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.manifests.resources import Dataset, DatasetSource


@dataclass(frozen=True)
class DatasetArrays:
    samples: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ArrayReader:
    arrays: DatasetArrays
    fingerprint: str

    @property
    def size(self) -> int:
        return len(self.arrays.labels)

    @property
    def truth(self) -> ClassLabels:
        return ClassLabels(self.arrays.labels)

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.arrays.samples[index])

    def name(self, index: int) -> ItemName:
        return ItemName(index)


def open_reader(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> ArrayReader:
    digest = dataset.spec.source.sha256 or hashlib.sha256(dataset.spec.source.model_dump_json().encode()).hexdigest()
    return ArrayReader(load_dataset(dataset, store, base_dir), digest)


_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive of .npy files
_NPY_SIGNATURE = b"\x93NUMPY"
_NPZ_HINT = (
    "An npz source is one .npz file as numpy.savez writes it (numpy.savez(path, images=..., labels=...)), holding "
    "the arrays spec.source.images_key and labels_key name; point spec.source.uri at it and set spec.source.sha256 "
    "to its sha256."
)


def load_dataset(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> DatasetArrays:
    """Fetch (checksum-verified) and open a dataset, or generate a synthetic one, checking it against its manifest."""
    source = dataset.spec.source
    if source.kind == "synthetic":
        return synthetic_dataset(source, dataset.spec.size)
    assert source.uri is not None and source.sha256 is not None  # DatasetSource requires both for npz
    location = parse_uri(source.uri, base_dir)
    if isinstance(location, LocalFile) and location.path.is_dir():
        raise ManifestError(
            f"dataset '{dataset.name}': spec.source.uri '{source.uri}' is a folder ({location.path}), "
            "but an npz source is one .npz file.",
            hint=_NPZ_HINT,
        )
    path = store.fetch(source.uri, source.sha256, base_dir=base_dir)
    samples, labels = _read_npz(dataset, path)
    if len(samples) != len(labels) or len(samples) != dataset.spec.size:
        raise ManifestError(
            f"dataset '{dataset.name}': {len(samples)} samples and {len(labels)} labels, "
            f"but the manifest says spec.size is {dataset.spec.size}.",
            hint="Fix spec.size, or rebuild the dataset file.",
        )
    return DatasetArrays(samples=samples, labels=labels.astype(np.int64, copy=False))


def _read_npz(dataset: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The samples and labels arrays of an npz source; ManifestError saying what the file is when it is no .npz.

    The file's first bytes are checked first: numpy, given something that is neither .npz nor .npy, tries to
    unpickle it and answers with advice about ``allow_pickle`` that does not apply (datasets never unpickle).
    """
    source = dataset.spec.source
    what = f"dataset '{dataset.name}': spec.source.uri '{source.uri}' ({path})"
    with path.open("rb") as file:
        head = file.read(len(_NPY_SIGNATURE))
    if head.startswith(_NPY_SIGNATURE):
        raise ManifestError(f"{what} is a single .npy array, not an .npz file.", hint=_NPZ_HINT)
    if not head.startswith(_ZIP_SIGNATURES):
        raise ManifestError(
            f"{what} is not an .npz file (it does not start with the zip signature every .npz has).", hint=_NPZ_HINT
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            return _array(data, source.images_key, what), _array(data, source.labels_key, what)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ManifestError(
            f"{what} is a damaged .npz file: {e}.", hint="Rebuild it with numpy.savez and update spec.source.sha256."
        ) from e


def _array(data: np.lib.npyio.NpzFile, key: str, what: str) -> np.ndarray:
    if key not in data.files:
        raise ManifestError(
            f"{what} has no array '{key}' (its arrays: {', '.join(data.files) or 'none'}).",
            hint="Fix spec.source.images_key / labels_key in the Dataset manifest.",
        )
    try:
        return data[key]
    except ValueError as e:
        # numpy's message for an object array suggests allow_pickle, which a dataset never uses.
        reason = "it holds Python objects (pickled), not numbers" if "pickle" in str(e) else str(e)
        raise ManifestError(
            f"{what}: array '{key}' cannot be read: {reason}.",
            hint="Save plain numeric arrays (numpy.savez(path, images=<float or uint8 array>, labels=<int array>)).",
        ) from e


def synthetic_dataset(source: DatasetSource, size: int) -> DatasetArrays:
    """``size`` seeded random samples and labels as a ``synthetic`` source declares them; same seed, same arrays.

    Samples are drawn before labels from one ``numpy.random.default_rng(seed)`` (PCG64). numpy does not promise
    the same streams across versions, but these give identical arrays under numpy 1.23 (the MXNet runtime) and
    2.4 (tests/test_zoo.py pins their sha256). Floats are drawn as float32, normal(mean, std) or uniform in
    [low, high), then cast to ``dtype``; integers are uniform in low..high-1. Labels are uniform in
    0..classes-1. Nothing is fetched.
    """
    assert source.shape is not None and source.dtype is not None and source.classes is not None
    rng = np.random.default_rng(source.seed)
    shape = (size, *source.shape)
    dtype = np.dtype(source.dtype)
    samples: np.ndarray
    if dtype.kind == "f":
        if source.distribution == "normal":
            samples = rng.standard_normal(shape, dtype=np.float32) * np.float32(source.std) + np.float32(source.mean)
        else:
            samples = rng.uniform(source.low, source.high, shape).astype(np.float32)
    else:
        samples = rng.integers(int(source.low), int(source.high), shape, dtype=np.int64)
    labels = rng.integers(0, source.classes, size, dtype=np.int64)
    return DatasetArrays(samples=samples.astype(dtype, copy=False), labels=labels)
