"""Geometry computed from the preprocess steps alone must agree with what the real Preprocessor does to pixels.

Each case draws a white rectangle in a black image, runs the real pipeline, finds the rectangle in the model
input, maps it back with the geometry and compares it with where it was drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.processing.geometry import (
    Geometry,
    geometry_of,
    source_pixels,
    to_original_boxes,
    to_original_mask,
)
from mlmodelscope.core.processing.image import pad_image, resize_image, resized_shape
from mlmodelscope.core.processing.preprocess import Preprocessor
from mlmodelscope.core.processing.steps import PreprocessStep


def _steps(*items: dict[str, Any]) -> list[PreprocessStep]:
    return [PreprocessStep.model_validate(item) for item in items]


def _rect_image(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    image = np.zeros((height, width, 3), np.uint8)
    image[y1:y2, x1:x2] = 255
    return image


def _found(image: np.ndarray) -> np.ndarray:
    """The [x1, y1, x2, y2] pixel-edge box of the bright pixels (> 200) of an HWC image."""
    ys, xs = np.nonzero(image[:, :, 0] > 200)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


LETTERBOX = (
    {"resize": {"size": [64, 64], "keep_aspect_ratio": True, "fit": "contain", "method": "nearest"}},
    {"pad": {"size": [64, 64], "value": 114}},
)
CASES = {
    "exact": ({"resize": {"size": [48, 64], "method": "nearest"}},),
    "cover_center_crop": (
        {"resize": {"size": [72, 72], "keep_aspect_ratio": True, "method": "nearest"}},
        {"crop": {"size": [64, 64]}},
    ),
    "ratio_crop": (
        {"resize": {"size": [80, 80], "keep_aspect_ratio": True, "method": "nearest"}},
        {"crop": {"ratio": 0.875}},
    ),
    "top_left_crop": ({"crop": {"size": [90, 100], "method": "top_left"}},),
    "letterbox": LETTERBOX,
    "letterbox_top_left": (LETTERBOX[0], {"pad": {"size": [64, 64], "position": "top_left"}}),
    "bilinear_letterbox": (
        {"resize": {"size": [96, 80], "keep_aspect_ratio": True, "fit": "contain"}},
        {"pad": {"size": [96, 96]}},
    ),
}
SHAPES = [(120, 160), (160, 120), (101, 257), (200, 200)]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("hw", SHAPES)
def test_rectangle_maps_back_to_where_it_was_drawn(case: str, hw: tuple[int, int]) -> None:
    height, width = hw
    box = (width // 4, height // 3, width // 4 + width // 3, height // 3 + height // 3)
    steps = _steps(*CASES[case])
    out = Preprocessor(steps)(_rect_image(height, width, box))
    geometry = geometry_of(steps, hw)
    assert geometry.input_hw == out.shape[:2]
    back = to_original_boxes(_found(out)[None, :], geometry)[0]
    seen = to_original_boxes(np.array([[0, 0, geometry.input_hw[1], geometry.input_hw[0]]]), geometry)[0]
    visible = np.concatenate([np.maximum(box[:2], seen[:2]), np.minimum(box[2:], seen[2:])])  # a crop may cut it
    tolerance = 1.5 / min(geometry.scale_yx) + 1.0  # one input pixel (plus bilinear's blur), in original pixels
    assert np.abs(back - visible).max() <= tolerance, (back, visible, geometry)


@pytest.mark.parametrize("case", ["exact", "cover_center_crop", "letterbox", "bilinear_letterbox"])
def test_mask_of_the_input_resizes_back_onto_the_original(case: str) -> None:
    height, width = 150, 220
    x1, y1, x2, y2 = box = (40, 30, 150, 110)
    steps = _steps(*CASES[case])
    original = _rect_image(height, width, box)[:, :, 0] > 200
    input_mask = Preprocessor(steps)(_rect_image(height, width, box))[:, :, 0] > 200
    geometry = geometry_of(steps, (height, width))
    back = to_original_mask(input_mask, geometry)
    assert back.shape == (height, width)
    seen = to_original_boxes(np.array([[0, 0, geometry.input_hw[1], geometry.input_hw[0]]]), geometry)[0]
    ys, xs = np.nonzero(back != original)
    cy, cx = ys + 0.5, xs + 0.5
    in_view = (cx >= seen[0]) & (cx <= seen[2]) & (cy >= seen[1]) & (cy <= seen[3])
    to_edge = np.minimum.reduce([np.abs(cy - y1), np.abs(cy - y2), np.abs(cx - x1), np.abs(cx - x2)])
    tolerance = 1.5 / min(geometry.scale_yx) + 1.0
    assert (to_edge[in_view] <= tolerance).all()  # inside the model's view, only the rectangle's edges may differ


def test_letterbox_geometry_numbers() -> None:
    geometry = geometry_of(_steps(*LETTERBOX), (100, 200))
    assert geometry == Geometry((100, 200), (64, 64), (0.32, 0.32), (16.0, 0.0))
    boxes = to_original_boxes(np.array([[0.0, 16.0, 64.0, 48.0], [-5.0, 0.0, 80.0, 64.0]]), geometry)
    np.testing.assert_allclose(boxes, [[0, 0, 200, 100], [0, 0, 200, 100]])  # the second is clipped


def test_crop_geometry_numbers_follow_torchvision_rounding() -> None:
    # 256 x 415 -> center crop 224: top round(32 / 2) = 16, left round(191 / 2) = round(95.5) = 96
    geometry = geometry_of(_steps({"crop": {"size": [224, 224]}}), (256, 415))
    assert geometry.offset_yx == (-16.0, -96.0)


def test_pixels_outside_the_crop_take_the_nearest_edge() -> None:
    geometry = geometry_of(_steps({"crop": {"size": [2, 2]}}), (4, 4))  # the window is rows/cols 1..2
    rows, cols = source_pixels(geometry, (2, 2))
    assert rows.tolist() == [0, 0, 1, 1] and cols.tolist() == [0, 0, 1, 1]
    mask = np.array([[1, 2], [3, 4]])
    assert to_original_mask(mask, geometry).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_mask_at_a_lower_resolution_than_the_input() -> None:
    geometry = geometry_of(_steps({"resize": {"size": [8, 8]}}), (16, 16))
    mask = np.arange(16).reshape(4, 4)  # a stride-2 output of the 8 x 8 input
    back = to_original_mask(mask, geometry)
    assert back.shape == (16, 16) and back[0, 0] == 0 and back[15, 15] == 15 and back[4, 4] == 5


def test_geometry_errors() -> None:
    with pytest.raises(ProcessingError, match="step 0 \\(crop\\)"):
        geometry_of(_steps({"crop": {"size": [50, 50]}}), (40, 40))
    with pytest.raises(ProcessingError, match="cannot hold"):
        geometry_of(_steps({"pad": {"size": [30, 30]}}), (40, 40))
    with pytest.raises(ProcessingError, match="positive"):
        geometry_of([], (0, 10))


@pytest.mark.parametrize("hw", [(100, 200), (200, 100), (64, 64), (1, 500)])
def test_contain_fits_inside_and_touches_one_side(hw: tuple[int, int]) -> None:
    h, w = resized_shape(hw[0], hw[1], (64, 96), keep_aspect_ratio=True, fit="contain")
    assert h <= 64 and w <= 96 and (h == 64 or w == 96)
    cover = resized_shape(hw[0], hw[1], (64, 96), keep_aspect_ratio=True)
    assert cover[0] >= 64 and cover[1] >= 96


def test_pad_image_places_and_fills() -> None:
    image = np.full((2, 3, 3), 7, np.uint8)
    out = pad_image(image, (4, 6), value=114)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert (out[1:3, 1:4] == 7).all() and out[0, 0, 0] == 114 and out[3, 5, 2] == 114
    top_left = pad_image(image[:, :, 0], (3, 3), value=300.0, position="top_left")  # saturates to 255
    assert top_left.shape == (3, 3) and (top_left[:2, :3] == 7).all() and top_left[2, 0] == 255
    floats = pad_image(image.astype(np.float32), (2, 4), value=0.5)
    assert floats.dtype == np.float32 and floats[0, 3, 0] == 0.5
    with pytest.raises(ProcessingError, match="cannot hold"):
        pad_image(image, (1, 6))


def test_letterbox_pipeline_equals_resize_then_pad() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    steps = _steps(
        {"resize": {"size": [64, 64], "keep_aspect_ratio": True, "fit": "contain"}}, {"pad": {"size": [64, 64]}}
    )
    resized = resize_image(image, (64, 64), keep_aspect_ratio=True, fit="contain")
    assert resized.shape == (36, 64, 3)
    np.testing.assert_array_equal(Preprocessor(steps)(image), pad_image(resized, (64, 64)))


def test_pad_after_chw_is_rejected() -> None:
    with pytest.raises(ProcessingError, match="after `layout: CHW`"):
        Preprocessor(_steps({"layout": "CHW"}, {"pad": {"size": [4, 4]}}))
