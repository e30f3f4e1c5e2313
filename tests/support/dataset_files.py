"""Dataset files for tests: images of any size, mode and format encoded by Pillow, and Dataset manifests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.manifests.resources import Dataset


def image_bytes(size: tuple[int, int], mode: str, image_format: str, seed: int = 0) -> bytes:
    """An image of ``size`` (width, height) with random pixels, encoded as ``image_format``."""
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def dataset(
    source: dict[str, Any], size: int, names: Path | None = None, task: str = "image_classification"
) -> Dataset:
    """A Dataset named 'photos'; ``names``: its spec.labels file (relative URIs resolve against its folder)."""
    spec: dict[str, Any] = {"task": task, "size": size, "source": source}
    if names is not None:
        spec["labels"] = {"uri": names.name, "sha256": sha256_of_file(names)}
    return Dataset.model_validate(
        {"apiVersion": "mlmodelscope.org/v1alpha1", "kind": "Dataset", "metadata": {"name": "photos"}, "spec": spec}
    )
