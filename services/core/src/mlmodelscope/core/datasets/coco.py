"""The ``coco`` dataset source: a folder of images plus a COCO instances JSON (images, categories, annotations).

The JSON is checked once, when the dataset is opened, so that a malformed file fails with the key and the image
(or annotation) it concerns rather than deep inside pycocotools during scoring: every image needs an integer
``id``, a ``file_name`` and its ``height``/``width``; every category an ``id`` and a ``name``; every annotation an
``image_id`` and a ``category_id`` that exist, a ``bbox`` [x, y, w, h] and, when it has one, a ``segmentation``
that is a polygon list or an RLE of the image's size. Each image file must exist under ``images_dir``.

Items are the images sorted by id; class index k is the k-th category by ascending id. The JSON itself is what
the scorers read (``CocoTruth.annotations_path``); the reader decodes no image.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.archives import dataset_root, fingerprint, listing_sha256, named, read_item, top_level
from mlmodelscope.core.datasets.reader import CocoTruth, ItemName
from mlmodelscope.core.errors import DatasetError
from mlmodelscope.core.manifests.resources import Dataset

_HINT = "A COCO instances file is a JSON object with lists 'images', 'categories' and 'annotations' (cocodataset.org)."


@dataclass(frozen=True)
class CocoReader:
    """An opened coco dataset: ``files[i]`` (relative to ``images_root``) is item i, the image of ``image_ids[i]``."""

    images_root: Path
    files: tuple[str, ...]
    truth: CocoTruth
    fingerprint: str
    dataset_name: str
    annotation_count: int
    category_annotations: tuple[int, ...]  # annotations per category, in class order

    @property
    def size(self) -> int:
        return len(self.files)

    def read(self, index: int) -> bytes:
        return read_item(self.path(index), what=f"dataset '{self.dataset_name}': {self.name(index)}")

    def name(self, index: int) -> ItemName:
        return ItemName(index=index, path=self.files[index])

    def path(self, index: int) -> Path:
        return self.images_root / self.files[index]


def open_coco(dataset: Dataset, store: ArtifactStore, base_dir: Path | None) -> CocoReader:
    """Check a coco dataset's JSON and image files (fetching and unpacking its archive first, if it is one)."""
    source = dataset.spec.source
    root = dataset_root(dataset, store, base_dir)
    where = f"dataset '{dataset.name}'"
    annotations_path = root.path / source.annotations_file
    what = f"{where}: spec.source.annotations_file '{source.annotations_file}'"
    document = _load_json(annotations_path, root.path, what)
    images = _images(document, what)
    categories = _categories(document, what)
    per_category = _check_annotations(
        document, images, categories, what, detection=dataset.spec.task == "object_detection"
    )
    images_root = root.path / source.images_dir
    if not images_root.is_dir():
        raise DatasetError(
            f"{where}: spec.source.images_dir '{source.images_dir}' is not a folder in {root.path} (it holds: "
            f"{top_level(root.path)}).",
            hint="Set spec.source.images_dir to the folder of the images, relative to the dataset's root.",
        )
    ids = sorted(images)
    files = tuple(images[i].file_name for i in ids)
    pairs = zip(ids, files, strict=True)
    missing = [f"{name} (image id {i})" for i, name in pairs if not (images_root / name).is_file()]
    if missing:
        raise DatasetError(
            f"{what}: {len(missing)} image file(s) are not in {images_root}: {named(missing)}.",
            hint="Each image's file_name is relative to spec.source.images_dir; add the files or fix the JSON.",
        )
    if root.archive_sha256 is not None:
        parts = ["coco", f"archive {root.archive_sha256}", f"root {source.root or ''}", f"images {source.images_dir}"]
    else:
        listing = listing_sha256(images_root, files, what=where)
        parts = ["coco", f"annotations {sha256_of_file(annotations_path)}", f"listing {listing}"]
    category_ids = tuple(sorted(categories))
    truth = CocoTruth(
        annotations_path=annotations_path,
        image_ids=np.asarray(ids, dtype=np.int64),
        category_ids=category_ids,
        category_names=tuple(categories[c] for c in category_ids),
        original_hw=np.asarray([(images[i].height, images[i].width) for i in ids], dtype=np.int64).reshape(-1, 2),
    )
    return CocoReader(
        images_root=images_root,
        files=files,
        truth=truth,
        fingerprint=fingerprint([*parts, f"annotations_file {source.annotations_file}"]),
        dataset_name=dataset.name,
        annotation_count=sum(per_category.values()),
        category_annotations=tuple(per_category[c] for c in category_ids),
    )


