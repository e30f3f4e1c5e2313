"""Canonical op types (core.tracing.op_types): every framework's and every CPU's names for the same operator map to
one name, FRAMEWORK spans carry it beside the framework's own, and op-type breakdowns group by it (in Python and
in the collector's database). The TensorFlow names are the ones its oneDNN build and its plain build report for
the digits CNN on x86-64; a slow test takes them again, live, with ``TF_ENABLE_ONEDNN_OPTS=1`` and ``=0``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from mlmodelscope.core.analysis.layers import breakdown, groups_of
from mlmodelscope.core.messages import Envelope, QueryBatch, QueryRecord, SpanBatch, message_id
from mlmodelscope.core.tracing.framework import framework_span
from mlmodelscope.core.tracing.op_types import CANONICAL_OP_TYPES, TABLES, OpType, canonical_op
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer
from tests.support import collector as fixtures
from tests.support.paths import ASSETS, REPO

# The digits CNN's ops as TensorFlow 2.21 ran them on an AMD EPYC, layer by layer: (oneDNN build, plain build,
# canonical). Recorded from real profiles (node "digits_cnn_1/conv1_1/Relu" etc.); the live test below re-takes them.
TENSORFLOW_DIGITS_OPS = [
    ("_MklTranspose", "Transpose", "Transpose"),
    ("_MklNativeFusedConv2D", "_FusedConv2D", "Conv2D"),
    ("_MklNativeMaxPool", "MaxPool", "MaxPool"),
    ("_MklNativeFusedConv2D", "_FusedConv2D", "Conv2D"),
    ("Mean", "Mean", "Mean"),
    ("_MklNativeFusedMatMul", "_FusedMatMul", "MatMul"),
    ("ReadVariableOp", "ReadVariableOp", "ReadVariableOp"),
    ("Reshape", "Reshape", "Reshape"),
    ("Squeeze", "Squeeze", "Squeeze"),
]

# One operator, as each framework names it (with the input shapes its profile records, where it records them).
SAME_OPERATOR = {
    "Conv2D": [
        ("onnxruntime", "Conv", "float[4,1,8,8] float[16,1,3,3] float[16]"),
        ("onnxruntime", "FusedConv", "float[4,1,8,8] float[16,1,3,3]"),
        ("pytorch", "aten::conv2d", "float[4,1,8,8] float[16,1,3,3] float[16]"),
        ("pytorch", "aten::_convolution", "float[4,1,8,8] float[16,1,3,3] float[16]"),
        ("pytorch", "aten::mkldnn_convolution", "float[4,1,8,8] float[16,1,3,3] float[16]"),
        ("tensorflow", "Conv2D", ""),
        ("tensorflow", "_FusedConv2D", ""),
        ("tensorflow", "_MklFusedConv2D", ""),
        ("tensorflow", "_MklNativeFusedConv2D", ""),
        ("tensorflow", "_MklNativeConv2D", ""),
        ("mxnet", "Convolution", ""),
        ("mxnet", "_sg_mkldnn_conv", ""),
    ],
    "MatMul": [
        ("onnxruntime", "Gemm", "float[4,32] float[10]"),
        ("onnxruntime", "MatMul", "float[4,32] float[32,10]"),
        ("pytorch", "aten::linear", "float[4,32] float[10,32] float[10]"),
        ("pytorch", "aten::addmm", "float[10] float[4,32] float[32,10]"),
        ("tensorflow", "MatMul", ""),
        ("tensorflow", "_FusedMatMul", ""),
        ("tensorflow", "_MklFusedMatMul", ""),
        ("tensorflow", "_MklNativeFusedMatMul", ""),
        ("tensorflow", "_MklMatMul", ""),
        ("mxnet", "FullyConnected", ""),
        ("mxnet", "_sg_mkldnn_fully_connected", ""),
    ],
    "MaxPool": [
        ("onnxruntime", "MaxPool", "float[4,16,8,8]"),
        ("pytorch", "aten::max_pool2d", "float[4,16,8,8]"),
        ("pytorch", "aten::max_pool2d_with_indices", "float[4,16,8,8]"),
        ("tensorflow", "MaxPool", ""),
        ("tensorflow", "_MklMaxPool", ""),
        ("tensorflow", "_MklNativeMaxPool", ""),
    ],
    "Relu": [
        ("onnxruntime", "Relu", ""),
        ("pytorch", "aten::relu", ""),
        ("tensorflow", "Relu", ""),
        ("mxnet", "relu", ""),
    ],
    "Transpose": [
        ("onnxruntime", "Transpose", ""),
        ("pytorch", "aten::permute", ""),
        ("tensorflow", "Transpose", ""),
        ("tensorflow", "_MklTranspose", ""),
        ("mxnet", "transpose", ""),
    ],
    "BatchNorm": [
        ("onnxruntime", "BatchNormalization", ""),
        ("pytorch", "aten::batch_norm", ""),
        ("tensorflow", "FusedBatchNormV3", ""),
        ("tensorflow", "_MklFusedBatchNormV3", ""),
        ("tensorflow", "_MklNativeFusedBatchNormV3", ""),
        ("tensorflow", "_FusedBatchNormEx", ""),
        ("mxnet", "BatchNorm", ""),
    ],
    "GlobalAvgPool": [("onnxruntime", "GlobalAveragePool", "float[4,32,4,4]")],
}


def test_onednn_and_plain_tensorflow_names_are_the_same_canonical_types() -> None:
    """The failure this fixes: oneDNN's names (the default on x86-64) and the plain build's differ, op for op."""
    for onednn, plain, canonical in TENSORFLOW_DIGITS_OPS:
        assert canonical_op("tensorflow", onednn).canonical == canonical, onednn
        assert canonical_op("tensorflow", plain).canonical == canonical, plain
    assert Counter(canonical_op("tensorflow", o).canonical for o, _, _ in TENSORFLOW_DIGITS_OPS) == Counter(
        canonical_op("tensorflow", p).canonical for _, p, _ in TENSORFLOW_DIGITS_OPS
    )


@pytest.mark.parametrize("canonical", sorted(SAME_OPERATOR))
def test_every_framework_names_one_operator_with_one_canonical_type(canonical: str) -> None:
    names = SAME_OPERATOR[canonical]
    assert {canonical_op(framework, raw, input_shapes=shapes).canonical for framework, raw, shapes in names} == {
        canonical
    }, names
    assert canonical in CANONICAL_OP_TYPES


def test_dimension_agnostic_ops_take_their_dimensionality_from_the_input_rank() -> None:
    assert canonical_op("onnxruntime", "Conv", input_shapes="float[1,3,100] float[8,3,5]").canonical == "Conv1D"
    assert canonical_op("onnxruntime", "Conv", input_shapes="float[1,3,8,32,32] float[8,3,3,3,3]").canonical == "Conv3D"
    assert canonical_op("onnxruntime", "MaxPool", input_shapes="float[1,3,8,32,32]").canonical == "MaxPool3D"
    assert canonical_op("onnxruntime", "AveragePool", input_shapes="float[1,3,100]").canonical == "AvgPool1D"
    assert canonical_op("pytorch", "aten::convolution", input_shapes="float[2,3,16,16,16]").canonical == "Conv3D"
    # Without shapes (MXNet's profile has none) the 2-D name, TensorFlow's unmarked default.
    assert canonical_op("mxnet", "Convolution").canonical == "Conv2D"
    assert canonical_op("onnxruntime", "Conv").canonical == "Conv2D"
    # The framework's own dimensionality wins over the rule.
    assert canonical_op("pytorch", "aten::conv1d", input_shapes="float[1,3,8,8]").canonical == "Conv1D"


def test_fusions_keep_the_ops_they_name() -> None:
    assert canonical_op("pytorch", "aten::addmm") == OpType("MatMul", ("Add",))
    assert canonical_op("onnxruntime", "BiasGelu") == OpType("Gelu", ("Add",))
    # Ops the framework says it fused (TensorFlow's fused_ops attribute), canonical, after the implied ones.
    fused = canonical_op("tensorflow", "_MklNativeFusedConv2D", fused_ops=["BiasAdd", "Relu", "BiasAdd"])
    assert fused == OpType("Conv2D", ("BiasAdd", "Relu"))
    assert canonical_op("tensorflow", "_MklPadWithFusedConv2D", fused_ops=["BiasAdd"]) == OpType(
        "Conv2D", ("Pad", "BiasAdd")
    )
    # An MXNet engine operation that ran several ops.
    assert canonical_op("mxnet", "[Pooling,Flatten]") == OpType("Bulk", ("Pool", "Flatten"))


def test_unknown_ops_keep_their_name_without_the_framework_prefixes() -> None:
    assert canonical_op("tensorflow", "_MklNativeSomethingNew").canonical == "SomethingNew"
    assert canonical_op("tensorflow", "_MklSomethingNew").canonical == "SomethingNew"
    assert canonical_op("tensorflow", "_SomethingNew").canonical == "SomethingNew"
    assert canonical_op("tensorflow", "SomethingNew").canonical == "SomethingNew"
    assert canonical_op("pytorch", "aten::something_new").canonical == "something_new"
    assert canonical_op("pytorch", "custom::op").canonical == "custom::op"
    assert canonical_op("onnxruntime", "ReorderOutput").canonical == "ReorderOutput"
    assert canonical_op("mxnet", "Activation").canonical == "Activation"  # its act_type is not in the profile
    assert canonical_op("tensorflow", "_Mkl").canonical == "Mkl"  # a prefix alone is never stripped to nothing
    assert canonical_op("some-new-framework", "Conv").canonical == "Conv"


def test_every_table_entry_is_in_the_canonical_vocabulary() -> None:
    for framework, table in TABLES.items():
        for raw in table:
            assert canonical_op(framework, raw, input_shapes="float[1,2,3,4]").canonical in CANONICAL_OP_TYPES, raw


# --- framework_span: the one place the table is applied ---------------------------------------------------------


def test_framework_span_carries_the_canonical_type_beside_the_frameworks_own() -> None:
    tracer = Tracer("r", TraceLevel.FRAMEWORK)
    parent = (7, 1_000, 2_000)
    op = framework_span(
        tracer, parent, 1_100, 1_200, "_MklNativeFusedConv2D", {"kind": "op"}, framework="tensorflow",
        op="_MklNativeFusedConv2D", fused_ops=["BiasAdd", "Relu"],
    )  # fmt: skip
    assert op.attributes == {
        "kind": "op",
        "framework": "tensorflow",
        "op_type": "Conv2D",
        "framework_op": "_MklNativeFusedConv2D",
        "fused_ops": "BiasAdd,Relu",
    }
    assert (op.parent_id, op.level, op.name) == (7, TraceLevel.FRAMEWORK, "_MklNativeFusedConv2D")
    shaped = framework_span(
        tracer, parent, 1_100, 1_200, "Conv", {"kind": "node", "input_shapes": "float[1,3,100] float[8,3,5]"},
        framework="onnxruntime", op="Conv",
    )  # fmt: skip
    assert (shaped.attributes["op_type"], shaped.attributes["framework_op"]) == ("Conv1D", "Conv")
    assert "fused_ops" not in shaped.attributes
    call = framework_span(tracer, parent, 1_000, 1_900, "model_run", {"kind": "session"}, framework="onnxruntime")
    assert call.attributes == {"kind": "session", "framework": "onnxruntime"}  # a whole call is no operator


# --- breakdowns group by the canonical type ---------------------------------------------------------------------


def _query_spans(
    tracer: Tracer, parent: tuple[int, int, int], framework: str, ops: list[tuple[str, int]]
) -> list[Span]:
    spans, start_ns = [], parent[1]
    for op, depth in ops:
        attributes = {"kind": "op", "node": f"n{len(spans)}-{op}", "depth": depth}
        spans.append(
            framework_span(tracer, parent, start_ns, start_ns + 100, op, attributes, framework=framework, op=op)
        )
        start_ns += 100
    return spans


def test_breakdowns_of_onednn_and_plain_tensorflow_runs_are_the_same() -> None:
    onednn = Tracer("onednn", TraceLevel.FRAMEWORK)
    plain = Tracer("plain", TraceLevel.FRAMEWORK)
    parent = (1, 0, 10_000)
    a = _query_spans(onednn, parent, "tensorflow", [(o, 0) for o, _, _ in TENSORFLOW_DIGITS_OPS])
    b = _query_spans(plain, parent, "tensorflow", [(p, 0) for _, p, _ in TENSORFLOW_DIGITS_OPS])
    assert breakdown(a).op_types == breakdown(b).op_types
    conv = next(row for row in breakdown(a).op_types if row.op_type == "Conv2D")
    assert (conv.calls, conv.total_ns) == (2, 200)


def test_spans_recorded_before_op_types_were_canonical_are_mapped_when_read() -> None:
    old = Span(run_id="r", span_id=2, parent_id=1, name="_MklNativeFusedConv2D", level=TraceLevel.FRAMEWORK,
               start_ns=0, end_ns=50, attributes={"kind": "op", "framework": "tensorflow",
                                                  "op_type": "_MklNativeFusedConv2D", "node": "conv1"})  # fmt: skip
    assert [(g.name, g.op_type, g.calls) for g in groups_of([old])] == [("conv1", "Conv2D", 1)]


def test_only_the_ops_the_model_called_count_not_the_ops_they_called() -> None:
    """aten::conv2d > aten::convolution > aten::_convolution are one convolution, counted once."""
    tracer = Tracer("torch", TraceLevel.FRAMEWORK)
    ops = [("aten::conv2d", 0), ("aten::convolution", 1), ("aten::_convolution", 2), ("aten::linear", 0)]
    spans = _query_spans(tracer, (1, 0, 10_000), "pytorch", ops)
    result = breakdown(spans)
    assert [(row.op_type, row.calls, row.total_ns) for row in result.op_types] == [
        ("Conv2D", 1, 100),
        ("MatMul", 1, 100),
    ]
    assert result.layer_spans == 2


def _envelopes(run_id: str, spans: list[Span]) -> list[Envelope]:
    predict = Span(run_id=run_id, span_id=1, name="predict", level=TraceLevel.MODEL, start_ns=0, end_ns=10_000,
                   attributes={"seq": 0, "first_item": 0, "item_count": 1})  # fmt: skip
    records = [QueryRecord(seq=0, mode="performance", first_item=0, item_count=1, start_ns=0, end_ns=10_000)]
    return [
        fixtures.run_started(run_id),
        Envelope(
            message_id=message_id(run_id, "spans", 0),
            run_id=run_id,
            sequence=0,
            payload=SpanBatch(spans=[predict, *spans]),
        ),
        Envelope(
            message_id=message_id(run_id, "queries", 0), run_id=run_id, sequence=0, payload=QueryBatch(queries=records)
        ),
        fixtures.run_finished(run_id, span_count=len(spans) + 1, query_count=1),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_collectors_database_breakdown_groups_by_the_canonical_type(sqlite_url: str) -> None:
    """The collector aggregates in SQL: the same rules (canonical type, old spans mapped, depth 0 only) there."""
    tracer = Tracer("mixed", TraceLevel.FRAMEWORK)
    tracer.new_span_id()  # span 1 is the predict span
    parent = (1, 0, 10_000)
    spans = _query_spans(tracer, parent, "tensorflow", [("_MklNativeFusedConv2D", 0), ("_FusedConv2D", 0)])
    spans += _query_spans(tracer, parent, "pytorch", [("aten::conv2d", 0), ("aten::convolution", 1)])
    spans.append(
        Span(
            run_id="mixed",
            span_id=tracer.new_span_id(),
            parent_id=1,
            name="Gemm",
            level=TraceLevel.FRAMEWORK,
            start_ns=9_000,
            end_ns=9_400,
            attributes={"kind": "node", "framework": "onnxruntime", "op_type": "Gemm", "node": "/7/Gemm"},
        )
    )
    spans = [s.model_copy(update={"run_id": "mixed"}) for s in spans]
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        for envelope in _envelopes("mixed", spans):
            app.runtime.ingestor.ingest(envelope)
        response = await app.client.get("/api/v1/runs/mixed/analysis")
    assert response.status_code == 200, response.text
    op_types = [(o["op_type"], o["calls"], o["total_ns"]) for o in response.json()["layers"]["op_types"]]
    assert op_types == [("MatMul", 1, 400), ("Conv2D", 3, 300)]
    assert op_types == [(row.op_type, row.calls, row.total_ns) for row in breakdown(spans).op_types]


# --- live: TensorFlow with and without oneDNN -------------------------------------------------------------------

_PROFILE_TENSORFLOW = textwrap.dedent(
    f"""
    import json, sys
    from pathlib import Path
    import numpy as np
    from mlmodelscope.agent.profilers.tensorflow_xspace import read_profile
    from mlmodelscope.core.manifests import load_registry
    from mlmodelscope.core.predictor import PredictorOptions, load_predictor_class
    spec = load_registry([Path({str(ASSETS)!r})]).model("digits-cnn").spec
    predictor = load_predictor_class("tensorflow")(spec, PredictorOptions(profile_dir=Path(sys.argv[1])))
    predictor.load(Path({str(ASSETS / "artifacts" / "digits" / "digits_cnn.keras")!r}))
    x = np.zeros((4, 1, 8, 8), np.float32)
    for _ in range(5):
        predictor.predict([x])
    profiler = predictor.framework_profiler()
    profiler.start()
    for _ in range(3):
        predictor.predict([x])
    profiler.stop()
    print(json.dumps(sorted({{op.name for op in read_profile(profiler.profile_path).ops}})))
    """
)


def _tensorflow_ops(onednn: str, tmp_path_name: str) -> list[str]:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-c", _PROFILE_TENSORFLOW, tmp_path_name],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    names: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return names


@pytest.mark.slow
def test_tensorflow_with_and_without_onednn_reports_the_same_canonical_types(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    on = _tensorflow_ops("1", f"{tmp_path}/on")
    off = _tensorflow_ops("0", f"{tmp_path}/off")
    canonical_on = {canonical_op("tensorflow", name).canonical for name in on}
    canonical_off = {canonical_op("tensorflow", name).canonical for name in off}
    assert canonical_on == canonical_off, (on, off)
    assert {"Conv2D", "MaxPool", "Mean", "MatMul", "Transpose"} <= canonical_on, on
    assert not {name for name in off if name.startswith("_Mkl")}, off  # the plain build: no oneDNN names
