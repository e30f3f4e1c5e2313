"""The analysis layer's errors: input that cannot be analysed (too few queries, runs that cannot be compared).

AnalysisError (MLModelScopeError)
└── NotEnoughDataError    a statistic needs more samples than the run has
"""

from __future__ import annotations

from mlmodelscope.core.errors import MLModelScopeError


class AnalysisError(MLModelScopeError):
    """Base of the analysis errors: the data given cannot be analysed as asked."""


class NotEnoughDataError(AnalysisError):
    """A statistic needs more per-query records than the run has (e.g. a run without a performance phase)."""
