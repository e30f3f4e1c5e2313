"""What every CLI command needs: where the assets and the artifact cache are, built from flags and environment.

Settings are resolved when a command runs (never at import time): flags win over environment variables, which win
over defaults. The artifact store is built on first use: it imports the HTTP and S3 clients, which listing the
registry (``models list``) never needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.manifests.registry import ASSETS_ENV, Registry, asset_roots, load_registry

CACHE_ENV = "MLMODELSCOPE_CACHE_DIR"
DEFAULT_ASSETS = Path("assets")

if TYPE_CHECKING:
    from mlmodelscope.core.artifacts.store import ArtifactStore


@dataclass(frozen=True)
class CliContext:
    registry: Registry
    asset_roots: list[Path]
    cache_dir: Path
    environ: Mapping[str, str] = field(repr=False)

    @cached_property
    def store(self) -> ArtifactStore:
        """The artifact cache under ``cache_dir``, with S3 and download settings from ``environ``."""
        from mlmodelscope.core.artifacts.settings import DownloadSettings, S3Settings
        from mlmodelscope.core.artifacts.store import ArtifactStore

        env = self.environ
        return ArtifactStore(self.cache_dir, s3=S3Settings.from_env(env), downloads=DownloadSettings.from_env(env))


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "mlmodelscope"


def build_context(
    assets: Sequence[Path], cache_dir: Path | None, environ: Mapping[str, str] | None = None
) -> CliContext:
    env = os.environ if environ is None else environ
    defaults = [DEFAULT_ASSETS] if DEFAULT_ASSETS.is_dir() else []
    roots = asset_roots(defaults, env.get(ASSETS_ENV), assets)
    if not roots:
        raise ManifestError(
            "no assets folder: ./assets does not exist and neither --assets nor MLMODELSCOPE_ASSETS is set.",
            hint="Run from the repository root, or pass --assets PATH (a folder with models/, frameworks/, datasets/).",
        )
    registry = load_registry(roots)
    return CliContext(
        registry=registry,
        asset_roots=[root.resolve() for root in roots],
        cache_dir=cache_dir or default_cache_dir(env),
        environ=env,
    )