@dataclass(frozen=True)
class _Image:
    file_name: str
    height: int
    width: int


def _load_json(path: Path, root: Path, what: str) -> Mapping[str, Any]:
    if not path.is_file():
        raise DatasetError(
            f"{what} is not a file in {root} (it holds: {top_level(root)}).",
            hint="Give the COCO JSON's path relative to the dataset's root (default: annotations.json).",
        )
    try:
        with path.open("rb") as file:
            document = json.load(file)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{what} ({path}) is not valid JSON: {e}.", hint=_HINT) from e
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{what}: cannot read {path}: {e}.", hint=_HINT) from e
    if not isinstance(document, dict):
        raise DatasetError(f"{what} holds a JSON {type(document).__name__}, not an object.", hint=_HINT)
    for key in ("images", "categories", "annotations"):
        if not isinstance(document.get(key), list):
            found = "is missing" if key not in document else f"is a {type(document[key]).__name__}, not a list"
            raise DatasetError(f"{what}: key '{key}' {found}.", hint=_HINT)
    return document


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field(entry: object, key: str, kind: str, where: str, what: str) -> Any:
    """``entry[key]``, checked to be an int (``kind="int"``, positive ``"size"``) or a non-empty ``"str"``."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{what}: {where} is a {type(entry).__name__}, not an object.", hint=_HINT)
    value = entry.get(key)
    positive = isinstance(value, int) and _is_int(value) and value > 0
    ok = {"int": _is_int(value), "size": positive, "str": isinstance(value, str) and value != ""}
    if not ok[kind]:
        expected = {"int": "an integer", "size": "a positive integer", "str": "a non-empty string"}[kind]
        found = "is missing" if key not in entry else f"is {value!r}, not {expected}"
        raise DatasetError(f"{what}: {where}: '{key}' {found}.", hint=_HINT)
    return value


def _images(document: Mapping[str, Any], what: str) -> dict[int, _Image]:
    images: dict[int, _Image] = {}
    names: dict[str, int] = {}
    for position, entry in enumerate(document["images"]):
        image_id = _field(entry, "id", "int", f"images[{position}]", what)
        where = f"image id {image_id} (images[{position}])"
        if image_id in images:
            raise DatasetError(f"{what}: {where}: the id is used by another image too.", hint="Give each a unique id.")
        name = _field(entry, "file_name", "str", where, what)
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(part in {"", ".", ".."} for part in parts):
            raise DatasetError(
                f"{what}: {where}: file_name '{name}' is not a plain relative path.",
                hint="Write file_name relative to spec.source.images_dir, with '/' and without '..'.",
            )
        if name in names:
            raise DatasetError(
                f"{what}: {where}: file_name '{name}' is also the file of image id {names[name]}.",
                hint="Each image needs its own file.",
            )
        names[name] = image_id
        height = _field(entry, "height", "size", where, what)
        images[image_id] = _Image(file_name=name, height=height, width=_field(entry, "width", "size", where, what))
    if not images:
        raise DatasetError(f"{what}: 'images' is empty.", hint="List the dataset's images in it.")
    return images


def _categories(document: Mapping[str, Any], what: str) -> dict[int, str]:
    categories: dict[int, str] = {}
    for position, entry in enumerate(document["categories"]):
        category_id = _field(entry, "id", "int", f"categories[{position}]", what)
        where = f"category id {category_id} (categories[{position}])"
        if category_id in categories:
            raise DatasetError(f"{what}: {where}: the id is used by another category too.", hint=_HINT)
        categories[category_id] = _field(entry, "name", "str", where, what)
    if not categories:
        raise DatasetError(f"{what}: 'categories' is empty.", hint="List the classes in it, each with id and name.")
    return categories


def _check_annotations(
    document: Mapping[str, Any],
    images: Mapping[int, _Image],
    categories: Mapping[int, str],
    what: str,
    *,
    detection: bool,
) -> dict[int, int]:
    """Check every annotation; the number of annotations per category id. COCO mAP (pycocotools' COCOeval) reads
    'area' and 'iscrowd' of every annotation, so a detection dataset must have them."""
    counts = dict.fromkeys(categories, 0)
    for position, entry in enumerate(document["annotations"]):
        where = f"annotations[{position}]"
        image_id = _field(entry, "image_id", "int", where, what)
        if image_id not in images:
            raise DatasetError(f"{what}: {where}: image_id {image_id} is not the id of any image.", hint=_HINT)
        where = f"{where} (image id {image_id})"
        category_id = _field(entry, "category_id", "int", where, what)
        if category_id not in categories:
            raise DatasetError(
                f"{what}: {where}: category_id {category_id} is not a category "
                f"(ids: {named(map(str, sorted(categories)))}).",
                hint=_HINT,
            )
        bbox = entry.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox)) and min(bbox[2:]) >= 0):
            raise DatasetError(
                f"{what}: {where}: 'bbox' is {bbox!r}, not [x, y, width, height] with sizes >= 0.", hint=_HINT
            )
        _check_area_and_crowd(entry, f"{what}: {where}", detection=detection)
        if "segmentation" in entry:
            _check_segmentation(entry["segmentation"], images[image_id], f"{what}: {where}")
        counts[category_id] += 1
    return counts


def _check_area_and_crowd(entry: Mapping[str, Any], where: str, *, detection: bool) -> None:
    for key, valid, expected in (
        ("area", _is_number(entry.get("area")) and entry.get("area", -1) >= 0, "a number >= 0"),
        ("iscrowd", entry.get("iscrowd") in (0, 1) and not isinstance(entry.get("iscrowd"), float), "0 or 1"),
    ):
        if key in entry and not valid:
            raise DatasetError(f"{where}: '{key}' is {entry[key]!r}, not {expected}.", hint=_HINT)
        if key not in entry and detection:
            raise DatasetError(
                f"{where}: '{key}' is missing; COCO mAP (pycocotools) needs 'area' and 'iscrowd' on every annotation "
                "of an object_detection dataset.",
                hint="Add area (the object's area in pixels: its mask's, or the box's width x height) and iscrowd "
                "(0, or 1 for a crowd region that detections may match without penalty).",
            )


def _check_segmentation(segmentation: object, image: _Image, where: str) -> None:
    """Polygons ``[[x1, y1, x2, y2, x3, y3, ...], ...]``, or an RLE ``{size: [h, w], counts}`` of the image's size."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            ok = isinstance(polygon, Sequence) and not isinstance(polygon, str)
            if not (ok and len(polygon) >= 6 and len(polygon) % 2 == 0 and all(map(_is_number, polygon))):
                raise DatasetError(
                    f"{where}: a segmentation polygon is not a list of at least 3 x, y pairs.",
                    hint="Polygons are [[x1, y1, x2, y2, x3, y3, ...], ...] in image pixels.",
                )
        return
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [image.height, image.width]:
            raise DatasetError(
                f"{where}: the RLE segmentation's size {size!r} is not the image's [height, width] "
                f"[{image.height}, {image.width}].",
                hint="An RLE's size must be the image's [height, width].",
            )
        if not (isinstance(counts, str) or (isinstance(counts, list) and all(map(_is_int, counts)))):
            raise DatasetError(
                f"{where}: the RLE segmentation's 'counts' is neither a compressed string nor a list of run lengths.",
                hint="Write it as pycocotools.mask.encode produces it (counts decoded to str), or uncompressed.",
            )
        if isinstance(counts, list) and sum(counts) != image.height * image.width:
            raise DatasetError(
                f"{where}: the uncompressed RLE's run lengths add up to {sum(counts)}, not height x width "
                f"{image.height * image.width}.",
                hint="The runs of an RLE cover every pixel of the image, column by column.",
            )
        return
    raise DatasetError(
        f"{where}: 'segmentation' is a {type(segmentation).__name__}, neither polygons (a list) nor an RLE "
        "(an object).",
        hint=_HINT,
    )
