"""The bus's error: messages of a run that could not be delivered to NATS.

Its own module so that everything that publishes (the publisher, its first connect, the span-column batching)
raises the one type the agent reports, without importing the publisher itself.
"""

from __future__ import annotations

from mlmodelscope.core.errors import MLModelScopeError


class PublishError(MLModelScopeError):
    """Messages of a run could not be delivered to NATS."""
