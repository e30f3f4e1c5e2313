"""The ``npz`` dataset source: one ``.npz`` file (as ``numpy.savez`` writes it) of samples and integer labels.

The file is fetched through the artifact store (sha256-verified) and read whole: an npz dataset is small by
construction (the arrays are already decoded), so item i is simply ``samples[i]``. What the file is gets checked
before numpy sees it: numpy, given something that is neither .npz nor .npy, tries to unpickle it and answers with
advice about ``allow_pickle`` that does not apply (datasets never unpickle).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlmodelscope.core.artifacts.digests import normalize_sha256
from mlmodelscope.core.artifacts.locations import LocalFile, parse_uri
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.archives import fingerprint
from mlmodelscope.core.datasets.folder import class_names_of
from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.errors import DatasetError, ManifestError
from mlmodelscope.core.manifests.resources import Dataset

_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive of .npy files
_NPY_SIGNATURE = b"\x93NUMPY"
_NPZ_HINT = (
    "An npz source is one .npz file as numpy.savez writes it (numpy.savez(path, images=..., labels=...)), holding "
    "the arrays spec.source.images_key and labels_key name; point spec.source.uri at it and set spec.source.sha256 "
    "to its sha256."
)


@dataclass(frozen=True)
class NpzReader:
    """An opened npz dataset: ``samples`` (N, ...) and ``truth.labels`` (N,), both in memory."""

    samples: np.ndarray
    truth: ClassLabels
    fingerprint: str

    @property
    def size(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.samples[index])

    def name(self, index: int) -> ItemName:
        return ItemName(index=index)


def open_npz(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> NpzReader:
    """Fetch (checksum-verified) and read an npz dataset, checking it against its manifest."""
    source = dataset.spec.source
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
        raise DatasetError(
            f"dataset '{dataset.name}': {len(samples)} samples and {len(labels)} labels, "
            f"but the manifest says spec.size is {dataset.spec.size}.",
            hint="Fix spec.size, or rebuild the dataset file.",
        )
    sha256 = normalize_sha256(source.sha256, uri=source.uri)
    return NpzReader(
        samples=samples,
        truth=ClassLabels(
            labels=labels.astype(np.int64, copy=False), class_names=class_names_of(dataset, store, base_dir)
        ),
        fingerprint=fingerprint(["npz", sha256, f"images_key {source.images_key}"]),
    )


def _read_npz(dataset: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The samples and labels arrays of an npz source; ManifestError saying what the file is when it is no .npz."""
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
