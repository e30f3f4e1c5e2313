"""The artifact store: fetch model and dataset files by URI (path, file, http(s), s3), verify their sha256,
cache them by content, and unpack archives safely.

Import from the submodules (``store.ArtifactStore``, ``locations``, ``digests``, ``archive``, ``settings``): this
package re-exports nothing, so that a module needing only ``locations`` (the run contract, the operator's planning)
does not load httpx and minio through ``store`` (tests/core/test_import_hygiene.py holds the line).
"""
