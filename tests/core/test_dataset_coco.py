"""The coco dataset source: images by id with their COCO truth, and every malformed JSON refused naming the key and
the image or annotation it concerns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.coco import CocoReader
from mlmodelscope.core.datasets.facts import dataset_facts
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.datasets.reader import CocoTruth
from mlmodelscope.core.errors import DatasetError
from tests.support.dataset_files import dataset, image_bytes, write


def _rle(height: int, width: int) -> dict[str, Any]:
    mask = np.zeros((height, width), dtype=np.uint8, order="F")
    mask[2:6, 3:9] = 1
    encoded = mask_utils.encode(mask)
    return {"size": [height, width], "counts": encoded["counts"].decode()}


def coco_document() -> dict[str, Any]:
    return {
        "info": {"description": "test"},
        "images": [
            {"id": 30, "file_name": "c.png", "height": 12, "width": 20},
            {"id": 7, "file_name": "sub/a.jpg", "height": 10, "width": 16},
            {"id": 12, "file_name": "b.webp", "height": 8, "width": 8},
        ],
        "categories": [{"id": 5, "name": "square"}, {"id": 2, "name": "circle"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 2,
                "bbox": [1, 2, 5, 4],
                "area": 20,
                "iscrowd": 0,
                "segmentation": [[1, 2, 6, 2, 6, 6, 1, 6]],
            },
            {
                "id": 2,
                "image_id": 30,
                "category_id": 5,
                "bbox": [3, 2, 6, 4],
                "area": 24,
                "iscrowd": 1,
                "segmentation": _rle(12, 20),
            },
            {
                "id": 3,
                "image_id": 30,
                "category_id": 2,
                "bbox": [0, 0, 2, 2],
                "area": 4,
                "iscrowd": 1,
                "segmentation": {"size": [12, 20], "counts": [0, 2, 10, 2, 226]},
            },
            {"id": 4, "image_id": 7, "category_id": 5, "bbox": [8.5, 1.5, 3, 3], "area": 9, "iscrowd": 0},
        ],
    }


def write_coco(tmp_path: Path, document: dict[str, Any]) -> Path:
    root = tmp_path / "shapes"
    write(root / "images" / "sub" / "a.jpg", image_bytes((16, 10), "RGB", "JPEG"))
    write(root / "images" / "b.webp", image_bytes((8, 8), "RGB", "WEBP"))
    write(root / "images" / "c.png", image_bytes((20, 12), "RGBA", "PNG"))
    write(root / "annotations.json", json.dumps(document).encode())
    return root


def open_coco(tmp_path: Path, size: int = 3, **source: Any) -> CocoReader:
    spec = dataset({"kind": "coco", "uri": "shapes", **source}, size, task="object_detection")
    reader = open_reader(spec, ArtifactStore(tmp_path / "cache"), tmp_path)
    assert isinstance(reader, CocoReader)
    return reader


def test_coco_items_are_the_images_by_id_with_their_truth(tmp_path: Path) -> None:
    root = write_coco(tmp_path, coco_document())
    reader = open_coco(tmp_path)
    assert reader.files == ("sub/a.jpg", "b.webp", "c.png")
    assert reader.read(0) == (root / "images" / "sub" / "a.jpg").read_bytes()
    truth = reader.truth
    assert isinstance(truth, CocoTruth)
    assert truth.annotations_path == root / "annotations.json"
    assert truth.image_ids.tolist() == [7, 12, 30] and truth.image_ids.dtype == np.int64
    assert truth.category_ids == (2, 5) and truth.category_names == ("circle", "square")
    assert truth.original_hw.tolist() == [[10, 16], [8, 8], [12, 20]]
    facts = dataset_facts(reader)
    assert facts.annotations == 4 and facts.class_counts == {"circle": 2, "square": 2}
    assert facts.image_sizes == {"16x10": 1, "8x8": 1, "20x12": 1}
    coco = COCO(str(truth.annotations_path))  # the scorers' library reads the same file
    assert sorted(coco.getImgIds()) == truth.image_ids.tolist()
    # annToMask's decode warns under numpy 2 (pycocotools 2.0.11); the area comes from the same RLE without it.
    assert [int(mask_utils.area(coco.annToRLE(ann))) for ann in coco.loadAnns([2, 3])] == [24, 4]


def test_coco_fingerprint_follows_the_json_and_the_images(tmp_path: Path) -> None:
    root = write_coco(tmp_path, coco_document())
    first = open_coco(tmp_path).fingerprint
    document = coco_document()
    document["annotations"].pop()
    write(root / "annotations.json", json.dumps(document).encode())
    second = open_coco(tmp_path).fingerprint
    write(root / "images" / "b.webp", image_bytes((8, 8), "RGB", "WEBP", seed=3) + b"\0")
    assert len({first, second, open_coco(tmp_path).fingerprint}) == 3


def _break(change: Any) -> dict[str, Any]:
    document = coco_document()
    change(document)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_break(lambda d: d.pop("images")), "key 'images' is missing"),
        (_break(lambda d: d.update(annotations={})), "key 'annotations' is a dict, not a list"),
        (_break(lambda d: d["images"][1].pop("id")), "images[1]: 'id' is missing"),
        (_break(lambda d: d["images"][2].update(id=7)), "image id 7 (images[2]): the id is used by another image"),
        (_break(lambda d: d["images"][0].update(height=0)), "image id 30 (images[0]): 'height' is 0, not a positive"),
        (_break(lambda d: d["images"][0].update(file_name="../c.png")), "file_name '../c.png' is not a plain"),
        (
            _break(lambda d: d["images"][2].update(file_name="c.png")),
            "file_name 'c.png' is also the file of image id 30",
        ),
        (_break(lambda d: d["categories"][1].update(name="")), "category id 2 (categories[1]): 'name' is '', not a"),
        (_break(lambda d: d["annotations"][1].update(image_id=99)), "annotations[1]: image_id 99 is not the id of any"),
        (_break(lambda d: d["annotations"][0].update(category_id=3)), "(image id 7): category_id 3 is not a category"),
        (_break(lambda d: d["annotations"][3].update(bbox=[1, 2, -3, 4])), "annotations[3] (image id 7): 'bbox' is"),
        (
            _break(lambda d: d["annotations"][1]["segmentation"].update(size=[20, 12])),
            "RLE segmentation's size [20, 12]",
        ),
        (
            _break(lambda d: d["annotations"][2]["segmentation"].update(counts=[0, 2])),
            "add up to 2, not height x width",
        ),
        (_break(lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]])), "not a list of at least 3 x, y"),
        (_break(lambda d: d["annotations"][0].update(segmentation="mask")), "'segmentation' is a str, neither"),
        (_break(lambda d: d["annotations"][3].pop("area")), "annotations[3] (image id 7): 'area' is missing; COCO"),
        (_break(lambda d: d["annotations"][1].update(iscrowd=2)), "(image id 30): 'iscrowd' is 2, not 0 or 1"),
    ],
)
def test_coco_json_problems_name_the_key_and_the_image(tmp_path: Path, document: dict[str, Any], message: str) -> None:
    write_coco(tmp_path, document)
    with pytest.raises(DatasetError) as info:
        open_coco(tmp_path)
    assert "spec.source.annotations_file 'annotations.json'" in info.value.message
    assert message in info.value.message


def test_coco_files_that_are_missing_or_not_json(tmp_path: Path) -> None:
    root = write_coco(tmp_path, coco_document())
    (root / "images" / "b.webp").unlink()
    with pytest.raises(DatasetError, match=r"1 image file\(s\) are not in .*'b.webp \(image id 12\)'"):
        open_coco(tmp_path)
    with pytest.raises(DatasetError, match=r"spec.source.images_dir 'pictures' is not a folder"):
        open_coco(tmp_path, images_dir="pictures")
    with pytest.raises(DatasetError, match=r"spec.source.annotations_file 'instances.json' is not a file"):
        open_coco(tmp_path, annotations_file="instances.json")
    write(root / "annotations.json", b'{"images": [')
    with pytest.raises(DatasetError, match="is not valid JSON"):
        open_coco(tmp_path)


def test_coco_spec_size_is_checked(tmp_path: Path) -> None:
    write_coco(tmp_path, coco_document())
    with pytest.raises(DatasetError, match=r"spec.size is 4, but its coco source 'shapes' holds 3 images"):
        open_coco(tmp_path, size=4)


def test_only_detection_needs_area_and_iscrowd(tmp_path: Path) -> None:
    document = coco_document()
    for annotation in document["annotations"]:
        del annotation["area"], annotation["iscrowd"]
    write_coco(tmp_path, document)
    spec = dataset({"kind": "coco", "uri": "shapes"}, 3, task="semantic_segmentation")
    assert open_reader(spec, ArtifactStore(tmp_path / "cache"), tmp_path).size == 3
    with pytest.raises(DatasetError, match=r"annotations\[0\] \(image id 7\): 'area' is missing"):
        open_coco(tmp_path)
