"""Asset resources (Model, Framework, Dataset): schema, YAML loading and the registry."""

from mlmodelscope.core.manifests.artifact_spec import Artifact
from mlmodelscope.core.manifests.fields import API_VERSION
from mlmodelscope.core.manifests.loading import LoadedResource, load_file, parse_document
from mlmodelscope.core.manifests.registry import Registry, Resolution, asset_roots, load_registry
from mlmodelscope.core.manifests.resources import Dataset, Framework, Model

__all__ = [
    "API_VERSION",
    "Artifact",
    "Dataset",
    "Framework",
    "LoadedResource",
    "Model",
    "Registry",
    "Resolution",
    "asset_roots",
    "load_file",
    "load_registry",
    "parse_document",
]
