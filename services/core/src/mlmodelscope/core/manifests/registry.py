"""The asset registry: every Model, Framework and Dataset known to this run, looked up by name.

Locally the registry is built from ``assets/`` plus extra folders (``--assets`` or ``MLMODELSCOPE_ASSETS``); an
agent builds one in memory from the resources its run spec carries (``ResolvedResources.registry`` in the run
contract), so it evaluates exactly what was resolved where the run was planned. Resolution of a (model,
framework) pair checks the model's PEP 440 framework constraint and picks the artifact format the framework
prefers, the way KServe matches a model's format to a serving runtime.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from mlmodelscope.core.errors import IncompatibleFrameworkError, ManifestError, UnknownResourceError
from mlmodelscope.core.manifests.artifact_spec import Artifact
from mlmodelscope.core.manifests.canonical import canonical_spec, spec_sha256
from mlmodelscope.core.manifests.loading import LoadedResource, iter_manifest_files, load_file
from mlmodelscope.core.manifests.resources import Dataset, Framework, Model

ASSETS_ENV = "MLMODELSCOPE_ASSETS"
NULL_PREDICTOR = "null"


@dataclass(frozen=True)
class Resolution:
    """A model and the framework that will run it, with the artifact chosen for that framework; ``model_where``
    names the Model's manifest (or run spec origin) in messages, ``model_dir`` is what its relative URIs resolve
    against (None: it has none)."""

    model: Model
    framework: Framework
    artifact: Artifact
    model_where: str
    model_dir: Path | None


@dataclass
class Registry:
    models: dict[str, LoadedResource] = field(default_factory=dict)
    frameworks: dict[str, LoadedResource] = field(default_factory=dict)
    datasets: dict[str, LoadedResource] = field(default_factory=dict)

    def add(self, loaded: LoadedResource) -> None:
        resource = loaded.resource
        table = {"Model": self.models, "Framework": self.frameworks, "Dataset": self.datasets}[resource.kind]
        previous = table.get(resource.name)
        if previous is not None:
            raise ManifestError(
                f"{loaded.where}: {resource.kind} '{resource.name}' is already defined in {previous.where}.",
                hint="Rename one of them or remove the duplicate folder from --assets.",
            )
        table[resource.name] = loaded

    # --- lookups -------------------------------------------------------------------------------------------

    def model(self, name: str) -> Model:
        model = self.entry("Model", name).resource
        assert isinstance(model, Model)
        return model

    def framework(self, name: str) -> Framework:
        framework = self.entry("Framework", name).resource
        assert isinstance(framework, Framework)
        return framework

    def dataset(self, name: str) -> Dataset:
        dataset = self.entry("Dataset", name).resource
        assert isinstance(dataset, Dataset)
        return dataset

    def entry(self, kind: str, name: str) -> LoadedResource:
        """The resource ``name`` of ``kind`` with where it came from (UnknownResourceError naming the known ones)."""
        table, what, command = {
            "Model": (self.models, "model", "mlmodelscope models list"),
            "Framework": (self.frameworks, "framework", "mlmodelscope frameworks list"),
            "Dataset": (self.datasets, "dataset", "mlmodelscope datasets list"),
        }[kind]
        return _lookup(table, name, what, command)

    def source_of(self, kind: str, name: str) -> Path:
        """The manifest file of a resource loaded from the asset folders."""
        loaded = self.entry(kind, name)
        if loaded.path is None:
            raise ManifestError(f"{kind} '{name}' came from {loaded.where}, not from a manifest file.")
        return loaded.path

    def spec_sha256(self, kind: str, name: str) -> str:
        """sha256 of the resource's canonical spec: the one its run spec recorded, else computed."""
        loaded = self.entry(kind, name)
        return loaded.sha256 or spec_sha256(canonical_spec(loaded.resource))

    def agent_interpreter(self, framework: str, default: str) -> str:
        """The Python that runs ``framework``'s agents: its ``spec.runtime.python`` or ``default``.

        A relative path is relative to the Framework manifest's folder (like artifact URIs), so a checkout's
        ``.venv-mxnet`` is found wherever the repository lives; a bare name is looked up on PATH.
        """
        python = self.framework(framework).spec.runtime.python
        if not python:
            return default
        loaded = self.entry("Framework", framework)
        manifest, folder = loaded.where, loaded.folder or Path.cwd()
        path = Path(python) if Path(python).is_absolute() or "/" not in python else folder / python
        resolved = shutil.which(str(path)) if "/" not in python else (str(path) if os.access(path, os.X_OK) else None)
        if resolved is None:
            raise ManifestError(
                f"framework '{framework}' runs in the interpreter {path} (spec.runtime.python in {manifest}), "
                "which does not exist or is not executable.",
                hint="Run `make setup` (it creates the framework environments), or fix spec.runtime.python.",
            )
        return resolved

    def resolve(self, model_name: str, framework_name: str) -> Resolution:
        """Check that the framework can run the model and choose the artifact."""
        model = self.model(model_name)
        framework = self.framework(framework_name)
        constraint = model.spec.framework
        # Any framework that runs one of the model's artifact formats may evaluate it (KServe's format matching);
        # the version constraint belongs to the framework the model names. The null predictor runs any model
        # (it answers without computing): it measures the harness itself.
        if framework.spec.predictor != NULL_PREDICTOR and constraint.name == framework.name:
            check_version(framework.spec.version, constraint.version, what=f"framework '{framework.name}'", model=model)
        artifact = model.spec.artifact_for(framework.spec.formats)
        if artifact is None:
            have = ", ".join(a.format for a in model.spec.artifacts)
            raise IncompatibleFrameworkError(
                f"model '{model.name}' has artifacts in {have}; framework '{framework.name}' runs "
                f"{', '.join(framework.spec.formats)}.",
                hint="Add an artifact in a supported format to the Model, or choose another framework.",
            )
        loaded = self.entry("Model", model.name)
        return Resolution(model, framework, artifact, loaded.where, loaded.folder)

    def checksums(self) -> dict[str, str]:
        """For the result's environment record: the sha256 of every manifest file keyed by its path, and of every
        spec a run spec carried (its recorded spec sha256, nothing read from disk) keyed by '<Kind>/<name> from
        <origin>' (in a cluster the three share one origin, 'cluster:<namespace>')."""
        entries = [r for table in (self.models, self.frameworks, self.datasets) for r in table.values()]
        paths = {r.path for r in entries if r.path is not None}
        recorded = {f"{r.resource.kind}/{r.resource.name} from {r.where}": r.sha256 for r in entries if r.path is None}
        files = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths)}
        return {**files, **dict(sorted(recorded.items()))}


