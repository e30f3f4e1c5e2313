"""The core's error hierarchy.

Every failure a user can cause or meet (a bad manifest, a missing artifact, a dead S3 endpoint, an unknown
framework) is raised as one of these types, never as a bare ``ValueError`` or a library's own exception. The CLI
turns any ``MLModelScopeError`` into a one-paragraph message and a non-zero exit code, with no traceback, so the
message itself must say *what* went wrong, *where*, and *how to fix it*: the ``hint`` carries the last part.

Retry behaviour is expressed by the type, not by string matching: ``TransientError`` subclasses are worth retrying
(an unreachable store may come back), every other error is permanent (a checksum mismatch stays a mismatch).
Library exceptions are always kept as the cause (``raise ... from e``).

    MLModelScopeError
    ├── ManifestError                 a resource document is malformed or violates its schema
    ├── RegistryError
    │   ├── UnknownResourceError      no model / framework / dataset of that name
    │   └── IncompatibleFrameworkError   the framework's version or formats do not fit the model
    ├── ArtifactError
    │   ├── ArtifactNotFoundError     the object / file / URL does not exist
    │   ├── ChecksumMismatchError     the bytes are not the ones the manifest pins
    │   ├── UnsafeArchiveError        an archive member would escape the extraction folder
    │   ├── UnsupportedUriError       a scheme the store does not know
    │   └── StoreUnreachableError     (transient) the store did not answer
    ├── ProcessingError               a pre/post-processing step cannot be applied to this input
    ├── PredictorError
    │   ├── FrameworkUnavailableError the framework library is not installed in this runtime
    │   ├── DeviceUnavailableError    the requested device (gpu, fpga) is not there
    │   └── ModelLoadError            the framework refused the artifact
    └── EvaluationError               settings that cannot run, or a run that failed
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class MLModelScopeError(Exception):
    """Base of every error MLModelScope raises on purpose.

    ``message`` says what happened and where; ``hint`` says how to fix it (may be empty).
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class TransientError(MLModelScopeError):
    """A failure that may go away by itself; callers may retry with backoff."""


class ManifestError(MLModelScopeError):
    """A resource document (Model, Framework, Dataset) is malformed or invalid."""


class RegistryError(MLModelScopeError):
    """A lookup in the asset registry failed."""


class UnknownResourceError(RegistryError):
    """No resource of the requested kind and name is registered."""


class IncompatibleFrameworkError(RegistryError):
    """The framework cannot run the model: version constraint or artifact format mismatch."""


class ArtifactError(MLModelScopeError):
    """An artifact could not be fetched, verified or unpacked."""


class ArtifactNotFoundError(ArtifactError):
    """The artifact's URI names nothing that exists."""


class ChecksumMismatchError(ArtifactError):
    """The fetched bytes do not have the sha256 the manifest pins."""


class UnsafeArchiveError(ArtifactError):
    """An archive member would be written outside the extraction folder (or is a link/device)."""


class UnsupportedUriError(ArtifactError):
    """The URI scheme is not one the artifact store supports."""


class StoreUnreachableError(ArtifactError, TransientError):
    """The remote store (HTTP server, S3 endpoint) did not answer."""


class DatasetError(MLModelScopeError):
    """A dataset's files cannot be read or decoded, or do not match its manifest (which file, why, how to fix)."""


class ProcessingError(MLModelScopeError):
    """A declared pre- or post-processing step cannot be applied to the given data."""


class PredictorError(MLModelScopeError):
    """A predictor failed to load or run a model."""


class FrameworkUnavailableError(PredictorError):
    """The framework library is not importable in this runtime."""


class DeviceUnavailableError(PredictorError):
    """The requested device is not available to the framework here."""


class ModelLoadError(PredictorError):
    """The framework could not load the artifact."""


class EvaluationError(MLModelScopeError):
    """The evaluation cannot run with these settings, or it failed while running."""


@contextmanager
def naming_the_manifest(where: str) -> Iterator[None]:
    """Prefix artifact errors with the manifest that named the artifact, keeping type, hint and cause.

    The agent (while fetching) and the CLI (checking before anything starts) name the same manifest the same way.
    """
    try:
        yield
    except ArtifactError as e:
        raise type(e)(f"{where}: {e.message}", hint=e.hint) from e
