"""Across-stack tracing: spans at MLModelScope's trace levels, recorded cheaply and exported as one timeline."""

from mlmodelscope.core.tracing.spans import Span, TraceLevel

__all__ = ["Span", "TraceLevel"]
