"""What every CLI command needs: where the assets and the artifact cache are, built from flags and environment.

Settings are resolved when a command runs (never at import time): flags win over environment variables, which win
over defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlmodelscope.core.artifacts import ArtifactStore, DownloadSettings, S3Settings
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.manifests.registry import ASSETS_ENV, Registry, asset_roots, load_registry

CACHE_ENV = "MLMODELSCOPE_CACHE_DIR"
DEFAULT_ASSETS = Path("assets")


@dataclass(frozen=True)
class CliContext:
    registry: Registry
    store: ArtifactStore
    asset_roots: list[Path]


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
    store = ArtifactStore(
        cache_dir or default_cache_dir(env), s3=S3Settings.from_env(env), downloads=DownloadSettings.from_env(env)
    )
    return CliContext(registry=registry, store=store, asset_roots=[root.resolve() for root in roots])
