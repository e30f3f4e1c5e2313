"""The catalog of models, frameworks and datasets the collector can show and launch: the core's manifest registry
read from the configured asset folders (``assets`` setting), re-read on each request so new manifests appear.
Each dataset lists the models that fit it and, for the others, why not (``core.manifests.compatibility``)."""

from __future__ import annotations

import os
from pathlib import Path

from mlmodelscope.collector.analysis_models import (
    CatalogDataset,
    CatalogFramework,
    CatalogModel,
    CatalogResponse,
    RefusedModel,
)
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.manifests.compatibility import fit
from mlmodelscope.core.manifests.registry import Registry, load_registry
from mlmodelscope.core.manifests.resources import Dataset, Model


def asset_roots(settings: CollectorSettings) -> list[Path]:
    return [Path(part) for part in settings.assets.split(os.pathsep) if part.strip()]


def registry_of(settings: CollectorSettings) -> Registry:
    """The registry of the configured folders (empty when none is configured); ManifestError when one is broken."""
    return load_registry(asset_roots(settings))


def catalog(settings: CollectorSettings) -> CatalogResponse:
    registry = registry_of(settings)
    models = [registry.model(name) for name in sorted(registry.models)]
    frameworks = [registry.framework(name) for name in sorted(registry.frameworks)]
    datasets = [registry.dataset(name) for name in sorted(registry.datasets)]
    return CatalogResponse(
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
        datasets=[_dataset(d, [m for m in models if not m.spec.hidden]) for d in datasets],
    )


def _dataset(dataset: Dataset, models: list[Model]) -> CatalogDataset:
    """A dataset with the models that fit it and the reasons of those that do not."""
    verdicts = [(model.name, fit(model, dataset)) for model in models]
    return CatalogDataset(
        name=dataset.name,
        task=dataset.spec.task,
        size=dataset.spec.size,
        description=dataset.spec.description,
        kind=dataset.spec.source.kind,
        fitting_models=[name for name, verdict in verdicts if verdict.ok],
        refused_models=[RefusedModel(model=name, reasons=v.reasons) for name, v in verdicts if not v.ok],
    )
