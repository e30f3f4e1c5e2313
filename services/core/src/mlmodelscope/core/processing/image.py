"""Image operations behind the pre-processing steps: decode, resize, crop, pad, colour, normalise, layout, dtype.

They are plain functions on numpy arrays so each can be checked on its own against an independent computation.
Images are HWC (height, width, channels); an (H, W) array is read as one channel and keeps its 2-D shape. Decoding
and resizing use Pillow, the library torchvision-style pipelines use, so "bilinear" means Pillow's bilinear filter,
which is antialiased when downscaling. Every failure is a ``ProcessingError`` that says what was wrong with the
input; the caller (``Preprocessor``) adds which step it was.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.processing.steps import ColorMode, DType, Layout

Array = npt.NDArray[Any]

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
# ITU-R 601-2 luma in Pillow's fixed point (Convert.c: L24), so GRAY from an array equals GRAY from decode.
_LUMA_FIXED = (19595, 38470, 7471)
_LUMA = (0.299, 0.587, 0.114)


def decode_image(data: bytes, color_mode: ColorMode = "RGB") -> npt.NDArray[np.uint8]:
    """Decode JPEG/PNG/... bytes into an (H, W, 3) uint8 array in RGB or BGR order, or (H, W, 1) for GRAY."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            decoded = img.convert("L" if color_mode == "GRAY" else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        head = bytes(data[:8])
        raise ProcessingError(
            f"cannot decode {len(data)} bytes (starting {head!r}) as an image: {e}.",
            hint="The sample must be a complete JPEG/PNG file; re-encode or replace it, or drop the decode step "
            "if the dataset already holds arrays.",
        ) from e
    array = np.array(decoded)
    if color_mode == "GRAY":
        return array[:, :, np.newaxis]
    if color_mode == "BGR":
        return np.ascontiguousarray(array[:, :, ::-1])
    return array


