"""The ``folder`` dataset source: image files in a folder (or an archive of one), labelled three ways.

- ``labels: subfolders`` (the ImageNet train layout): one sub-folder per class, holding that class's images (at
  any depth). Classes are the sorted sub-folder names, or, when ``spec.labels`` names the classes, its lines (each
  sub-folder must then be one of them). Images at the top level belong to no class and are refused.
- ``labels: file`` (the ImageNet val layout): ``labels_file`` lists ``relative/path label`` lines; a label is a
  class index, or a class name (of ``spec.labels``, or of the file itself when no ``spec.labels``: then classes are
  its sorted names). Every image must be listed exactly once, and every line must name an image.
- ``labels: none``: unlabelled images (label -1), for performance runs.

Images are JPEG, PNG, WebP, BMP and TIFF files, recognised by extension (case-insensitive); hidden files and
folders are skipped and everything is listed in sorted order, so item i is the same file on every machine. Opening
lists and checks the folder but decodes nothing: ``read`` returns a file's bytes, decoded later by the sample
library, and every problem found is a DatasetError naming the file (or line) and how to fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.archives import (
    IMAGE_SUFFIXES,
    DatasetRoot,
    dataset_root,
    fingerprint,
    image_files,
    is_hidden,
    is_image_file,
    listing_sha256,
    named,
    read_item,
    top_level,
)
from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.errors import DatasetError, ProcessingError
from mlmodelscope.core.manifests.resources import Dataset
from mlmodelscope.core.processing.postprocess import load_labels

_SUFFIXES = ", ".join(IMAGE_SUFFIXES)


@dataclass(frozen=True)
class FolderReader:
    """An opened folder dataset: ``files[i]`` (relative to ``root``) is item i, ``truth.labels[i]`` its class."""

    root: Path
    files: tuple[str, ...]
    truth: ClassLabels
    fingerprint: str
    dataset_name: str

    @property
    def size(self) -> int:
        return len(self.files)

    def read(self, index: int) -> bytes:
        return read_item(self.root / self.files[index], what=f"dataset '{self.dataset_name}': {self.name(index)}")

    def name(self, index: int) -> ItemName:
        return ItemName(index=index, path=self.files[index])

    def path(self, index: int) -> Path:
        return self.root / self.files[index]


def open_folder(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> FolderReader:
    """List and check a folder dataset (fetching and unpacking its archive first, if it is one)."""
    source = dataset.spec.source
    root = dataset_root(dataset, store, base_dir)
    where = f"dataset '{dataset.name}'"
    names = class_names_of(dataset, store, base_dir)
    class_names: tuple[str, ...] | None
    if source.labels == "subfolders":
        files, labels, class_names = _subfolders(root.path, names, where)
    elif source.labels == "file":
        assert source.labels_file is not None  # DatasetSource requires it with labels: file
        files, labels, class_names = _listed(root.path, source.labels_file, names, where)
    else:
        files = image_files(root.path)
        labels, class_names = [-1] * len(files), names
    if not files:
        raise DatasetError(
            f"{where}: {root.path} holds no image files (it holds: {top_level(root.path)}).",
            hint=f"Image files are recognised by their suffix ({_SUFFIXES}, any case); hidden files are skipped. "
            "Check spec.source.uri and spec.source.root.",
        )
    return FolderReader(
        root=root.path,
        files=tuple(files),
        truth=ClassLabels(labels=np.asarray(labels, dtype=np.int64), class_names=class_names),
        fingerprint=_fingerprint(dataset, root, files),
        dataset_name=dataset.name,
    )


def _fingerprint(dataset: Dataset, root: DatasetRoot, files: list[str]) -> str:
    source = dataset.spec.source
    if root.archive_sha256 is not None:
        return fingerprint(["folder", f"archive {root.archive_sha256}", f"root {source.root or ''}"])
    return fingerprint(["folder", listing_sha256(root.path, files, what=f"dataset '{dataset.name}'")])


def class_names_of(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> tuple[str, ...] | None:
    """The class names ``spec.labels`` lists (line i names class i), fetched and checked; None without it."""
    ref = dataset.spec.labels
    if ref is None:
        return None
    path = store.fetch(ref.uri, ref.sha256, base_dir=base_dir)
    try:
        names = load_labels(path)
    except ProcessingError as e:
        raise DatasetError(f"dataset '{dataset.name}': spec.labels '{ref.uri}': {e.message}", hint=e.hint) from e
    seen: dict[str, int] = {}
    for line, name in enumerate(names, start=1):
        if name in seen:
            raise DatasetError(
                f"dataset '{dataset.name}': spec.labels '{ref.uri}' names class '{name}' twice (lines {seen[name]} "
                f"and {line}).",
                hint="Each line must name a different class; line i names class i.",
            )
        seen[name] = line
    return tuple(names)


def _subfolders(root: Path, names: tuple[str, ...] | None, where: str) -> tuple[list[str], list[int], tuple[str, ...]]:
    entries = sorted((e for e in os.scandir(root) if not is_hidden(e.name)), key=lambda e: e.name)
    loose = [e.name for e in entries if not e.is_dir() and is_image_file(e.name)]
    if loose:
        raise DatasetError(
            f"{where}: labels: subfolders, but {len(loose)} image file(s) lie at the top level of {root}, outside any "
            f"class sub-folder: {named(loose)}.",
            hint="Move each image into its class's sub-folder, or use `labels: none` (unlabelled) or `labels: file` "
            "with a labels_file.",
        )
    folders = [e.name for e in entries if e.is_dir()]
    if not folders:
        raise DatasetError(
            f"{where}: labels: subfolders, but {root} has no class sub-folders (it holds: {top_level(root)}).",
            hint="Put each class's images into a sub-folder named after the class (ImageNet train layout), or check "
            "spec.source.uri and spec.source.root.",
        )
    if len(folders) == 1 and names is None:
        raise DatasetError(
            f"{where}: labels: subfolders, but {root} has one sub-folder, '{folders[0]}': a dataset of one class.",
            hint=f"If '{folders[0]}' holds the class sub-folders, set spec.source.root to its path (an archive of a "
            "folder usually holds that folder); a one-class dataset needs spec.labels naming its class.",
        )
    class_names = names if names is not None else tuple(folders)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [folder for folder in folders if folder not in index]
    if unknown:
        raise DatasetError(
            f"{where}: sub-folder(s) {named(unknown)} of {root} are not classes of spec.labels "
            f"({len(class_names)} classes: {named(class_names)}).",
            hint="Name each sub-folder exactly as a line of spec.labels, or remove spec.labels to use the sorted "
            "sub-folder names as the classes.",
        )
    files: list[str] = []
    labels: list[int] = []
    for folder in folders:
        found = image_files(root / folder)
        if not found:
            raise DatasetError(
                f"{where}: class sub-folder '{folder}' of {root} holds no image files.",
                hint=f"Add its images ({_SUFFIXES}), or remove the empty folder.",
            )
        files += [f"{folder}/{relative}" for relative in found]
        labels += [index[folder]] * len(found)
    return files, labels, class_names


@dataclass(frozen=True)
class _Line:
    number: int
    path: str
    label: str


def _listed(
    root: Path, labels_file: str, names: tuple[str, ...] | None, where: str
) -> tuple[list[str], list[int], tuple[str, ...] | None]:
    what = f"{where}: spec.source.labels_file '{labels_file}'"
    lines = _parse_labels_file(root, labels_file, what)
    present = image_files(root)
    present_set = set(present)
    for line in lines:
        if line.path not in present_set:
            why = f"is not an image file ({_SUFFIXES})" if (root / line.path).is_file() else f"does not exist in {root}"
            raise DatasetError(
                f"{what}, line {line.number}: '{line.path}' {why}.",
                hint="Each line is `relative/path label`, the path relative to the dataset's root; fix or remove it.",
            )
    listed = {line.path for line in lines}
    unlisted = [path for path in present if path not in listed]
    if unlisted:
        raise DatasetError(
            f"{what} does not list {len(unlisted)} image file(s) of {root}: {named(unlisted)}.",
            hint="List every image with its label, or remove the images that are not part of the dataset.",
        )
    labels, class_names = _resolve_labels(lines, names, what)
    order = sorted(range(len(lines)), key=lambda i: lines[i].path)
    return [lines[i].path for i in order], [labels[i] for i in order], class_names


def _parse_labels_file(root: Path, labels_file: str, what: str) -> list[_Line]:
    path = root / labels_file
    if not path.is_file():
        raise DatasetError(
            f"{what} is not a file in {root} (it holds: {top_level(root)}).",
            hint="Give the labels file's path relative to the dataset's root (spec.source.root inside uri).",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{what}: cannot read {path}: {e}.", hint="It must be a UTF-8 text file.") from e
    lines: list[_Line] = []
    first: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.rsplit(None, 1)
        if len(parts) != 2:
            raise DatasetError(
                f"{what}, line {number}: '{stripped}' is not `relative/path label`.",
                hint="Write one image per line: its path relative to the root, a space, its class index or name.",
            )
        relative = _clean(parts[0].strip())
        if relative is None:
            raise DatasetError(
                f"{what}, line {number}: '{parts[0]}' is not a relative path inside the dataset's root.",
                hint="Write paths relative to the root, with '/' and without '..'.",
            )
        if relative in first:
            raise DatasetError(
                f"{what}, line {number}: '{relative}' is listed twice (first at line {first[relative]}).",
                hint="List each image once.",
            )
        first[relative] = number
        lines.append(_Line(number=number, path=relative, label=parts[1]))
    return lines


def _clean(path: str) -> str | None:
    """A labels-file path as the listing writes it (POSIX, no ./), or None when it is absolute or climbs out."""
    parts = [p for p in path.split("/") if p not in {"", "."}]
    if path.startswith("/") or "\\" in path or not parts or ".." in parts:
        return None
    return "/".join(parts)


def _resolve_labels(
    lines: list[_Line], names: tuple[str, ...] | None, what: str
) -> tuple[list[int], tuple[str, ...] | None]:
    """Each line's class index: a decimal index, or a class name (of spec.labels, else of the file, sorted)."""
    numeric = [line.label.isascii() and line.label.isdigit() for line in lines]
    if names is None:
        if all(numeric):
            return [int(line.label) for line in lines], None
        if any(numeric):
            number = lines[numeric.index(True)].number
            raise DatasetError(
                f"{what} mixes class indices (line {number}) and class names (line "
                f"{lines[numeric.index(False)].number}), and no spec.labels says which name has which index.",
                hint="Use only indices or only names, or give spec.labels (one class name per line).",
            )
        names = tuple(sorted({line.label for line in lines}))
        index = {name: i for i, name in enumerate(names)}
        return [index[line.label] for line in lines], names
    index = {name: i for i, name in enumerate(names)}
    labels: list[int] = []
    for line, is_number in zip(lines, numeric, strict=True):
        if is_number and int(line.label) < len(names):
            labels.append(int(line.label))
        elif not is_number and line.label in index:
            labels.append(index[line.label])
        else:
            raise DatasetError(
                f"{what}, line {line.number}: label '{line.label}' is neither a class index 0..{len(names) - 1} nor "
                f"a class name of spec.labels ({named(names)}).",
                hint="Fix the label, or add the class to spec.labels.",
            )
    return labels, names
