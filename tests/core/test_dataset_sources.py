"""Dataset sources read from files: folder layouts (class sub-folders, a labels file, unlabelled), npz and synthetic
through ``open_reader``; every refusal names the file or line and the field to fix (COCO: test_dataset_coco.py)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.facts import dataset_facts, undecodable_items, verify_decodable
from mlmodelscope.core.datasets.folder import FolderReader
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.datasets.reader import ClassLabels
from mlmodelscope.core.errors import DatasetError
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.manifests.dataset_spec import DatasetSource
from tests.support.dataset_files import dataset, image_bytes, write
from tests.support.paths import ASSETS


def open_folder(tmp_path: Path, size: int, names: Path | None = None, **source: Any) -> FolderReader:
    reader = open_reader(
        dataset({"kind": "folder", **source}, size, names), ArtifactStore(tmp_path / "cache"), tmp_path
    )
    assert isinstance(reader, FolderReader)
    return reader


def refusal(tmp_path: Path, size: int, names: Path | None = None, **source: Any) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        open_folder(tmp_path, size, names, **source)
    return info.value


def class_names_file(tmp_path: Path, names: list[str]) -> Path:
    return write(tmp_path / "classes.txt", ("\n".join(names) + "\n").encode())


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Class sub-folders holding every format, mode and several sizes, plus files that are not part of it."""
    root = tmp_path / "photos"
    write(root / "cat" / "a.png", image_bytes((31, 17), "RGBA", "PNG"))
    write(root / "cat" / "b.JPEG", image_bytes((20, 40), "L", "JPEG"))
    write(root / "cat" / "deep" / "c.webp", image_bytes((16, 16), "RGB", "WEBP"))
    write(root / "dog" / "d.bmp", image_bytes((16, 16), "RGB", "BMP"))
    write(root / "dog" / "e.tiff", image_bytes((9, 5), "RGB", "TIFF"))
    write(root / "dog" / "f.Tif", image_bytes((16, 16), "L", "TIFF"))
    write(root / "dog" / "notes.txt", b"not an image")
    write(root / "dog" / ".hidden.jpg", b"macOS metadata")
    write(root / ".thumbnails" / "x.jpg", image_bytes((4, 4), "RGB", "JPEG"))
    write(root / "README.md", b"# photos")
    return root


EXPECTED_FILES = ("cat/a.png", "cat/b.JPEG", "cat/deep/c.webp", "dog/d.bmp", "dog/e.tiff", "dog/f.Tif")


def test_class_subfolders_list_every_format_in_sorted_order(tmp_path: Path, mixed: Path) -> None:
    reader = open_folder(tmp_path, 6, uri="photos")
    assert reader.files == EXPECTED_FILES
    assert isinstance(reader.truth, ClassLabels)
    assert reader.truth.labels.tolist() == [0, 0, 0, 1, 1, 1] and reader.truth.labels.dtype == np.int64
    assert reader.truth.class_names == ("cat", "dog")
    assert reader.read(2) == (mixed / "cat" / "deep" / "c.webp").read_bytes()
    assert str(reader.name(4)) == "item 4 (dog/e.tiff)"
    facts = dataset_facts(reader)
    assert facts.size == 6 and facts.class_counts == {"cat": 3, "dog": 3}
    assert facts.image_sizes == {"16x16": 3, "31x17": 1, "20x40": 1, "9x5": 1}
    assert facts.modes == {"RGBA": 1, "L": 2, "RGB": 3}
    assert facts.formats == {"PNG": 1, "JPEG": 1, "WEBP": 1, "BMP": 1, "TIFF": 2}
    assert undecodable_items(reader) == []


def test_facts_of_a_sample_of_the_images(tmp_path: Path, mixed: Path) -> None:
    facts = dataset_facts(open_folder(tmp_path, 6, uri="photos"), max_images=2)
    assert sum(facts.formats.values()) == 2 and facts.formats == {"PNG": 1, "TIFF": 1}  # the first and the last
    assert facts.class_counts == {"cat": 3, "dog": 3}  # counted over every item


