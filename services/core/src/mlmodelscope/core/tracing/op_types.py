"""One vocabulary of operator types for every framework, so op-type breakdowns compare across machines and frameworks.

Why this module exists: each framework names what it ran in its own words, and some change the words with the
machine. TensorFlow's oneDNN build (on by default on x86-64) runs ``Conv2D + BiasAdd + Relu`` as
``_MklNativeFusedConv2D``, ``MaxPool`` as ``_MklNativeMaxPool`` and ``Transpose`` as ``_MklTranspose``, and the
same model with ``TF_ENABLE_ONEDNN_OPTS=0`` reports ``_FusedConv2D``, ``MaxPool`` and ``Transpose``; ONNX Runtime
says ``Conv`` and ``Gemm``, PyTorch ``aten::conv2d`` and ``aten::linear``, MXNet ``_sg_mkldnn_conv`` and
``FullyConnected``. Every FRAMEWORK-level operator span carries both names: ``op_type`` (canonical, from this
table) and ``framework_op`` (what the framework said), plus ``fused_ops`` when the fusion names the ops it
absorbed. This is the ONE place the mapping lives; ``framework.framework_span`` applies it to every operator span.

How a raw name becomes canonical (``canonical_op``):

1. the framework's decoration prefixes are stripped (``FRAMEWORK_PREFIXES``: TensorFlow's ``_MklNative`` / ``_Mkl``
   and a leading ``_``, PyTorch's ``aten::``); what is left is looked up in the framework's table (``TABLES``).
2. a table entry gives the canonical type and the ops the name itself says were fused in (``aten::addmm`` is a
   MatMul with its bias Add; ``_FusedConv2D`` names its fused ops only in a graph attribute the profiler does not
   see, so it maps to ``Conv2D`` with none).
3. dimension-agnostic ops (ONNX ``Conv``, MXNet ``Convolution``, ``aten::convolution``) take their dimensionality
   from the rank of their first input when the profile records shapes (rank 3/4/5 -> 1-D/2-D/3-D); without shapes
   (MXNet's profile has none) they are given the 2-D name, TensorFlow's unmarked default.
4. an op the table does not know keeps the name left after step 1 (``_MklFoo`` -> ``Foo``, ``aten::foo`` ->
   ``foo``): stable across CPUs, never a guess.

The canonical vocabulary follows TensorFlow's op names (the 2-D forms are the unmarked ones: ``MaxPool``,
``AvgPool``); ``CANONICAL_OP_TYPES`` lists it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Entry = str | tuple[str, tuple[str, ...]]
"""A table entry: the canonical type, or (canonical type, the ops the name says were fused into it)."""

SPATIAL = "{d}"
"""In a canonical name, where the dimensionality goes (``Conv{d}`` -> ``Conv1D``/``Conv2D``/``Conv3D``)."""

_POOL_SPATIAL = "{p}"
"""Pooling's dimensionality marker: empty for 2-D (TensorFlow's ``MaxPool``), ``1D``/``3D`` otherwise."""

_ONNXRUNTIME: Mapping[str, Entry] = {
    "Conv": "Conv{d}",
    "NhwcConv": "Conv2D",
    "FusedConv": "Conv{d}",
    "QLinearConv": "Conv{d}",
    "ConvInteger": "Conv{d}",
    "ConvTranspose": "ConvTranspose{d}",
    "MaxPool": "MaxPool{p}",
    "AveragePool": "AvgPool{p}",
    "GlobalAveragePool": "GlobalAvgPool",
    "GlobalMaxPool": "GlobalMaxPool",
    "Gemm": "MatMul",
    "FusedGemm": "MatMul",
    "MatMul": "MatMul",
    "FusedMatMul": "MatMul",
    "MatMulInteger": "MatMul",
    "QLinearMatMul": "MatMul",
    "BatchNormalization": "BatchNorm",
    "LayerNormalization": "LayerNorm",
    "SkipLayerNormalization": ("LayerNorm", ("Add",)),
    "SimplifiedLayerNormalization": "RMSNorm",
    "Relu": "Relu",
    "LeakyRelu": "LeakyRelu",
    "Elu": "Elu",
    "Selu": "Selu",
    "Gelu": "Gelu",
    "FastGelu": "Gelu",
    "BiasGelu": ("Gelu", ("Add",)),
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "Softmax": "Softmax",
    "LogSoftmax": "LogSoftmax",
    "Add": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "Div": "Div",
    "Flatten": "Flatten",
    "Reshape": "Reshape",
    "Transpose": "Transpose",
    "Concat": "Concat",
    "Squeeze": "Squeeze",
    "Unsqueeze": "ExpandDims",
    "ReduceMean": "Mean",
    "ReduceMax": "Max",
    "ReduceSum": "Sum",
    "Cast": "Cast",
    "Gather": "Gather",
    "Slice": "Slice",
    "Split": "Split",
    "Pad": "Pad",
    "Identity": "Identity",
    "Dropout": "Dropout",
}

_PYTORCH: Mapping[str, Entry] = {
    "conv1d": "Conv1D",
    "conv2d": "Conv2D",
    "conv3d": "Conv3D",
    "convolution": "Conv{d}",
    "_convolution": "Conv{d}",
    "mkldnn_convolution": "Conv{d}",
    "cudnn_convolution": "Conv{d}",
    "_slow_conv2d_forward": "Conv2D",
    "thnn_conv2d": "Conv2D",
    "conv_transpose1d": "ConvTranspose1D",
    "conv_transpose2d": "ConvTranspose2D",
    "conv_transpose3d": "ConvTranspose3D",
    "max_pool1d": "MaxPool1D",
    "max_pool2d": "MaxPool",
    "max_pool3d": "MaxPool3D",
    "max_pool2d_with_indices": "MaxPool",
    "max_pool3d_with_indices": "MaxPool3D",
    "mkldnn_max_pool2d": "MaxPool",
    "avg_pool1d": "AvgPool1D",
    "avg_pool2d": "AvgPool",
    "avg_pool3d": "AvgPool3D",
    "adaptive_avg_pool1d": "AdaptiveAvgPool1D",
    "adaptive_avg_pool2d": "AdaptiveAvgPool",
    "_adaptive_avg_pool2d": "AdaptiveAvgPool",
    "adaptive_avg_pool3d": "AdaptiveAvgPool3D",
    "adaptive_max_pool2d": "AdaptiveMaxPool",
    "linear": "MatMul",
    "addmm": ("MatMul", ("Add",)),
    "mm": "MatMul",
    "matmul": "MatMul",
    "bmm": "BatchMatMul",
    "baddbmm": ("BatchMatMul", ("Add",)),
    "batch_norm": "BatchNorm",
    "_batch_norm_impl_index": "BatchNorm",
    "native_batch_norm": "BatchNorm",
    "_native_batch_norm_legit_no_training": "BatchNorm",
    "layer_norm": "LayerNorm",
    "native_layer_norm": "LayerNorm",
    "relu": "Relu",
    "relu_": "Relu",
    "relu6": "Relu6",
    "hardtanh": "Relu6",
    "leaky_relu": "LeakyRelu",
    "elu": "Elu",
    "selu": "Selu",
    "gelu": "Gelu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softmax": "Softmax",
    "_softmax": "Softmax",
    "log_softmax": "LogSoftmax",
    "_log_softmax": "LogSoftmax",
    "add": "Add",
    "add_": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "flatten": "Flatten",
    "view": "Reshape",
    "reshape": "Reshape",
    "_reshape_alias": "Reshape",
    "t": "Transpose",
    "transpose": "Transpose",
    "permute": "Transpose",
    "cat": "Concat",
    "squeeze": "Squeeze",
    "unsqueeze": "ExpandDims",
    "mean": "Mean",
    "amax": "Max",
    "sum": "Sum",
    "pad": "Pad",
    "constant_pad_nd": "Pad",
    "dropout": "Dropout",
    "embedding": "Gather",
    "index_select": "Gather",
    "slice": "Slice",
    "split": "Split",
}

_TENSORFLOW: Mapping[str, Entry] = {
    "Conv2D": "Conv2D",
    "Conv3D": "Conv3D",
    "FusedConv2D": "Conv2D",
    "FusedConv3D": "Conv3D",
    "PadWithConv2D": ("Conv2D", ("Pad",)),
    "PadWithFusedConv2D": ("Conv2D", ("Pad",)),
    "NativeConv2D": "Conv2D",
    "DepthwiseConv2dNative": "DepthwiseConv2D",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2D",
    "Conv2DBackpropInput": "ConvTranspose2D",
    "Conv3DBackpropInputV2": "ConvTranspose3D",
    "MaxPool": "MaxPool",
    "MaxPoolV2": "MaxPool",
    "MaxPool3D": "MaxPool3D",
    "AvgPool": "AvgPool",
    "AvgPool3D": "AvgPool3D",
    "MatMul": "MatMul",
    "FusedMatMul": "MatMul",
    "BatchMatMul": "BatchMatMul",
    "BatchMatMulV2": "BatchMatMul",
    "BatchMatMulV3": "BatchMatMul",
    "FusedBatchMatMulV2": "BatchMatMul",
    "FusedBatchNorm": "BatchNorm",
    "FusedBatchNormV2": "BatchNorm",
    "FusedBatchNormV3": "BatchNorm",
    "FusedBatchNormEx": "BatchNorm",
    "LayerNorm": "LayerNorm",
    "BiasAdd": "BiasAdd",
    "Relu": "Relu",
    "Relu6": "Relu6",
    "LeakyRelu": "LeakyRelu",
    "Elu": "Elu",
    "Selu": "Selu",
    "Gelu": "Gelu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "Softmax": "Softmax",
    "LogSoftmax": "LogSoftmax",
    "Add": "Add",
    "AddV2": "Add",
    "AddN": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "RealDiv": "Div",
    "Div": "Div",
    "Reshape": "Reshape",
    "Transpose": "Transpose",
    "ConjugateTranspose": "Transpose",
    "ConcatV2": "Concat",
    "Concat": "Concat",
    "Squeeze": "Squeeze",
    "ExpandDims": "ExpandDims",
    "Mean": "Mean",
    "Max": "Max",
    "Sum": "Sum",
    "Cast": "Cast",
    "GatherV2": "Gather",
    "ResourceGather": "Gather",
    "Slice": "Slice",
    "StridedSlice": "Slice",
    "Split": "Split",
    "SplitV": "Split",
    "Pad": "Pad",
    "PadV2": "Pad",
    "Identity": "Identity",
    "ReadVariableOp": "ReadVariableOp",
}

_MXNET: Mapping[str, Entry] = {
    "Convolution": "Conv{d}",
    "_sg_mkldnn_conv": "Conv{d}",
    "_sg_onednn_conv": "Conv{d}",
    "Deconvolution": "ConvTranspose{d}",
    "FullyConnected": "MatMul",
    "_sg_mkldnn_fully_connected": "MatMul",
    "_sg_onednn_fully_connected": "MatMul",
    "dot": "MatMul",
    "batch_dot": "BatchMatMul",
    "Pooling": "Pool",
    "BatchNorm": "BatchNorm",
    "LayerNorm": "LayerNorm",
    "relu": "Relu",
    "LeakyReLU": "LeakyRelu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softmax": "Softmax",
    "SoftmaxOutput": "Softmax",
    "SoftmaxActivation": "Softmax",
    "log_softmax": "LogSoftmax",
    "elemwise_add": "Add",
    "_plus": "Add",
    "broadcast_add": "Add",
    "_sg_mkldnn_sum": "Add",
    "elemwise_sub": "Sub",
    "broadcast_sub": "Sub",
    "elemwise_mul": "Mul",
    "broadcast_mul": "Mul",
    "broadcast_div": "Div",
    "Flatten": "Flatten",
    "Reshape": "Reshape",
    "transpose": "Transpose",
    "Concat": "Concat",
    "squeeze": "Squeeze",
    "expand_dims": "ExpandDims",
    "mean": "Mean",
    "max": "Max",
    "sum": "Sum",
    "Cast": "Cast",
    "take": "Gather",
    "Embedding": "Gather",
    "slice": "Slice",
    "SliceChannel": "Split",
    "Pad": "Pad",
    "Dropout": "Dropout",
    "_copy": "Identity",
}
"""MXNet's ``Pooling`` and ``Activation`` carry the pool/activation type only as graph attributes, which its
profile does not record: they map to ``Pool`` and ``Activation``."""

TABLES: Mapping[str, Mapping[str, Entry]] = {
    "onnxruntime": _ONNXRUNTIME,
    "pytorch": _PYTORCH,
    "tensorflow": _TENSORFLOW,
    "mxnet": _MXNET,
}
"""Per framework: its op name (decoration prefixes stripped) -> the canonical type (and the ops it fused)."""

FRAMEWORK_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "onnxruntime": (),
    "pytorch": ("aten::",),
    "tensorflow": ("_MklNative", "_Mkl", "_"),
    "mxnet": (),
}
"""Decorations stripped from a raw name, in order, each at most once (oneDNN's TensorFlow prefixes, then the
leading ``_`` TensorFlow gives its internal fused ops: ``_MklNativeFusedConv2D`` -> ``FusedConv2D``)."""


def _vocabulary() -> frozenset[str]:
    names = {"Bulk"}
    for table in TABLES.values():
        for entry in table.values():
            canonical = entry if isinstance(entry, str) else entry[0]
            for dims in ("1D", "2D", "3D"):
                names.add(canonical.replace(SPATIAL, dims).replace(_POOL_SPATIAL, "" if dims == "2D" else dims))
    return frozenset(names)


CANONICAL_OP_TYPES: frozenset[str] = _vocabulary()
"""Every canonical type a table can produce (unknown ops add their stripped names to this vocabulary)."""

BULK = "Bulk"
"""The type of one engine operation that ran several ops (MXNet's bulked ``[op1,op2]`` events)."""

_SHAPE = re.compile(r"^[A-Za-z0-9_]*\[(?P<dims>[0-9, ]*)\]")


@dataclass(frozen=True, slots=True)
class OpType:
    """What an operator is, in the shared vocabulary: its canonical type and the ops fused into it."""

    canonical: str
    fused_ops: tuple[str, ...] = ()


def strip_prefixes(framework: str, raw: str) -> str:
    """``raw`` without the framework's decoration prefixes (``FRAMEWORK_PREFIXES``), never empty."""
    name = raw
    for prefix in FRAMEWORK_PREFIXES.get(framework, ()):
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix) :]
    return name