def resized_shape(
    height: int,
    width: int,
    size: tuple[int, int],
    keep_aspect_ratio: bool,
    fit: Literal["cover", "contain"] = "cover",
) -> tuple[int, int]:
    """The (height, width) that ``resize_image`` produces.

    Without ``keep_aspect_ratio`` it is ``size``. With it and ``fit="cover"``, the image is scaled by
    max(th / h, tw / w) so that it covers the target: the side that sets the scale gets its target exactly and the
    other is floored (integer arithmetic, so it is never below its target). For a square target this is
    torchvision's ``Resize(n)``: the shorter side becomes n and the longer one ``int(n * long / short)``. With
    ``fit="contain"`` the scale is min(th / h, tw / w): the image fits inside the target (the binding side gets its
    target, the other is floored, so it is never above its target), and a ``pad`` step letterboxes it.
    """
    target_h, target_w = size
    if not keep_aspect_ratio:
        return target_h, target_w
    # cover: the height binds when th / h >= tw / w (it needs the larger scale); contain: when th / h <= tw / w.
    height_ratio, width_ratio = target_h * width, target_w * height
    height_binds = height_ratio <= width_ratio if fit == "contain" else height_ratio >= width_ratio
    if height_binds:
        return target_h, max(1, width * target_h // height)
    return max(1, height * target_w // width), target_w


def resize_image(
    image: Array,
    size: tuple[int, int],
    method: Literal["bilinear", "nearest"] = "bilinear",
    keep_aspect_ratio: bool = False,
    fit: Literal["cover", "contain"] = "cover",
) -> Array:
    """Resize an (H, W, C) or (H, W) image with Pillow; uint8 stays uint8, any other dtype becomes float32."""
    hwc = _as_hwc(image, "resize")
    height, width, channels = hwc.shape
    target_h, target_w = resized_shape(height, width, size, keep_aspect_ratio, fit)
    if (target_h, target_w) == (height, width):
        return image
    resample = _RESAMPLE[method]
    if hwc.dtype == np.uint8 and channels == 3:
        out = np.array(Image.fromarray(np.ascontiguousarray(hwc)).resize((target_w, target_h), resample))
    else:
        # One Pillow "L" (uint8) or "F" (float32) image per channel: Pillow has no float multi-band mode, and an
        # RGBA image would be resampled with premultiplied alpha.
        planes = hwc if hwc.dtype == np.uint8 else hwc.astype(np.float32)
        out = np.stack(
            [
                np.asarray(
                    Image.fromarray(np.ascontiguousarray(planes[:, :, c])).resize((target_w, target_h), resample)
                )
                for c in range(channels)
            ],
            axis=2,
        )
    return out[:, :, 0] if image.ndim == 2 else out


def crop_image(
    image: Array,
    size: tuple[int, int] | None = None,
    ratio: float | None = None,
    method: Literal["center", "top_left"] = "center",
) -> Array:
    """Cut an (h, w) window from an (H, W, ...) image: a fixed ``size``, or a square ``ratio`` of the shorter side.

    ``ratio`` gives a square window of side ``round(min(H, W) * ratio)`` (at least 1): after a shorter-side
    resize to 256, ratio 0.875 cuts 224 x 224, as timm's ``crop_pct`` and torchvision's reference scripts mean.
    ``center`` puts the window where torchvision's ``CenterCrop`` does, at
    (``int(round((H - h) / 2))``, ``int(round((W - w) / 2))``) with Python's round half to even; ``top_left`` at
    (0, 0). Returns a view.
    """
    _as_hwc(image, "crop")
    height, width = image.shape[:2]
    if size is not None:
        crop_h, crop_w = size
    elif ratio is not None:
        crop_h = crop_w = max(1, round(min(height, width) * ratio))
    else:
        raise ProcessingError("crop needs a size or a ratio; got neither.", hint="Set crop.size or crop.ratio.")
    if crop_h < 1 or crop_w < 1 or crop_h > height or crop_w > width:
        raise ProcessingError(
            f"crop window {crop_h}x{crop_w} (HxW) does not fit the {height}x{width} image.",
            hint="Resize before cropping (resize with keep_aspect_ratio: true to at least the crop size), "
            "or make the crop smaller.",
        )
    if method == "center":
        top, left = center_offset(height, crop_h), center_offset(width, crop_w)
    else:
        top, left = 0, 0
    return image[top : top + crop_h, left : left + crop_w]


def center_offset(length: int, window: int) -> int:
    """Where a centred ``window`` starts along a side of ``length``: torchvision's ``int(round((L - w) / 2))``.

    Python's round goes half to even, so an odd margin of 159 starts at 80 (79.5 rounds up) and one of 1 at 0.
    """
    return round((length - window) / 2)


def pad_offsets(
    height: int, width: int, size: tuple[int, int], position: Literal["center", "top_left"]
) -> tuple[int, int]:
    """Where an (height, width) image sits inside the padded ``size``: (top, left).

    ``center`` splits the margin with the odd pixel at the bottom/right, (``(H - h) // 2``, ``(W - w) // 2``), as
    YOLO-style letterboxing does; ``top_left`` is (0, 0).
    """
    if position == "top_left":
        return 0, 0
    return (size[0] - height) // 2, (size[1] - width) // 2


def pad_image(
    image: Array, size: tuple[int, int], value: float = 0.0, position: Literal["center", "top_left"] = "center"
) -> Array:
    """Pad an (H, W, C) or (H, W) image to ``size`` with ``value`` in every channel; the dtype is kept.

    For integer images the value is rounded and saturated to the type's range (114 stays 114 in uint8).
    """
    hwc = _as_hwc(image, "pad")
    height, width, channels = hwc.shape
    target_h, target_w = size
    if height > target_h or width > target_w:
        raise ProcessingError(
            f"pad to {target_h}x{target_w} (HxW) cannot hold the {height}x{width} image; padding only grows it.",
            hint="Resize first (resize with keep_aspect_ratio: true and fit: contain to the pad size letterboxes).",
        )
    if (height, width) == (target_h, target_w):
        return image
    fill: float | int = value
    if hwc.dtype.kind in "iu":
        info = np.iinfo(hwc.dtype)
        fill = int(min(max(round(value), info.min), info.max))
    out = np.full((target_h, target_w, channels), fill, dtype=hwc.dtype)
    top, left = pad_offsets(height, width, size, position)
    out[top : top + height, left : left + width] = hwc
    return out[:, :, 0] if image.ndim == 2 else out


def convert_color(image: Array, source: ColorMode, target: ColorMode) -> Array:
    """Convert an HWC image between RGB, BGR (channel order swap) and GRAY ((H, W, 1), ITU-R 601-2 luma).

    uint8 images use Pillow's fixed-point luma, so the result equals decoding with ``color_mode: GRAY``; other
    dtypes give float32. GRAY to RGB/BGR repeats the channel.
    """
    if source == target:
        return image
    hwc = _as_hwc(image, "color_mode")
    channels = hwc.shape[2]
    expected = 1 if source == "GRAY" else 3
    if channels != expected:
        raise ProcessingError(
            f"color_mode {source} -> {target} needs {expected} channel(s), but the image has {channels} "
            f"(shape {list(image.shape)}).",
            hint="Check the decode step's color_mode, or that array samples are HWC.",
        )
    if source == "GRAY":
        return np.repeat(hwc, 3, axis=2)
    if target != "GRAY":
        return hwc[:, :, ::-1]
    red, green, blue = (hwc[:, :, c] for c in ((0, 1, 2) if source == "RGB" else (2, 1, 0)))
    if hwc.dtype == np.uint8:
        wr, wg, wb = _LUMA_FIXED
        luma = (red.astype(np.uint32) * wr + green.astype(np.uint32) * wg + blue.astype(np.uint32) * wb + 0x8000) >> 16
        return luma.astype(np.uint8)[:, :, np.newaxis]
    fr, fg, fb = _LUMA
    gray: Array = red.astype(np.float32) * fr + green.astype(np.float32) * fg + blue.astype(np.float32) * fb
    return gray.astype(np.float32)[:, :, np.newaxis]


def normalize_image(
    image: Array, mean: float | Sequence[float] | Array = 0.0, scale: float | Sequence[float] | Array = 1.0
) -> npt.NDArray[np.float32]:
    """(image - mean) / scale in float32; a list has one value per channel (the last axis of an HWC image)."""
    x = np.asarray(image, dtype=np.float32)
    mean32 = np.asarray(mean, dtype=np.float32)
    scale32 = np.asarray(scale, dtype=np.float32)
    if mean32.ndim or scale32.ndim:
        if x.ndim not in (2, 3):
            raise ProcessingError(
                f"per-channel normalize needs an (H, W, C) or (H, W) image, got shape {list(x.shape)}.",
                hint="Use a single number for mean and scale, or normalize before `layout: CHW`.",
            )
        channels = x.shape[2] if x.ndim == 3 else 1
        for name, values in (("mean", mean32), ("scale", scale32)):
            if values.ndim and values.size != channels:
                raise ProcessingError(
                    f"normalize {name} has {values.size} values but the image has {channels} channel(s) "
                    f"(shape {list(x.shape)}).",
                    hint=f"Give one {name} per channel, or a single number for all channels.",
                )
    return np.asarray((x - mean32) / scale32, dtype=np.float32)


def to_layout(image: Array, layout: Layout) -> Array:
    """HWC is a no-op; CHW transposes (H, W, C) to a contiguous (C, H, W), and (H, W) to (1, H, W)."""
    if layout == "HWC":
        return image
    return np.ascontiguousarray(_as_hwc(image, "layout").transpose(2, 0, 1))


def to_dtype(array: Array, dtype: DType) -> Array:
    """Cast to ``dtype``. Casts to an integer type round to nearest and saturate, instead of wrapping around."""
    target = np.dtype(dtype)
    if array.dtype == target:
        return array
    if target.kind in "iu":
        info = np.iinfo(target)
        if array.dtype.kind == "f":
            if not np.isfinite(array).all():
                raise ProcessingError(
                    f"cannot cast to {dtype}: the {array.dtype} data holds NaN or infinity.",
                    hint="Check the normalize step (a scale of 0?) and the input samples.",
                )
            high = float(info.max)
            if high > info.max:  # int64's maximum is not a float64; take the largest float below it
                high = float(np.nextafter(high, 0.0))
            return np.clip(np.rint(array.astype(np.float64)), float(info.min), high).astype(target)
        if array.dtype.kind in "iu" and not np.can_cast(array.dtype, target):
            source = np.iinfo(array.dtype)
            low, high_int = max(info.min, source.min), min(info.max, source.max)
            return np.clip(array, low, high_int).astype(target)
    return array.astype(target)


def _as_hwc(image: Array, step: str) -> Array:
    """``image`` as (H, W, C), viewing (H, W) as one channel; rejects other ranks and empty images."""
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1 or image.shape[2] < 1:
        raise ProcessingError(
            f"{step} needs a non-empty (H, W, C) or (H, W) image, got shape {list(image.shape)}.",
            hint="Image steps run before `layout: CHW`; array samples must be HWC.",
        )
    return image
