"""The ``synthetic`` dataset source: seeded random samples and labels, nothing fetched.

Samples are drawn before labels from one ``numpy.random.default_rng(seed)`` (PCG64). numpy does not promise the
same streams across versions, but these give identical arrays under numpy 1.23 (the MXNet runtime) and 2.4
(tests/agent/test_zoo.py pins their sha256). Floats are drawn as float32, normal(mean, std) or uniform in [low, high),
then cast to ``dtype``; integers are uniform in low..high-1. Labels are uniform in 0..classes-1.

The arrays are generated once, on first use, as a whole: drawing item by item would not reproduce the pinned
streams (the labels come after every sample, and the normal and bounded-integer samplers consume a variable number
of raw draws), and a synthetic dataset is small by declaration.
"""

from __future__ import annotations

import threading

import numpy as np

from mlmodelscope.core.datasets.archives import fingerprint
from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.manifests.dataset_spec import DatasetSource


def synthetic_arrays(source: DatasetSource, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` seeded random samples and their labels as a ``synthetic`` source declares them."""
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
    return samples.astype(dtype, copy=False), labels


class SyntheticReader:
    """A synthetic dataset; its arrays are generated on first use (thread-safe), then kept."""

    def __init__(self, source: DatasetSource, size: int) -> None:
        self._source = source
        self._size = size
        self._lock = threading.Lock()
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._fingerprint = fingerprint(["synthetic", f"size {size}", source.model_dump_json()])

    @property
    def size(self) -> int:
        return self._size

    @property
    def samples(self) -> np.ndarray:
        return self._generated()[0]

    @property
    def truth(self) -> ClassLabels:
        return ClassLabels(labels=self._generated()[1])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.samples[index])

    def name(self, index: int) -> ItemName:
        return ItemName(index=index)

    def _generated(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._arrays is None:
                self._arrays = synthetic_arrays(self._source, self._size)
            return self._arrays
