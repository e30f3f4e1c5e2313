"""The operator's error hierarchy; the type says what the handlers do about it.

    OperatorError (core's MLModelScopeError)
    ├── UnsatisfiableError          the spec cannot be run as written: the Evaluation ends Failed with this
    │                               message (no retry, no crash loop) until the user changes the spec
    ├── KubeApiError                the Kubernetes API refused a request (4xx other than 404/409): kopf.PermanentError;
    │                               a refused Job create is the run's message instead (Pending, retried each pass)
    │   └── KubeUnavailableError    (transient) 5xx, 429, timeouts, connection errors: kopf.TemporaryError
    └── ResultsUnavailableError   (transient) the collector did not answer: the run waits, the timer retries

The library's exception is always kept as the cause (``raise ... from e``).
"""

from __future__ import annotations

from mlmodelscope.core.errors import MLModelScopeError, TransientError


class OperatorError(MLModelScopeError):
    """Base of every error the operator raises on purpose."""


class UnsatisfiableError(OperatorError):
    """The Evaluation names something that does not exist, or asks for what its resources cannot provide."""


class KubeApiError(OperatorError):
    """The API server answered a request with an error status."""

    def __init__(self, message: str, *, status: int, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status


class KubeUnavailableError(KubeApiError, TransientError):
    """The API server did not answer, or answered that it cannot now (5xx, 429)."""


class ResultsUnavailableError(OperatorError, TransientError):
    """The collector's REST API did not answer; results are read again on the next reconcile."""