def test_spec_labels_names_the_classes_of_the_subfolders(tmp_path: Path, mixed: Path) -> None:
    names = class_names_file(tmp_path, ["bird", "dog", "cat"])
    reader = open_folder(tmp_path, 6, names, uri="photos")
    assert reader.truth.labels.tolist() == [2, 2, 2, 1, 1, 1]
    assert reader.truth.class_names == ("bird", "dog", "cat")
    assert dataset_facts(reader).class_counts == {"dog": 3, "cat": 3}

    error = refusal(tmp_path, 6, class_names_file(tmp_path, ["cat", "bird"]), uri="photos")
    assert "sub-folder(s) 'dog' of" in error.message and "not classes of spec.labels" in error.message
    assert "remove spec.labels" in error.hint


def test_a_labels_file_with_class_indices(tmp_path: Path, mixed: Path) -> None:
    write(
        mixed / "val.txt",
        b"# path label\ndog/f.Tif 0\ncat/a.png 1\n\n./cat/b.JPEG 2\ncat/deep/c.webp 0\ndog/d.bmp 1\ndog/e.tiff  2\n",
    )
    reader = open_folder(tmp_path, 6, uri="photos", labels="file", labels_file="val.txt")
    assert reader.files == EXPECTED_FILES
    assert reader.truth.labels.tolist() == [1, 2, 0, 1, 2, 0]
    assert reader.truth.class_names is None


def test_a_labels_file_with_class_names(tmp_path: Path, mixed: Path) -> None:
    write(mixed / "val.txt", "".join(f"{path} {path.split('/')[0]}\n" for path in EXPECTED_FILES).encode())
    reader = open_folder(tmp_path, 6, uri="photos", labels="file", labels_file="val.txt")
    assert reader.truth.labels.tolist() == [0, 0, 0, 1, 1, 1] and reader.truth.class_names == ("cat", "dog")
    names = class_names_file(tmp_path, ["dog", "fish", "cat"])
    reader = open_folder(tmp_path, 6, names, uri="photos", labels="file", labels_file="val.txt")
    assert reader.truth.labels.tolist() == [2, 2, 2, 0, 0, 0] and reader.truth.class_names == ("dog", "fish", "cat")


def test_unlabelled_images(tmp_path: Path, mixed: Path) -> None:
    reader = open_folder(tmp_path, 6, uri="photos", labels="none")
    assert reader.files == EXPECTED_FILES and reader.truth.labels.tolist() == [-1] * 6
    assert dataset_facts(reader).class_counts == {"unlabelled": 6}


def _labels_file_error(tmp_path: Path, text: str, names: list[str] | None = None) -> DatasetError:
    write(tmp_path / "photos" / "val.txt", text.encode())
    names_file = class_names_file(tmp_path, names) if names is not None else None
    return refusal(tmp_path, 6, names_file, uri="photos", labels="file", labels_file="val.txt")


ALL_BUT_LAST = "".join(f"{path} 0\n" for path in EXPECTED_FILES[:-1])


@pytest.mark.parametrize(
    ("text", "names", "message"),
    [
        (ALL_BUT_LAST + "dog/f.Tif 0\ndog/missing.jpg 1\n", None, "line 7: 'dog/missing.jpg' does not exist in"),
        (ALL_BUT_LAST + "dog/notes.txt 1\n", None, "line 6: 'dog/notes.txt' is not an image file"),
        (ALL_BUT_LAST + "cat/a.png 1\n", None, "line 6: 'cat/a.png' is listed twice (first at line 1)"),
        (ALL_BUT_LAST, None, "does not list 1 image file(s) of"),
        (ALL_BUT_LAST + "dog/f.Tif\n", None, "line 6: 'dog/f.Tif' is not `relative/path label`"),
        (ALL_BUT_LAST + "../photos/dog/f.Tif 0\n", None, "line 6: '../photos/dog/f.Tif' is not a relative path"),
        (ALL_BUT_LAST + "dog/f.Tif dog\n", None, "mixes class indices (line 1) and class names (line 6)"),
        (ALL_BUT_LAST + "dog/f.Tif horse\n", ["cat", "dog"], "line 6: label 'horse' is neither a class index 0..1"),
        (ALL_BUT_LAST + "dog/f.Tif 2\n", ["cat", "dog"], "line 6: label '2' is neither a class index 0..1"),
    ],
)
def test_labels_file_problems_name_the_line(
    tmp_path: Path, mixed: Path, text: str, names: list[str] | None, message: str
) -> None:
    error = _labels_file_error(tmp_path, text, names)
    assert message in error.message
    assert "spec.source.labels_file 'val.txt'" in error.message and error.hint


