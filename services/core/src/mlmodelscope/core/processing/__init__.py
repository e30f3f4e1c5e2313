"""Declarative pre- and post-processing: the step schema Model manifests use, and the code that runs it.

Frameworks only run the model; turning dataset samples into input tensors and outputs into ranked classes happens
here, once, for all of them, so their results are comparable.
"""

from mlmodelscope.core.processing.image import (
    convert_color,
    crop_image,
    decode_image,
    normalize_image,
    resize_image,
    resized_shape,
    to_dtype,
    to_layout,
)
from mlmodelscope.core.processing.postprocess import (
    DEFAULT_TOP_K,
    Classification,
    Postprocessor,
    load_labels,
    softmax,
    top_k_indices,
)
from mlmodelscope.core.processing.preprocess import Preprocessor, Sample
from mlmodelscope.core.processing.steps import (
    ColorMode,
    CropStep,
    DecodeStep,
    DType,
    Layout,
    NormalizeStep,
    PostprocessStep,
    PreprocessStep,
    ResizeStep,
    SoftmaxStep,
    TopKStep,
)

__all__ = [
    "DEFAULT_TOP_K",
    "Classification",
    "ColorMode",
    "CropStep",
    "DType",
    "DecodeStep",
    "Layout",
    "NormalizeStep",
    "PostprocessStep",
    "Postprocessor",
    "PreprocessStep",
    "Preprocessor",
    "ResizeStep",
    "Sample",
    "SoftmaxStep",
    "TopKStep",
    "convert_color",
    "crop_image",
    "decode_image",
    "load_labels",
    "normalize_image",
    "resize_image",
    "resized_shape",
    "softmax",
    "to_dtype",
    "to_layout",
    "top_k_indices",
]
