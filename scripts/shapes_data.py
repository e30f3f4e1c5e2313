"""The synthetic "shapes" scenes: real photographs as backgrounds, circles, squares and triangles on top.

Why this module exists
----------------------
MLModelScope's detection and segmentation paths need a labelled data set that fits in the repository, is made
offline and has *exact* ground truth: boxes and instance masks that are right to the pixel. Drawing the objects
ourselves gives that; scikit-image's bundled photographs (astronaut, chelsea, coffee, rocket, ...; in its wheel,
nothing downloaded) make the backgrounds real. ``build_shapes.py`` trains on scenes made here and writes the test
split as a COCO data set.

Every scene is a pure function of ``(split, index)``: ``np.random.default_rng([SEED, split, index])``.

* Image: 160 x 120 pixels (width x height), a random crop of a random photograph resized with Pillow's bilinear
  filter, then 1 to 4 shapes. Shapes never overlap (their boxes keep 2 pixels apart), so every instance mask is
  the whole object and its box is exact.
* Classes (COCO category ids 1, 2, 3; class index 0, 1, 2): circle (a 48-gon), square (rotated by 0..90 degrees),
  triangle (equilateral, rotated by 0..120 degrees). Sizes (the side, or the diameter): 40% small (10..30 px),
  40% medium (30..80 px), 20% large (90..116 px).
* Each shape is rasterised with pycocotools from the polygon written to the annotations (rounded to 0.01 px), and
  the pixels of that mask are painted one colour: the annotation's mask, area (``mask.area``) and box
  (``mask.toBbox``) are the image's pixels exactly. One annotation in three stores its mask as compressed RLE
  (``mask.encode`` of the same pixels), the others as a polygon, so readers must handle both.
* The images are stored as JPEG (quality 85, Pillow); the labels describe the pixels before compression.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

SEED = 0
IMAGE_W = 160
IMAGE_H = 120
CLASSES = ("circle", "square", "triangle")
JPEG_QUALITY = 85
CIRCLE_VERTICES = 48
GAP_PX = 2
SIZE_BUCKETS = ((0.40, 10.0, 30.0), (0.40, 30.0, 80.0), (0.20, 90.0, 116.0))  # (weight, min, max) side in px
MIN_COLOUR_DISTANCE = 70.0
SPLITS = {"train": 1, "test": 2}
RLE_EVERY = 3  # annotation ids divisible by this store RLE


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """(H, W) bool pixels of an RLE (pycocotools 2.0.11's decode warns under numpy 2; the warning is noise)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return np.asarray(mask_utils.decode(rle), dtype=bool)


def _backgrounds() -> list[tuple[str, np.ndarray]]:
    """The bundled scikit-image photographs (RGB uint8), in a fixed order."""
    import skimage.data as data

    names = (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "camera",
        "coins",
        "brick",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "moon",
    )
    photos = []
    for name in names:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        photos.append((name, np.ascontiguousarray(image[..., :3], dtype=np.uint8)))
    return photos


_PHOTOS: list[tuple[str, np.ndarray]] | None = None


def photos() -> list[tuple[str, np.ndarray]]:
    global _PHOTOS
    if _PHOTOS is None:
        _PHOTOS = _backgrounds()
    return _PHOTOS


@dataclass(frozen=True)
class Shape:
    """One drawn object: its class index, polygon (x0, y0, x1, y1, ...) and mask facts."""

    category: int
    polygon: list[float]
    rle: dict[str, Any]
    bbox: list[float]  # COCO [x, y, w, h], pixels
    area: float


@dataclass
class Scene:
    """One image with its objects (the pixels before JPEG compression)."""

    pixels: np.ndarray  # (H, W, 3) uint8
    background: str
    shapes: list[Shape] = field(default_factory=list)

    def jpeg(self) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()

    def semantic_mask(self) -> np.ndarray:
        """(H, W) uint8: 0 background, class index + 1 on each object's pixels."""
        out = np.zeros((IMAGE_H, IMAGE_W), dtype=np.uint8)
        for shape in self.shapes:
            out[decode_mask(shape.rle)] = shape.category + 1
        return out


def _background(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    name, photo = photos()[int(rng.integers(len(photos())))]
    height, width = photo.shape[:2]
    fit = min(width / IMAGE_W, height / IMAGE_H)  # the largest 4:3 window
    scale = float(rng.uniform(0.3, 1.0))
    crop_w, crop_h = max(int(IMAGE_W * fit * scale), IMAGE_W // 2), max(int(IMAGE_H * fit * scale), IMAGE_H // 2)
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    window = Image.fromarray(photo[y0 : y0 + crop_h, x0 : x0 + crop_w])
    return name, np.asarray(window.resize((IMAGE_W, IMAGE_H), Image.Resampling.BILINEAR), dtype=np.uint8).copy()


def _side(rng: np.random.Generator) -> float:
    weights = np.array([w for w, _, _ in SIZE_BUCKETS])
    bucket = SIZE_BUCKETS[int(rng.choice(len(SIZE_BUCKETS), p=weights / weights.sum()))]
    return float(rng.uniform(bucket[1], bucket[2]))


def _unit_polygon(category: int, rng: np.random.Generator) -> np.ndarray:
    """Vertices (K, 2) of the shape with side (or diameter) 1, centred on 0, rotated at random."""
    if category == 0:
        angles = np.arange(CIRCLE_VERTICES) * (2 * math.pi / CIRCLE_VERTICES)
        return 0.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if category == 1:
        theta = float(rng.uniform(0, math.pi / 2))
        angles = theta + np.array([0.25, 0.75, 1.25, 1.75]) * math.pi
        return (math.sqrt(2) / 2) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    theta = float(rng.uniform(0, 2 * math.pi / 3))
    angles = theta + np.arange(3) * (2 * math.pi / 3)
    return (1 / math.sqrt(3)) * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _place(rng: np.random.Generator, unit: np.ndarray, side: float, taken: list[list[float]]) -> np.ndarray | None:
    """The polygon at a random position inside the image whose box clears the ``taken`` boxes, or None."""
    vertices = unit * side
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    for _ in range(30):
        cx = float(rng.uniform(-low[0] + 1, IMAGE_W - high[0] - 1)) if IMAGE_W - high[0] - 1 > -low[0] + 1 else None
        cy = float(rng.uniform(-low[1] + 1, IMAGE_H - high[1] - 1)) if IMAGE_H - high[1] - 1 > -low[1] + 1 else None
        if cx is None or cy is None:
            return None
        x0, y0, x1, y1 = cx + low[0], cy + low[1], cx + high[0], cy + high[1]
        clear = all(
            x1 + GAP_PX < bx or bx + bw + GAP_PX < x0 or y1 + GAP_PX < by or by + bh + GAP_PX < y0
            for bx, by, bw, bh in taken
        )
        if clear:
            return np.round(vertices + np.array([cx, cy]), 2)
    return None


def _colour(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background it covers (or the last one tried)."""
    mean = region.reshape(-1, 3).mean(axis=0) if region.size else np.zeros(3)
    colour = rng.integers(0, 256, size=3)
    for _ in range(20):
        if float(np.abs(colour - mean).sum()) >= MIN_COLOUR_DISTANCE * 1.5:
            break
        colour = rng.integers(0, 256, size=3)
    return colour.astype(np.uint8)


def make_scene(split: str, index: int) -> Scene:
    """Scene ``index`` of ``split`` ("train" or "test"): deterministic."""
    rng = np.random.default_rng([SEED, SPLITS[split], index])
    name, pixels = _background(rng)
    scene = Scene(pixels=pixels, background=name)
    for _ in range(int(rng.integers(1, 5))):
        category = int(rng.integers(len(CLASSES)))
        unit = _unit_polygon(category, rng)
        vertices = _place(rng, unit, _side(rng), [s.bbox for s in scene.shapes])
        if vertices is None:
            continue
        polygon = [float(v) for v in vertices.reshape(-1)]
        rle = mask_utils.merge(mask_utils.frPyObjects([polygon], IMAGE_H, IMAGE_W))
        mask = decode_mask(rle)
        if not mask.any():
            continue
        pixels[mask] = _colour(rng, pixels[mask])
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        scene.shapes.append(Shape(category, polygon, rle, bbox, float(mask_utils.area(rle))))
    return scene


def coco_document(scenes: list[Scene], file_names: list[str]) -> dict[str, Any]:
    """The COCO instances document of ``scenes`` (image ids 1.., annotation ids 1.., category ids 1..3)."""
    images, annotations = [], []
    for image_id, (scene, file_name) in enumerate(zip(scenes, file_names, strict=True), start=1):
        images.append({"id": image_id, "file_name": file_name, "width": IMAGE_W, "height": IMAGE_H})
        for shape in scene.shapes:
            ann_id = len(annotations) + 1
            if ann_id % RLE_EVERY == 0:
                counts = shape.rle["counts"]
                segmentation: Any = {
                    "size": [IMAGE_H, IMAGE_W],
                    "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
                }
            else:
                segmentation = [shape.polygon]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": shape.category + 1,
                    "bbox": shape.bbox,
                    "area": shape.area,
                    "iscrowd": 0,
                    "segmentation": segmentation,
                }
            )
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)]
    info = {"description": "shapes: synthetic scenes on scikit-image photographs (scripts/build_shapes.py)"}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def coco_json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def scenes(split: str, count: int, progress: Callable[[int], None] | None = None) -> list[Scene]:
    out = []
    for index in range(count):
        out.append(make_scene(split, index))
        if progress is not None:
            progress(index)
    return out
