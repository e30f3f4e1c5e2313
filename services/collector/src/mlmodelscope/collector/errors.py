"""The collector's errors, under the core's ``MLModelScopeError`` so the CLI prints them the same way.

CollectorError
├── DatabaseUnavailableError   (transient) the database did not answer: the API says 503, the consumer naks
├── StoredDataError            the database refused a statement because of the data (a value out of range, a
│                              constraint): not transient and never reported as "unavailable"; a message that
│                              causes it is dead-lettered after its bounded redeliveries
├── MigrationError             the schema could not be brought to the current version
├── RejectedMessageError       a message the collector will never store (malformed, too large, misaddressed, a
│                              rewrite of a finished run): dead-lettered with its reason, logged + counted
├── UnknownRunError            no run with that id: 404
└── LaunchError                an evaluation the launcher cannot start (not configured, unknown model): a 4xx
    ├── LaunchNotConfiguredError  the collector has no launcher settings or no NATS URL: 409
    └── KubernetesApiError     the Kubernetes API did not answer or refused the collector's token: 502
"""

from __future__ import annotations

from typing import Literal

from mlmodelscope.core.errors import MLModelScopeError, TransientError

RejectReason = Literal[
    "too_large",  # over MAX_MESSAGE_BYTES
    "malformed",  # not a valid envelope (JSON, schema, a value out of what the database holds)
    "invalid",  # breaks a storage rule the schema cannot express (a span of another run, end before start)
    "misaddressed",  # its message id or subject names another run, kind or sequence
    "run_already_finished",  # a second run_finished: a finished run is never rewritten
    "insert_failed",  # a poison message: storing it failed on every one of its bounded deliveries
]


class CollectorError(MLModelScopeError):
    """Base of the collector's errors."""


class DatabaseUnavailableError(CollectorError, TransientError):
    """The database could not be reached or dropped the connection; retrying later may succeed."""


class StoredDataError(CollectorError):
    """The database refused a statement because of the data it holds or was given; retrying will not help."""


class MigrationError(CollectorError):
    """The database schema could not be migrated (or is newer than this collector)."""


class RejectedMessageError(CollectorError):
    """A message that will never be stored; ``reason`` is the metric label."""

    def __init__(self, message: str, *, reason: RejectReason, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.reason: RejectReason = reason


class UnknownRunError(CollectorError):
    """No run with this id is stored: the API answers 404."""


class LaunchError(CollectorError):
    """An evaluation request the launcher refuses (unknown model or framework, bad combination): 422."""


class LaunchNotConfiguredError(LaunchError):
    """The collector is not configured to launch evaluations (no assets, cache, runs folder or NATS URL): 409."""


class KubernetesApiError(LaunchError):
    """The Kubernetes API could not be reached or refused the collector (token, RBAC): 502."""