def test_a_missing_labels_file(tmp_path: Path, mixed: Path) -> None:
    error = refusal(tmp_path, 6, uri="photos", labels="file", labels_file="val.txt")
    assert "spec.source.labels_file 'val.txt' is not a file in" in error.message
    assert "'cat/', 'dog/'" in error.message and "relative to the dataset's root" in error.hint


def test_spec_labels_naming_a_class_twice(tmp_path: Path, mixed: Path) -> None:
    error = refusal(tmp_path, 6, class_names_file(tmp_path, ["cat", "dog", "cat"]), uri="photos")
    assert "names class 'cat' twice (lines 1 and 3)" in error.message


def test_folder_layout_problems(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    error = refusal(tmp_path, 1, uri="photos", labels="none")
    assert "holds no image files (it holds: nothing)" in error.message and ".jpeg" in error.hint
    assert "no class sub-folders" in refusal(tmp_path, 1, uri="photos").message

    write(root / "cat" / "a.jpg", image_bytes((8, 8), "RGB", "JPEG"))
    (root / "dog").mkdir()
    write(root / "dog" / "readme.txt", b"later")
    error = refusal(tmp_path, 1, uri="photos")
    assert "class sub-folder 'dog' of" in error.message and "holds no image files" in error.message

    write(root / "dog" / "b.png", image_bytes((8, 8), "RGB", "PNG"))
    write(root / "loose.jpg", image_bytes((8, 8), "RGB", "JPEG"))
    error = refusal(tmp_path, 2, uri="photos")
    assert "1 image file(s) lie at the top level" in error.message and "'loose.jpg'" in error.message
    assert "labels: none" in error.hint


def test_uri_and_root_that_are_not_folders(tmp_path: Path, mixed: Path) -> None:
    error = refusal(tmp_path, 6, uri="photos/README.md")
    assert "spec.source.uri 'photos/README.md'" in error.message and "is a file" in error.message
    assert "does not exist" in refusal(tmp_path, 6, uri="nowhere").message
    error = refusal(tmp_path, 6, uri="photos", root="pets")
    assert "spec.source.root 'pets' is not a folder inside 'photos'" in error.message
    assert "'cat/', 'dog/'" in error.hint


def test_spec_size_is_checked_against_the_files(tmp_path: Path, mixed: Path) -> None:
    error = refusal(tmp_path, 7, uri="photos")
    assert "spec.size is 7" in error.message and "holds 6 image files" in error.message
    assert "Set spec.size to 6" in error.hint


def test_file_uri_and_root(tmp_path: Path, mixed: Path) -> None:
    reader = open_folder(tmp_path, 3, uri=tmp_path.as_uri(), root="photos/dog", labels="none")
    assert reader.files == ("d.bmp", "e.tiff", "f.Tif")


def test_the_fingerprint_follows_the_files(tmp_path: Path, mixed: Path) -> None:
    first = open_folder(tmp_path, 6, uri="photos").fingerprint
    assert open_folder(tmp_path, 6, uri="photos").fingerprint == first
    target = mixed / "dog" / "d.bmp"
    stat = target.stat()
    write(target, image_bytes((16, 16), "RGB", "BMP", seed=1))  # same size, new content
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = open_folder(tmp_path, 6, uri="photos").fingerprint
    assert second != first
    (mixed / "dog" / "e.tiff").rename(mixed / "dog" / "e2.tiff")
    assert open_folder(tmp_path, 6, uri="photos").fingerprint not in {first, second}
    assert open_folder(tmp_path, 6, uri="photos", labels="none").fingerprint != first


def test_undecodable_files_are_named_when_read_or_verified(tmp_path: Path, mixed: Path) -> None:
    jpeg = (mixed / "cat" / "b.JPEG").read_bytes()
    write(mixed / "cat" / "b.JPEG", jpeg[: len(jpeg) * 2 // 3])  # truncated: the header still reads
    write(mixed / "dog" / "d.bmp", b"<html>not found</html>")
    reader = open_folder(tmp_path, 6, uri="photos")

    with pytest.raises(DatasetError) as info:
        reader.read(3)
    assert "dataset 'photos': item 3 (dog/d.bmp)" in info.value.message
    assert "is not an image file" in info.value.message and "<html>" in info.value.message
    assert reader.read(1) == jpeg[: len(jpeg) * 2 // 3]  # raw bytes: decoding is the sample library's
    with pytest.raises(DatasetError, match=r"item 1 \(cat/b.JPEG\) cannot be decoded"):
        verify_decodable(reader, 1)
    failures = undecodable_items(reader)
    assert [(item.index, item.path) for item, _ in failures] == [(1, "cat/b.JPEG"), (3, "dog/d.bmp")]
    assert dataset_facts(reader).formats == {"PNG": 1, "JPEG": 1, "WEBP": 1, "unreadable": 1, "TIFF": 2}

    (mixed / "dog" / "e.tiff").unlink()
    with pytest.raises(DatasetError, match=r"item 4 \(dog/e.tiff\): cannot read"):
        reader.read(4)


# --- npz and synthetic -----------------------------------------------------------------------------------------


def test_npz_and_synthetic_readers_give_the_arrays_item_by_item(tmp_path: Path) -> None:
    registry = load_registry([ASSETS])
    store = ArtifactStore(tmp_path / "cache")
    digits = open_reader(registry.dataset("digits"), store, ASSETS / "datasets")
    with np.load(ASSETS / "artifacts" / "digits" / "digits_test.npz") as data:
        np.testing.assert_array_equal(np.stack([digits.read(i) for i in range(digits.size)]), data["images"])
        assert isinstance(digits.truth, ClassLabels)
        np.testing.assert_array_equal(digits.truth.labels, data["labels"])
    assert digits.truth.class_names == tuple(str(i) for i in range(10))
    assert dataset_facts(digits).formats == {"float32 array": 450}

    tokens = open_reader(registry.dataset("synthetic-tokens"), store, ASSETS / "datasets")
    samples = np.stack([tokens.read(i) for i in range(tokens.size)])
    assert hashlib.sha256(samples.tobytes()).hexdigest() == (
        "736d878c02477d4e453962155a411eba99eb2ba46926a9478b3b0b22259a601e"  # as tests/agent/test_zoo.py pins it
    )
    assert tokens.fingerprint == open_reader(registry.dataset("synthetic-tokens"), store, None).fingerprint
    assert tokens.fingerprint != digits.fingerprint


def test_npz_size_mismatch_is_a_dataset_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "small.npz", images=np.zeros((3, 2), np.float32), labels=np.zeros(3, np.int64))
    spec = dataset({"kind": "npz", "uri": "small.npz", "sha256": sha256_of_file(tmp_path / "small.npz")}, 4)
    with pytest.raises(DatasetError, match=r"3 samples and 3 labels, but the manifest says spec.size is 4"):
        open_reader(spec, ArtifactStore(tmp_path / "cache"), tmp_path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "folder"}, "uri: required for kind 'folder'"),
        ({"kind": "folder", "uri": "https://host/photos.tar.gz"}, "sha256: required for the archive"),
        ({"kind": "coco", "uri": "s3://bucket/shapes.zip"}, "sha256: required for the archive"),
        ({"kind": "folder", "uri": "photos", "labels": "file"}, "labels_file: give it exactly when `labels: file`"),
        ({"kind": "folder", "uri": "photos", "labels_file": "val.txt"}, "labels_file: give it exactly when"),
        ({"kind": "folder", "uri": "photos", "images_dir": "x"}, "images_dir: not a field of kind 'folder'"),
        ({"kind": "coco", "uri": "shapes", "labels": "none"}, "labels: not a field of kind 'coco'"),
        ({"kind": "folder", "uri": "photos", "root": "../up"}, "has an empty, '.' or '..' component"),
        ({"kind": "coco", "uri": "shapes", "annotations_file": "/abs.json"}, "is absolute"),
    ],
)
def test_folder_and_coco_sources_accept_only_their_own_fields(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        DatasetSource.model_validate(fields)
