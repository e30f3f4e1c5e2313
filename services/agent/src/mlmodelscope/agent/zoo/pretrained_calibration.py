"""The calibration set of the int8 MobileNetV2: scikit-image photos that are not in ``imagenet-photos``, and crops.

Why this module exists: post-training int8 quantisation fixes each activation's range from a representative set
of inputs, and a result scored on photos the quantiser saw would flatter it. So the calibration photos are other
scikit-image bundled images (:data:`CALIBRATION_PHOTOS`: none of the six ``imagenet-photos`` ones, nor the right
stereo view of their motorcycle), grayscale ones repeated into RGB, each given whole and as five fixed crops
(:data:`CROPS`): 13 photos x 6 = 78 inputs, always in the same order. Each crop is pre-processed exactly as the
model's manifest says (:data:`PREPROCESS`, torchvision's resize 256 / center crop 224 / ImageNet mean and std; a
test checks it equals ``assets/models/mobilenet-v2-imagenet.yaml``), by the platform's own ``Preprocessor``.

Nothing here is random, so the calibration tensors are the same on every run with the pinned scikit-image and
numpy; they are read from the bundled files, never downloaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlmodelscope.core.errors import ModelLoadError
from mlmodelscope.core.processing.preprocess import Preprocessor
from mlmodelscope.core.processing.steps import PreprocessStep

CALIBRATION_PHOTOS = (
    "astronaut",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "coins",
    "moon",
    "page",
    "brick",
    "grass",
    "gravel",
    "text",
    "colorwheel",
    "cell",
)
"""``skimage.data`` loaders of bundled photos, none of them in ``imagenet-photos``."""

CROPS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 1.0),
    (0.125, 0.125, 0.75),
    (0.0, 0.0, 0.625),
    (0.0, 0.375, 0.625),
    (0.375, 0.0, 0.625),
    (0.375, 0.375, 0.625),
)
"""(top, left, side) as fractions of the photo's height and width: the whole photo, its centre, its corners."""

PREPROCESS: tuple[dict[str, Any], ...] = (
    {"resize": {"size": [256, 256], "method": "bilinear", "keep_aspect_ratio": True}},
    {"crop": {"method": "center", "size": [224, 224]}},
    {"normalize": {"mean": [123.675, 116.28, 103.53], "scale": [58.395, 57.12, 57.375]}},
    {"layout": "CHW"},
    {"dtype": "float32"},
)
"""The mobilenet-v2-imagenet manifest's pre-processing after its ``decode`` step (the photos are arrays here)."""


def _photo(loader: str) -> npt.NDArray[np.uint8]:
    try:
        from skimage import data
    except ImportError as e:
        raise ModelLoadError(
            "the int8 MobileNetV2 is calibrated on scikit-image's bundled photos, and scikit-image is not installed "
            "in this runtime.",
            hint="`pip install scikit-image` where the zoo builds the int8 TFLite model (it is not needed to run it).",
        ) from e
    image = np.asarray(getattr(data, loader)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, np.newaxis], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def calibration_crops() -> list[npt.NDArray[np.uint8]]:
    """The calibration images as uint8 (H, W, 3) RGB arrays, photo by photo, crop by crop."""
    crops = []
    for loader in CALIBRATION_PHOTOS:
        image = _photo(loader)
        height, width = image.shape[:2]
        for top, left, side in CROPS:
            y0, x0 = round(top * height), round(left * width)
            y1, x1 = y0 + round(side * height), x0 + round(side * width)
            crops.append(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return crops


def calibration_inputs() -> npt.NDArray[np.float32]:
    """The calibration set as the model sees it: float32 (78, 3, 224, 224)."""
    steps = [PreprocessStep.model_validate(step) for step in PREPROCESS]
    return np.asarray(Preprocessor(steps).batch(calibration_crops()), dtype=np.float32)
