"""Across-stack tracing: spans at MLModelScope's trace levels, recorded cheaply and exported as one timeline."""

from mlmodelscope.core.tracing.chrome import to_chrome_trace, validate_chrome_trace, write_chrome_trace
from mlmodelscope.core.tracing.framework import (
    FrameworkProfiler,
    ModelSpanTimes,
    clip_into,
    model_span_times,
    shift_into,
)
from mlmodelscope.core.tracing.hardware import HardwareSampler
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import DISABLED_SPAN, ModelRow, Tracer

__all__ = [
    "DISABLED_SPAN",
    "FrameworkProfiler",
    "HardwareSampler",
    "ModelRow",
    "ModelSpanTimes",
    "Span",
    "TraceLevel",
    "Tracer",
    "clip_into",
    "model_span_times",
    "shift_into",
    "to_chrome_trace",
    "validate_chrome_trace",
    "write_chrome_trace",
]