def _rank_of_first_input(input_shapes: str) -> int | None:
    """Rank of the first tensor of ``"float[4,1,8,8] float[16,1,3,3]"`` (the profilers' shape format)."""
    match = _SHAPE.match(input_shapes.strip())
    if match is None:
        return None
    dims = match["dims"].strip()
    return len(dims.split(",")) if dims else 0


def _spatial(canonical: str, input_shapes: str) -> str:
    if SPATIAL not in canonical and _POOL_SPATIAL not in canonical:
        return canonical
    rank = _rank_of_first_input(input_shapes)
    spatial_dims = rank - 2 if rank is not None and 3 <= rank <= 5 else 2
    dims = f"{spatial_dims}D"
    return canonical.replace(SPATIAL, dims).replace(_POOL_SPATIAL, "" if spatial_dims == 2 else dims)


def canonical_op(framework: str, raw: str, *, input_shapes: str = "", fused_ops: Iterable[str] = ()) -> OpType:
    """The canonical type of ``raw``, an op name as ``framework`` reported it (see the module docstring).

    An engine operation that ran several ops in one (MXNet's bulked ``[Pooling,Flatten]``) is ``Bulk``, with the
    ops it ran as its ``fused_ops``.

    ``fused_ops`` are raw names of ops the framework said it fused in (e.g. TensorFlow's ``fused_ops``
    attribute); they are canonicalised and follow the ones the name itself implies, without duplicates.
    """
    if raw.startswith("[") and raw.endswith("]") and len(raw) > 2:
        members = [part.strip() for part in raw[1:-1].split(",") if part.strip()]
        return OpType(BULK, _merged((), members, framework))
    table = TABLES.get(framework, {})
    stripped = strip_prefixes(framework, raw)
    entry = table.get(stripped)
    if entry is None and stripped != raw:
        entry = table.get(raw)
    if entry is None:
        return OpType(stripped, _merged((), fused_ops, framework))
    canonical, implied = (entry, ()) if isinstance(entry, str) else entry
    return OpType(_spatial(canonical, input_shapes), _merged(implied, fused_ops, framework))


def _merged(implied: tuple[str, ...], named: Iterable[str], framework: str) -> tuple[str, ...]:
    out: list[str] = list(implied)
    for raw in named:
        canonical = canonical_op(framework, raw).canonical if raw else ""
        if canonical and canonical not in out:
            out.append(canonical)
    return tuple(out)
