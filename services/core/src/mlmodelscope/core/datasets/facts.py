"""What a dataset holds, as ``mlmodelscope datasets show`` prints it: classes, image sizes, modes and formats.

Image sizes, modes and formats come from each file's header (Pillow's ``Image.open`` reads no pixels), so facts
for a large folder cost one small read per image. A header that cannot be read is counted as format
``unreadable``; ``undecodable_items`` and ``verify_decodable`` decode images fully and say which file fails and why.
"""

from __future__ import annotations

import functools
import io
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlmodelscope.core.datasets.reader import ClassLabels, CocoTruth, DatasetFacts, DatasetReader, ItemName
from mlmodelscope.core.errors import DatasetError

_MOST_SIZES = 10
_HEADER_THREADS = 8
UNREADABLE = "unreadable"
_PIL_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


@runtime_checkable
class _FileReader(Protocol):
    """A reader whose items are files (folder, coco): headers are read from the file, not from all its bytes."""

    def path(self, index: int) -> Path: ...


def dataset_facts(reader: DatasetReader, *, max_images: int | None = None) -> DatasetFacts:
    """Counts over the whole dataset; image sizes, modes and formats over ``max_images`` evenly spaced items
    (all of them by default)."""
    indices = _spread(reader.size, max_images)
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=_HEADER_THREADS) as pool:  # file reads overlap; the header parse is small
        headers = list(pool.map(functools.partial(_header, reader), indices))
    for size, mode, image_format in headers:
        sizes[size] += 1
        modes[mode] += 1
        formats[image_format] += 1
    truth = reader.truth
    annotations = None
    if isinstance(truth, CocoTruth):
        per_category = getattr(reader, "category_annotations", None)
        annotations = getattr(reader, "annotation_count", None)
        class_counts = dict(zip(truth.category_names, per_category, strict=True)) if per_category else {}
    else:
        class_counts = _class_counts(truth)
    return DatasetFacts(
        size=reader.size,
        class_counts=class_counts,
        image_sizes=dict(sizes.most_common(_MOST_SIZES)),
        modes={k: v for k, v in modes.items() if k},
        formats=dict(formats),
        annotations=annotations,
    )


def verify_decodable(reader: DatasetReader, index: int) -> None:
    """Decode item ``index`` fully; DatasetError naming the file and Pillow's reason when it cannot be decoded."""
    sample = reader.read(index)
    if not isinstance(sample, bytes):
        return
    try:
        with Image.open(io.BytesIO(sample)) as image:
            image.load()
    except _PIL_ERRORS as e:
        raise DatasetError(
            f"{reader.name(index)} cannot be decoded: {e}.",
            hint="Replace the file (it may be truncated or damaged), or remove it from the dataset.",
        ) from e


def undecodable_items(reader: DatasetReader, indices: Iterable[int] | None = None) -> list[tuple[ItemName, str]]:
    """Every item (of ``indices``, default all) that cannot be read or decoded, with the reason."""
    failures: list[tuple[ItemName, str]] = []
    for index in range(reader.size) if indices is None else indices:
        try:
            verify_decodable(reader, index)
        except DatasetError as e:
            failures.append((reader.name(index), e.message))
    return failures


def _spread(size: int, most: int | None) -> list[int]:
    if most is None or most >= size:
        return list(range(size))
    return sorted({int(i) for i in np.linspace(0, size - 1, num=max(most, 1))})


def _header(reader: DatasetReader, index: int) -> tuple[str, str, str]:
    """("WxH", mode, format) of an image item; ("shape AxB", "", "<dtype> array") of an array item."""
    try:
        if isinstance(reader, _FileReader):
            opened = Image.open(reader.path(index))
        else:
            sample = reader.read(index)
            if not isinstance(sample, bytes):
                array = np.asarray(sample)
                return "shape " + "x".join(map(str, array.shape)), "", f"{array.dtype} array"
            opened = Image.open(io.BytesIO(sample))
        with opened as image:
            return f"{image.width}x{image.height}", image.mode, image.format or UNREADABLE
    except (*_PIL_ERRORS, DatasetError):
        return UNREADABLE, UNREADABLE, UNREADABLE


def _class_counts(truth: ClassLabels) -> dict[str, int]:
    """Items per class in class order (classes without items left out); -1 counts as 'unlabelled'."""
    values, counts = np.unique(truth.labels, return_counts=True)
    names = truth.class_names
    result: dict[str, int] = {}
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        named = names is not None and 0 <= value < len(names)
        key = "unlabelled" if value < 0 else (names[value] if names is not None and named else str(value))
        result[key] = count
    return result
