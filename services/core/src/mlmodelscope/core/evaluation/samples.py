"""The sample library: the dataset, pre-processed once into RAM before any timing starts.

MLPerf's query sample library loads samples untimed; we do the same and go one step further: every sample is
pre-processed into the exact tensor the model takes and stacked into one contiguous array per model input. A
query then costs a slice (a view, no copy) for contiguous batches, or one gather for scattered ones, so the
harness adds almost nothing to what the framework itself spends.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlmodelscope.core.artifacts import ArtifactStore
from mlmodelscope.core.artifacts.locations import LocalFile, parse_uri
from mlmodelscope.core.errors import ManifestError, ProcessingError
from mlmodelscope.core.manifests.resources import Dataset, DatasetSource, ModelSpec
from mlmodelscope.core.processing import Preprocessor


@dataclass(frozen=True)
class DatasetArrays:
    samples: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class SampleLibrary:
    """Pre-processed inputs (one array per model input, batch axis first) and integer labels."""

    inputs: list[np.ndarray]
    labels: np.ndarray

    @property
    def size(self) -> int:
        return len(self.labels)

    def contiguous(self, start: int, stop: int) -> list[np.ndarray]:
        return [array[start:stop] for array in self.inputs]

    def gather(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        return [array.take(indices, axis=0) for array in self.inputs]


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


def dataset_source_sha256(dataset: Dataset) -> dict[str, str]:
    """``{uri: sha256}`` of the file a dataset was read from, for the result's record; empty for synthetic data
    (its manifest, whose sha256 the result records, determines it)."""
    source = dataset.spec.source
    return {source.uri: source.sha256} if source.uri is not None and source.sha256 is not None else {}


def build_sample_library(data: DatasetArrays, model: ModelSpec) -> SampleLibrary:
    """Pre-process every sample for the model's (single) input."""
    if len(model.inputs) != 1:
        raise ProcessingError(
            f"datasets feed models with exactly one input; this model declares {len(model.inputs)}.",
            hint="Multi-input models need a dataset with one array per input (not supported yet).",
        )
    spec = model.inputs[0]
    preprocess = Preprocessor(spec.preprocess)
    tensor = np.ascontiguousarray(preprocess.batch(list(data.samples)))
    expected = tuple(spec.shape)
    actual = tensor.shape[1:]
    if len(actual) != len(expected) or any(e not in (-1, a) for e, a in zip(expected, actual, strict=True)):
        raise ProcessingError(
            f"pre-processing produces samples of shape {list(actual)}, but input '{spec.name}' declares "
            f"{list(expected)}.",
            hint="Fix spec.inputs[0].shape or its preprocess steps in the Model manifest.",
        )
    if str(tensor.dtype) != spec.dtype:
        raise ProcessingError(
            f"pre-processing produces {tensor.dtype}, but input '{spec.name}' declares {spec.dtype}.",
            hint="Add a `- dtype: <type>` step at the end of preprocess.",
        )
    return SampleLibrary(inputs=[tensor], labels=data.labels)
