"""The artifact store: fetch model and dataset files by URI (path, file, http(s), s3), verify their sha256,
cache them by content, and unpack archives safely."""

from mlmodelscope.core.artifacts.archive import ARCHIVE_SUFFIXES, archive_kind, safe_extract
from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.locations import SUPPORTED_SCHEMES
from mlmodelscope.core.artifacts.settings import DownloadSettings, S3Settings
from mlmodelscope.core.artifacts.store import ArtifactStore

__all__ = [
    "ARCHIVE_SUFFIXES",
    "SUPPORTED_SCHEMES",
    "ArtifactStore",
    "DownloadSettings",
    "S3Settings",
    "archive_kind",
    "safe_extract",
    "sha256_of_file",
]
