"""The one interface every dataset source kind (npz, synthetic, folder, coco) implements, and what it knows.

A reader opens a dataset without decoding it: it knows how many items there are, what each item's ground truth
is, and how to read one item's raw sample (encoded image bytes, or an array) on demand. Decoding and
pre-processing happen later, in the sample library, only for the items LoadGen asks to load, so memory does not
grow with the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from mlmodelscope.core.processing.preprocess import Sample


@dataclass(frozen=True)
class ClassLabels:
    """Classification truth: item i has class ``labels[i]`` (-1: unlabelled)."""

    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CocoTruth:
    """Detection/segmentation truth, as a COCO instances file.

    Dataset class index k is COCO category ``category_ids[k]`` (categories sorted by id). For semantic
    segmentation, mask class 0 is background and class k + 1 is dataset class k.
    """

    annotations_path: Path  # the COCO instances JSON
    image_ids: np.ndarray  # (N,) int64: the COCO image id of item i
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    original_hw: np.ndarray  # (N, 2) int64: each image's (height, width) as the JSON states it


Truth = ClassLabels | CocoTruth


@dataclass(frozen=True)
class ItemName:
    """How an item is named in error messages: its file (relative to the dataset root), or its index."""

    index: int
    path: str | None = None

    def __str__(self) -> str:
        return f"item {self.index} ({self.path})" if self.path else f"item {self.index}"


@dataclass(frozen=True)
class DatasetFacts:
    """What ``mlmodelscope datasets show`` prints: counts, classes and the image size distribution."""

    size: int
    class_counts: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> count (at most the 10 most common)
    modes: dict[str, int] = field(default_factory=dict)  # Pillow mode (RGB, L, ...) -> count
    formats: dict[str, int] = field(default_factory=dict)  # JPEG, PNG, ... -> count
    annotations: int | None = None  # coco: how many annotations


class DatasetReader(Protocol):
    """One opened dataset; ``read`` may be called from any thread, any number of times, in any order."""

    @property
    def size(self) -> int: ...

    @property
    def truth(self) -> Truth: ...

    @property
    def fingerprint(self) -> str:
        """A sha256 that changes whenever any item's bytes could change (the source's sha256, or a hash of the
        folder listing with sizes and mtimes): the pre-processed-sample cache is keyed by it."""
        ...

    def read(self, index: int) -> Sample:
        """Item ``index``'s raw sample: encoded image bytes, or an array; DatasetError naming the file if it
        cannot be read."""
        ...

    def name(self, index: int) -> ItemName: ...
