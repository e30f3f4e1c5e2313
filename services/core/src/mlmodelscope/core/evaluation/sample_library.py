"""The sample library: LoadGen's query sample library (QSL), loading only the samples LoadGen asks for.

MLPerf's QSL knows every sample but keeps only a *loaded set* in RAM: LoadGen calls ``LoadSamplesToRam`` with
``performance_sample_count`` sample indices before a test (untimed), issues queries over them, and calls
``UnloadSamplesFromRam`` after; the accuracy run walks the whole dataset in such sets. Memory is therefore bounded
by the performance sample count, not by the dataset.

``load`` decodes and pre-processes exactly the items asked for into the tensor the model takes (served from the
on-disk ``SampleCache`` when a previous run already did it), into one contiguous array per model input for the
set, plus a map item -> row. A query then costs a slice (a view) for consecutive rows, or one gather for scattered
ones, so the harness adds almost nothing to what the framework itself spends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mlmodelscope.core.datasets.reader import DatasetReader
from mlmodelscope.core.datasets.sample_cache import SampleCache
from mlmodelscope.core.errors import EvaluationError, ProcessingError
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.manifests.resources import Dataset
from mlmodelscope.core.processing.preprocess import Preprocessor

_PARALLEL_FROM = 16  # smaller loads are decoded on the calling thread (a pool costs more than it saves)
_MAX_LOAD_THREADS = 8


def dataset_source_sha256(dataset: Dataset) -> dict[str, str]:
    """``{uri: sha256}`` of the file a dataset was read from, for the result's record; empty for synthetic data
    and plain folders (the manifest, whose sha256 the result records, determines the former)."""
    source = dataset.spec.source
    return {source.uri: source.sha256} if source.uri is not None and source.sha256 is not None else {}


@dataclass
class _Block:
    """The tensors of one ``load`` call: row r of every array is item ``items[r]``."""

    inputs: list[np.ndarray]
    items: np.ndarray
    live: int


class SampleLibrary:
    """Decodes and pre-processes dataset items on ``load``, for a model's (single) input; frees them on ``unload``."""

    def __init__(
        self, reader: DatasetReader, model: ModelSpec, cache: SampleCache | None = None, *, threads: int | None = None
    ) -> None:
        if len(model.inputs) != 1:
            raise ProcessingError(
                f"datasets feed models with exactly one input; this model declares {len(model.inputs)}.",
                hint="Multi-input models need a dataset with one array per input (not supported yet).",
            )
        self.reader = reader
        self.spec = model.inputs[0]
        self.cache = cache
        self._preprocess = Preprocessor(self.spec.preprocess)
        self._threads = max(1, threads if threads is not None else min(_MAX_LOAD_THREADS, os.cpu_count() or 1))
        self._size = reader.size
        self._block_of = np.full(self._size, -1, dtype=np.int64)
        self._row_of = np.full(self._size, -1, dtype=np.int64)
        self._blocks: dict[int, _Block] = {}
        self._next_block = 0
        self._only: _Block | None = None  # the one block, when there is exactly one (the hot path's case)

    @property
    def size(self) -> int:
        return self._size

    @property
    def loaded(self) -> int:
        """How many items are in RAM."""
        return sum(block.live for block in self._blocks.values())

    def is_loaded(self, index: int) -> bool:
        return bool(self._block_of[index] >= 0)

    # --- LoadGen's load / unload ----------------------------------------------------------------------------

    def load(self, indices: Iterable[int]) -> None:
        """Bring these items into RAM (those already there stay as they are), as one new block."""
        new = [i for i in dict.fromkeys(int(i) for i in indices) if self._block_of[self._checked(i)] < 0]
        if not new:
            return
        first = self._sample(new[0], None)
        tensor = np.empty((len(new), *first.shape), dtype=first.dtype)
        tensor[0] = first

        def fill(row: int) -> None:
            tensor[row] = self._sample(new[row], first)

        rows = range(1, len(new))
        if len(new) < _PARALLEL_FROM or self._threads == 1:
            for row in rows:
                fill(row)
        else:
            pool = ThreadPoolExecutor(self._threads, thread_name_prefix="mlmodelscope-load")
            try:
                for _ in pool.map(fill, rows):  # re-raises the first failure, in item order
                    pass
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # after a failure, the items not started are skipped
        items = np.asarray(new, dtype=np.int64)
        key = self._next_block
        self._next_block += 1
        self._blocks[key] = _Block([tensor], items, len(new))
        self._block_of[items] = key
        self._row_of[items] = np.arange(len(new))
        self._only = self._blocks[key] if len(self._blocks) == 1 else None

    def unload(self, indices: Iterable[int]) -> None:
        """Release these items; a block's memory is freed once none of its items is loaded (and no view holds it)."""
        for i in dict.fromkeys(int(i) for i in indices):
            key = int(self._block_of[self._checked(i)])
            if key < 0:
                continue
            self._block_of[i] = -1
            self._row_of[i] = -1
            block = self._blocks[key]
            block.live -= 1
            if block.live == 0:
                del self._blocks[key]
        self._only = next(iter(self._blocks.values())) if len(self._blocks) == 1 else None

    def unload_all(self) -> None:
        self._blocks.clear()
        self._block_of.fill(-1)
        self._row_of.fill(-1)
        self._only = None

    # --- access to loaded items (the hot path) -------------------------------------------------------------

    def gather(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """One copy of the loaded items' tensors, in the order given."""
        rows = self._row_of[indices]
        only = self._only
        if only is not None and len(rows) and rows.min() >= 0:
            return [array.take(rows, axis=0) for array in only.inputs]
        return self._gather_blocks(np.asarray(indices, dtype=np.int64))

    def batch(self, indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """The loaded items' tensors: a view when they sit in consecutive rows of one block, else a gather."""
        items = np.asarray(indices, dtype=np.int64)
        self._require_loaded(items)
        blocks, rows = self._block_of[items], self._row_of[items]
        if len(items) and (blocks == blocks[0]).all() and (np.diff(rows) == 1).all():
            start = int(rows[0])
            return [array[start : start + len(items)] for array in self._blocks[int(blocks[0])].inputs]
        return self.gather(items)

    def contiguous(self, start: int, stop: int) -> list[np.ndarray]:
        """Items start..stop-1 (all loaded): a view when loaded together in order, else a gather."""
        return self.batch(np.arange(start, stop))

    def _gather_blocks(self, items: np.ndarray) -> list[np.ndarray]:
        self._require_loaded(items)
        if not len(items):
            raise EvaluationError("cannot gather an empty batch of samples.")
        blocks, rows = self._block_of[items], self._row_of[items]
        first = self._blocks[int(blocks[0])].inputs
        out = [np.empty((len(items), *array.shape[1:]), dtype=array.dtype) for array in first]
        for key in np.unique(blocks):
            where = np.flatnonzero(blocks == key)
            for target, source in zip(out, self._blocks[int(key)].inputs, strict=True):
                target[where] = source.take(rows[where], axis=0)
        return out

    def _require_loaded(self, items: np.ndarray) -> None:
        missing = items[self._block_of[items] < 0] if len(items) else items
        if len(missing):
            raise EvaluationError(
                f"{self.reader.name(int(missing[0]))} was not loaded into RAM before it was used "
                f"({len(missing)} such items).",
                hint="This is a harness bug: LoadGen queries only loaded samples; please report it.",
            )

    def _checked(self, index: int) -> int:
        if not 0 <= index < self._size:
            raise EvaluationError(f"item {index} is outside the dataset (items 0..{self._size - 1}).")
        return index

    # --- one item ------------------------------------------------------------------------------------------

    def _sample(self, index: int, first: np.ndarray | None) -> np.ndarray:
        """Item ``index``'s pre-processed tensor, checked against the input's declaration (and the first item)."""
        cache = self.cache
        tensor = cache.get(index) if cache is not None else None
        if tensor is not None and not self._fits(tensor, first):
            tensor = None
        if tensor is None:
            tensor = self._preprocessed(index)
            self._check(index, tensor, first)
            if cache is not None:
                cache.put(index, tensor)
        return tensor

    def _preprocessed(self, index: int) -> np.ndarray:
        sample = self.reader.read(index)  # DatasetError naming the file when it cannot be read
        try:
            return self._preprocess(sample)
        except ProcessingError as e:
            raise ProcessingError(f"dataset {self.reader.name(index)}: {e.message}", hint=e.hint) from e

    def _fits(self, tensor: np.ndarray, first: np.ndarray | None) -> bool:
        if not _matches(self.spec.shape, tensor.shape):
            return False
        same = first is None or (tensor.shape == first.shape and tensor.dtype == first.dtype)
        return same and str(tensor.dtype) == self.spec.dtype

    def _check(self, index: int, tensor: np.ndarray, first: np.ndarray | None) -> None:
        spec, name = self.spec, self.reader.name(index)
        expected, actual = tuple(spec.shape), tensor.shape
        if not _matches(expected, actual):
            raise ProcessingError(
                f"pre-processing produces samples of shape {list(actual)}, but input '{spec.name}' declares "
                f"{list(expected)} (dataset {name}).",
                hint="Fix spec.inputs[0].shape or its preprocess steps in the Model manifest.",
            )
        if str(tensor.dtype) != spec.dtype:
            raise ProcessingError(
                f"pre-processing produces {tensor.dtype}, but input '{spec.name}' declares {spec.dtype} "
                f"(dataset {name}).",
                hint="Add a `- dtype: <type>` step at the end of preprocess.",
            )
        if first is not None and tensor.shape != first.shape:
            raise ProcessingError(
                f"dataset {name} pre-processes to shape {list(actual)}, but the items loaded with it to "
                f"{list(first.shape)}; a batch needs one shape.",
                hint="End image pipelines with a fixed-size resize or crop (or pad), and a dtype step.",
            )


def _matches(declared: Sequence[int], actual: Sequence[int]) -> bool:
    """Whether a tensor's shape is the declared one (-1: any size on that axis)."""
    return len(actual) == len(declared) and all(d in (-1, a) for d, a in zip(declared, actual, strict=True))


class QuerySampleLibrary:
    """LoadGen's view of the library: its samples, and the load/unload callbacks ``ConstructQSL`` takes.

    With ``unit_batch`` B (SingleStream, Server) one LoadGen sample is a *unit*: B consecutive items, the last unit
    wrapping around to the first items so every unit is a full batch; its input views are built when it is loaded,
    so answering a query is one list lookup. Without, one LoadGen sample is one item. The callbacks never raise
    (LoadGen calls them from C++): the first failure is kept in ``error`` for the driver to raise after the test,
    and later loads are skipped, so the run ends quickly.
    """

    def __init__(self, library: SampleLibrary, unit_batch: int | None) -> None:
        self.library = library
        self.unit_batch = unit_batch
        size = library.size
        self.total = -(-size // unit_batch) if unit_batch else size
        self.units: list[list[np.ndarray] | None] = [None] * self.total if unit_batch else []
        self.error: Exception | None = None
        self.load_s = 0.0

    def items_of(self, unit: int) -> np.ndarray:
        assert self.unit_batch is not None
        return np.arange(unit * self.unit_batch, (unit + 1) * self.unit_batch) % self.library.size

    def performance_count(self, items: int) -> int:
        """LoadGen's performance sample count (in its samples) for a loaded set of ``items`` dataset items."""
        return min(self.total, -(-items // self.unit_batch) if self.unit_batch else items)

    def reset(self) -> None:
        self.error, self.load_s = None, 0.0

    def load(self, samples: Sequence[int]) -> None:
        if self.error is not None:
            return
        start = time.perf_counter()
        try:
            if self.unit_batch:
                units = [int(u) for u in samples]
                self.library.load(np.concatenate([self.items_of(u) for u in units]))
                for u in units:
                    self.units[u] = self.library.batch(self.items_of(u))
            else:
                self.library.load(samples)
        except Exception as e:
            self.error = e
        finally:
            self.load_s += time.perf_counter() - start

    def unload(self, samples: Sequence[int]) -> None:
        start = time.perf_counter()
        try:
            if self.unit_batch:
                units = [int(u) for u in samples]
                for u in units:
                    self.units[u] = None
                self.library.unload(np.concatenate([self.items_of(u) for u in units]) if units else [])
            else:
                self.library.unload(samples)
        except Exception as e:
            self.error = self.error or e
        finally:
            self.load_s += time.perf_counter() - start

    def release(self) -> None:
        """Forget every loaded sample (after a test, whatever LoadGen did)."""
        for u in range(len(self.units)):
            self.units[u] = None
        self.library.unload_all()
