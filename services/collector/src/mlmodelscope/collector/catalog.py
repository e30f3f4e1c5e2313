"""The catalog of models, frameworks and datasets the collector can show and launch: the core's manifest registry
read from the configured asset folders (``assets`` setting), re-read on each request so new manifests appear."""

from __future__ import annotations

import os
from pathlib import Path

from mlmodelscope.collector.analysis_models import Catalog, CatalogDataset, CatalogFramework, CatalogModel
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.manifests.registry import Registry, load_registry


def asset_roots(settings: CollectorSettings) -> list[Path]:
    return [Path(part) for part in settings.assets.split(os.pathsep) if part.strip()]


def registry_of(settings: CollectorSettings) -> Registry:
    """The registry of the configured folders (empty when none is configured); ManifestError when one is broken."""
    return load_registry(asset_roots(settings))


def catalog(settings: CollectorSettings) -> Catalog:
    registry = registry_of(settings)
    models = [registry.model(name) for name in sorted(registry.models)]
    frameworks = [registry.framework(name) for name in sorted(registry.frameworks)]
    datasets = [registry.dataset(name) for name in sorted(registry.datasets)]
    return Catalog(
        assets=[str(root) for root in asset_roots(settings)],
        models=[
            CatalogModel(
                name=m.name,
                task=m.spec.task,
                framework=m.spec.framework.name,
                version=m.spec.version,
                dataset=m.spec.dataset,
                formats=[a.format for a in m.spec.artifacts],
                description=m.spec.description,
            )
            for m in models
            if not m.spec.hidden
        ],
        frameworks=[
            CatalogFramework(
                name=f.name,
                version=f.spec.version,
                formats=list(f.spec.formats),
                accelerators=list(f.spec.accelerators),
                description=f.spec.description,
            )
            for f in frameworks
        ],
        datasets=[
            CatalogDataset(name=d.name, task=d.spec.task, size=d.spec.size, description=d.spec.description)
            for d in datasets
        ],
    )
