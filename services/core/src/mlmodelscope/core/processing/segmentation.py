"""Semantic-segmentation post-processing: a segmenter's mask tensor to one class id per original-image pixel.

A segmenter answers over its input (after resize/crop/pad), often at a lower resolution, as per-class logits
((C, h, w) or (h, w, C)) or as class ids ((h, w)). The metrics are computed at the original image size against
masks rasterised from the COCO annotations, so every answer is turned into class ids (arg-max of the logits,
minus ``class_offset``) and resized back to the original image by nearest neighbour through the inverse of the
preprocess geometry; pixels the model never saw (cut away by a crop) take the nearest edge of its mask. Class ids
follow the dataset's mask convention: 0 is background and k + 1 is dataset class k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.manifests.model_tensors import MaskFormat
from mlmodelscope.core.processing.geometry import Geometry, to_original_mask

ClassMask = npt.NDArray[np.int64]  # (H, W) class ids at the original image size


@dataclass(frozen=True)
class SegmentationPostprocess:
    """What a segmenter's manifest says about its ``mask`` output, resolved once (see ``from_spec``)."""

    mask_output: int
    mask_format: MaskFormat
    layout: Literal["CHW", "HWC"]
    class_offset: int

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> SegmentationPostprocess:
        """Read the ``mask`` output of a semantic_segmentation model's spec."""
        kinds = [o.type for o in spec.outputs]
        if "mask" not in kinds:
            raise ProcessingError(
                f"this {spec.task} model has no 'mask' output (its outputs are {kinds}).",
                hint="Declare the segmenter's output with `type: mask`.",
            )
        index = kinds.index("mask")
        output = spec.outputs[index]
        return cls(index, output.mask_format, output.layout, output.class_offset)

    def batch(self, outputs: Sequence[np.ndarray], geometries: Sequence[Geometry]) -> list[ClassMask]:
        """Class-id masks at each image's original size; row r of the mask output is the image of geometries[r]."""
        if self.mask_output >= len(outputs):
            raise ProcessingError(
                f"the model returned {len(outputs)} outputs, but its mask is output {self.mask_output}.",
                hint="Check the order of the outputs in the Model manifest (the graph's order).",
            )
        masks = np.asarray(outputs[self.mask_output])
        if len(masks) != len(geometries):
            raise ProcessingError(
                f"the mask output holds {len(masks)} rows for a batch of {len(geometries)} images "
                f"(shape {list(masks.shape)}).",
                hint="The mask output's first axis must be the batch.",
            )
        return [
            np.asarray(to_original_mask(self.class_ids(masks[r]), geometries[r]), dtype=np.int64)
            for r in range(len(geometries))
        ]

    def class_ids(self, mask: np.ndarray) -> ClassMask:
        """One image's mask output (no batch axis) as (h, w) class ids in the dataset's convention."""
        if self.mask_format == "logits":
            if mask.ndim != 3:
                raise ProcessingError(
                    f"mask logits of one image must be {'(C, H, W)' if self.layout == 'CHW' else '(H, W, C)'}, "
                    f"got shape {list(mask.shape)}.",
                    hint="Set mask_format: ids for a model that outputs class ids, or fix the output's layout.",
                )
            ids = np.argmax(mask, axis=0 if self.layout == "CHW" else 2)
        else:
            ids = mask
            if ids.ndim == 3 and 1 in (ids.shape[0], ids.shape[2]):  # (1, H, W) or (H, W, 1)
                ids = ids[0] if ids.shape[0] == 1 else ids[:, :, 0]
            if ids.ndim != 2:
                raise ProcessingError(
                    f"a class-id mask of one image must be (H, W), got shape {list(mask.shape)}.",
                    hint="Set mask_format: logits for a model that outputs per-class scores.",
                )
            ids = np.rint(ids) if ids.dtype.kind == "f" else ids
        return np.asarray(ids, dtype=np.int64) - self.class_offset