def check_version(version: str, specifier: str, *, what: str, model: Model) -> None:
    """Raise IncompatibleFrameworkError when ``version`` does not satisfy the model's constraint."""
    if not specifier:
        return
    try:
        parsed = Version(version)
    except InvalidVersion as e:
        raise IncompatibleFrameworkError(f"{what} has version '{version}', which is not a PEP 440 version.") from e
    if not model.spec.framework.specifier.contains(parsed, prereleases=True):
        raise IncompatibleFrameworkError(
            f"{what} version {version} does not satisfy model '{model.name}''s constraint '{specifier}'.",
            hint="Install a matching framework version, or relax spec.framework.version in the Model manifest.",
        )


def _lookup(table: dict[str, LoadedResource], name: str, kind: str, list_command: str) -> LoadedResource:
    found = table.get(name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, list(table), n=1)
    suggestion = f" Did you mean '{close[0]}'?" if close else ""
    known = ", ".join(sorted(table)) or "none"
    raise UnknownResourceError(
        f"unknown {kind} '{name}' (known: {known}).{suggestion}",
        hint=f"See `{list_command}`, or add a folder of manifests with --assets.",
    )


def load_registry(roots: Sequence[Path]) -> Registry:
    """Load every manifest under the given asset roots into one registry."""
    registry = Registry()
    for root in roots:
        if not root.is_dir():
            raise ManifestError(f"{root}: assets folder does not exist.", hint="Check --assets / MLMODELSCOPE_ASSETS.")
        for path in iter_manifest_files(root):
            for loaded in load_file(path):
                registry.add(loaded)
    return registry


def asset_roots(defaults: Iterable[Path], environ_value: str | None, extra: Iterable[Path]) -> list[Path]:
    """Default folders, then folders from the environment (os.pathsep-separated), then flags; duplicates dropped."""
    roots = list(defaults)
    if environ_value:
        roots += [Path(p) for p in environ_value.split(os.pathsep) if p]
    roots += list(extra)
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in (r.resolve() for r in unique):
            unique.append(root)
    return unique
