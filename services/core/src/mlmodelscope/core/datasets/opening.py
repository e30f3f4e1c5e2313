"""Opening a Dataset manifest's data: the one entry point that picks the reader of its source kind.

The evaluation runner, the sample library and ``mlmodelscope datasets show`` all open datasets here, so they see
the same items in the same order, and every source kind is checked against ``spec.size`` the same way.
"""

from __future__ import annotations

from pathlib import Path

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.coco import open_coco
from mlmodelscope.core.datasets.folder import open_folder
from mlmodelscope.core.datasets.npz import open_npz
from mlmodelscope.core.datasets.reader import DatasetReader
from mlmodelscope.core.datasets.synthetic import SyntheticReader
from mlmodelscope.core.errors import DatasetError
from mlmodelscope.core.manifests.resources import Dataset

_HOLDS = {"folder": "image files", "coco": "images in its annotations file"}


def open_reader(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> DatasetReader:
    """The reader of ``dataset``: fetched (and unpacked) through ``store``, listed and checked, nothing decoded.

    ``base_dir`` is the folder relative URIs in the manifest resolve against (the manifest's own folder).
    """
    source = dataset.spec.source
    if source.kind == "synthetic":
        return SyntheticReader(source, dataset.spec.size)
    if source.kind == "npz":
        return open_npz(dataset, store, base_dir)  # checks samples, labels and spec.size together
    reader: DatasetReader = (open_folder if source.kind == "folder" else open_coco)(dataset, store, base_dir)
    if reader.size != dataset.spec.size:
        raise DatasetError(
            f"dataset '{dataset.name}': the manifest says spec.size is {dataset.spec.size}, but its "
            f"{source.kind} source '{source.uri}' holds {reader.size} {_HOLDS[source.kind]}.",
            hint=f"Set spec.size to {reader.size} if the data is right, or check spec.source (uri, root).",
        )
    return reader
