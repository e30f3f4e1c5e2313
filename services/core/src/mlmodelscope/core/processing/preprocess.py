"""``Preprocessor``: runs a model input's ordered pre-processing steps on dataset samples.

The step list is checked once, when the Preprocessor is built, for orderings that can never work (a decode that is
not first, an image step after ``layout: CHW``), and compiled into plain functions, so running it does no manifest
lookups. The colour mode is tracked along the list: it starts as the decode step's ``color_mode`` (RGB for array
samples), so a ``color_mode`` step converts from what the image really is. Any failure names the sample, the step
index and its kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.processing.image import (
    Array,
    convert_color,
    crop_image,
    decode_image,
    normalize_image,
    pad_image,
    resize_image,
    to_dtype,
    to_layout,
)
from mlmodelscope.core.processing.steps import ColorMode, DecodeStep, PreprocessStep

Sample = bytes | Array

# Steps that read the image as HWC, and so cannot follow `layout: CHW`.
_SPATIAL = ("resize", "crop", "pad", "color_mode", "layout")


@dataclass(frozen=True)
class _Op:
    index: int
    kind: str
    apply: Callable[[Array], Array]


class Preprocessor:
    """Turns one sample (encoded image bytes, or an array) into a model input tensor, or a batch of them."""

    def __init__(self, steps: Sequence[PreprocessStep]) -> None:
        self.steps: tuple[PreprocessStep, ...] = tuple(steps)
        self._decode: DecodeStep | None = self.steps[0].decode if self.steps else None
        self._ops: tuple[_Op, ...] = _compile(self.steps)

    def __call__(self, sample: Sample) -> Array:
        """Pre-process one sample: bytes need a decode step first; arrays must not get one."""
        return self._run(sample, "")

    def batch(self, samples: Sequence[Sample]) -> Array:
        """Pre-process every sample and stack them along a new first (batch) axis."""
        if not samples:
            raise ProcessingError("cannot pre-process an empty batch: no samples were given.")
        outputs = [self._run(sample, f"sample {i}: ") for i, sample in enumerate(samples)]
        first = outputs[0]
        for i, out in enumerate(outputs):
            if out.shape != first.shape or out.dtype != first.dtype:
                raise ProcessingError(
                    f"sample {i} pre-processes to {out.dtype}{list(out.shape)} but sample 0 to "
                    f"{first.dtype}{list(first.shape)}; a batch needs one shape and dtype.",
                    hint="End image pipelines with a fixed-size resize or crop, and a dtype step.",
                )
        return np.stack(outputs)

    def _run(self, sample: Sample, where: str) -> Array:
        if isinstance(sample, bytes):
            if self._decode is None:
                raise ProcessingError(
                    f"{where}the sample is {len(sample)} encoded bytes, but the first pre-processing step is not "
                    f"decode (steps: {self._kinds()}).",
                    hint="Add `- decode: {color_mode: RGB}` as the first preprocess step of this input.",
                )
            try:
                image: Array = decode_image(sample, self._decode.color_mode)
            except ProcessingError as e:
                raise ProcessingError(f"{where}pre-processing step 0 (decode): {e.message}", hint=e.hint) from e
        elif isinstance(sample, np.ndarray):
            if self._decode is not None:
                raise ProcessingError(
                    f"{where}pre-processing step 0 (decode) got an already decoded {sample.dtype} array of shape "
                    f"{list(sample.shape)}; decode takes encoded image bytes.",
                    hint="Remove the decode step for datasets that hold arrays, or store encoded images.",
                )
            image = sample
        else:
            raise ProcessingError(
                f"{where}a sample must be encoded image bytes or a numpy array, not {type(sample).__name__}.",
                hint="Check how the dataset's samples are loaded.",
            )
        for op in self._ops:
            try:
                image = op.apply(image)
            except ProcessingError as e:
                raise ProcessingError(
                    f"{where}pre-processing step {op.index} ({op.kind}): {e.message}", hint=e.hint
                ) from e
        return image

    def _kinds(self) -> str:
        return "[" + ", ".join(step.kind for step in self.steps) + "]"


def _compile(steps: Sequence[PreprocessStep]) -> tuple[_Op, ...]:
    """Check the ordering of ``steps`` and bind each one's parameters; decode (step 0) is run by the caller."""
    ops: list[_Op] = []
    color: ColorMode = steps[0].decode.color_mode if steps and steps[0].decode is not None else "RGB"
    chw = False
    for index, step in enumerate(steps):
        kind = step.kind
        where = f"pre-processing step {index} ({kind})"
        if chw and (kind in _SPATIAL or _per_channel(step)):
            raise ProcessingError(
                f"{where} comes after `layout: CHW`, but it works on HWC images.",
                hint="Put layout (and dtype) at the end of the preprocess list.",
            )
        apply: Callable[[Array], Array]
        if step.decode is not None:
            if index != 0:
                raise ProcessingError(
                    f"{where} is not the first step; decode turns encoded bytes into an image, so it must come first.",
                    hint="Move decode to the top of the preprocess list.",
                )
            continue
        if step.resize is not None:
            r = step.resize
            apply = partial(
                resize_image, size=r.size, method=r.method, keep_aspect_ratio=r.keep_aspect_ratio, fit=r.fit
            )
        elif step.crop is not None:
            c = step.crop
            apply = partial(crop_image, size=c.size, ratio=c.ratio, method=c.method)
        elif step.pad is not None:
            p = step.pad
            apply = partial(pad_image, size=p.size, value=p.value, position=p.position)
        elif step.color_mode is not None:
            apply = partial(convert_color, source=color, target=step.color_mode)
            color = step.color_mode
        elif step.normalize is not None:
            n = step.normalize
            apply = partial(normalize_image, mean=np.asarray(n.mean, np.float32), scale=np.asarray(n.scale, np.float32))
        elif step.layout is not None:
            apply = partial(to_layout, layout=step.layout)
            chw = chw or step.layout == "CHW"
        elif step.dtype is not None:
            apply = partial(to_dtype, dtype=step.dtype)
        else:  # pragma: no cover - PreprocessStep guarantees one key is set
            raise AssertionError(f"unhandled pre-processing step {kind}")
        ops.append(_Op(index, kind, apply))
    return tuple(ops)


def _per_channel(step: PreprocessStep) -> bool:
    n = step.normalize
    return n is not None and (isinstance(n.mean, list) or isinstance(n.scale, list))
