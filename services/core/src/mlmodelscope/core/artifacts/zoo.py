"""Zoo artifacts (``zoo:<name>[?seed=N]``): built on first use into the cache, reused afterwards.

The model zoo (ResNet-18/50, MobileNetV2, a transformer encoder) holds seeded random weights for performance
work. Nothing is downloaded and nothing is committed: each artifact format has a builder, registered by the agent
in the ``mlmodelscope.zoo_builders`` entry-point group (``onnx = "...torch_models:build_onnx"``), that writes the
model in that format. The core finds builders the way it finds predictors, by entry point, so it never imports a
framework or the agent; a builder runs in the agent's own runtime, where its framework is installed.

Layout and atomicity::

    <cache_dir>/zoo/<name>/<format>/seed-<N>/
        build.json        what was built: model, format, seed, the loadable path (relative) and its sha256
        artifact/         the builder's destination folder; the predictor loads a file or folder inside it
    <cache_dir>/zoo/<name>/<format>/.seed-<N>.<random>.partial/   a build in progress

A build happens in a fresh temporary sibling folder which is renamed into place only once ``build.json`` is
written, so the presence of ``seed-<N>/`` proves the build completed. Two processes building the same artifact
each build their own temporary folder; the first rename wins and the loser discards its copy and uses the
winner's. A failed build removes its temporary folder (and the empty folders made for it), leaving nothing.
Every use of a cached build re-hashes its artifact against ``build.json``, so a file damaged after its build is
refused (delete the folder to rebuild) instead of being run under the sha256 of what was built.

The sha256 of a built file is the file's; that of a built folder is the sha256 of its listing, one line
``<sha256 of file>  <relative path>`` per file in sorted order (what ``sha256sum`` prints).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlmodelscope.core.artifacts.bundles import SidecarFile
from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import ArtifactError, FrameworkUnavailableError, MLModelScopeError
from mlmodelscope.core.manifests.artifact_spec import Artifact, ZooRef

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mlmodelscope.zoo_builders"
BUILD_RECORD = "build.json"
ARTIFACT_FOLDER = "artifact"
PARTIAL_SUFFIX = ".partial"
STALE_PARTIAL_AGE_S = 24 * 3600.0


class ZooBuilder(Protocol):
    """Writes zoo model ``model`` with seeded random weights into the empty folder ``destination``.

    Returns the path the predictor loads (a file or folder inside ``destination``, or ``destination`` itself);
    raises ``ModelLoadError`` naming the known models for an unknown name.
    """

    def __call__(self, model: str, destination: Path, *, seed: int) -> Path: ...


class BuildRecord(BaseModel):
    """``build.json``: what a zoo build produced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    format: str
    seed: int = Field(ge=0)
    path: str = Field(min_length=1, description="The loadable file or folder, relative to the build folder.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    builder: str = Field(description="The entry point that built it, module:function.")
    build_s: float = Field(ge=0, description="How long the build took.")


@dataclass(frozen=True)
class FetchedArtifact:
    """A model artifact on local disk, and the sha256 recorded for it in the result."""

    path: Path
    sha256: str


def fetch_artifact(store: ArtifactStore, artifact: Artifact, *, base_dir: Path | None) -> FetchedArtifact:
    """The local path of ``artifact``: fetched through the store (unpacked, with its sidecars beside it, as
    declared), or built for a ``zoo:`` URI."""
    zoo = artifact.zoo
    if zoo is not None:
        return build_zoo_artifact(store.cache_dir, zoo, artifact.format)
    assert artifact.sha256 is not None  # Artifact requires it for every other URI
    if artifact.archive:
        path = store.fetch_and_extract(artifact.uri, artifact.sha256, base_dir=base_dir, entrypoint=artifact.entrypoint)
    elif artifact.sidecars:
        sidecars = [SidecarFile(uri=s.uri, sha256=s.sha256, name=s.name) for s in artifact.sidecars]
        path = store.fetch_with_sidecars(artifact.uri, artifact.sha256, sidecars, base_dir=base_dir)
    else:
        path = store.fetch(artifact.uri, artifact.sha256, base_dir=base_dir)
    return FetchedArtifact(path=path, sha256=artifact.sha256)


def zoo_build_dir(cache_dir: Path, zoo: ZooRef, artifact_format: str) -> Path:
    """Where the build of ``zoo`` in ``artifact_format`` lives once complete."""
    return cache_dir / "zoo" / zoo.name / artifact_format / f"seed-{zoo.seed}"


def available_builders() -> list[str]:
    """The artifact formats that have a zoo builder installed in this runtime."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_zoo_builder(artifact_format: str) -> tuple[ZooBuilder, str]:
    """The builder registered for ``artifact_format`` and its ``module:function``; FrameworkUnavailableError if none."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == artifact_format]
    if not matches:
        known = ", ".join(available_builders()) or "none"
        raise FrameworkUnavailableError(
            f"no zoo builder for artifact format '{artifact_format}' is installed in this runtime "
            f"(installed: {known}).",
            hint="Zoo models are built by the agent: install `mlmodelscope-agent` with the framework's extra "
            "(e.g. `pip install 'mlmodelscope-agent[pytorch]'` for onnx/torchscript/torch_export) in the runtime "
            "that evaluates the model.",
        )
    entry = matches[0]
    try:
        loaded = entry.load()
    except ImportError as e:
        raise FrameworkUnavailableError(
            f"the zoo builder for format '{artifact_format}' ({entry.value}) cannot be imported: {e}.",
            hint="Install the framework it needs into this runtime, e.g. `pip install 'mlmodelscope-agent[pytorch]'`.",
        ) from e
    if not callable(loaded):
        raise FrameworkUnavailableError(
            f"the zoo builder entry point '{artifact_format}' ({entry.value}) is not a function.",
            hint="Fix the entry point in the agent's pyproject.toml.",
        )
    builder: ZooBuilder = loaded
    return builder, entry.value


def build_zoo_artifact(
    cache_dir: Path,
    zoo: ZooRef,
    artifact_format: str,
    *,
    builder: ZooBuilder | None = None,
) -> FetchedArtifact:
    """The built zoo artifact in the cache, building it first (atomically) when it is not there yet.

    ``builder`` replaces the entry-point lookup (``load_zoo_builder``), e.g. in tests.
    """
    final = zoo_build_dir(cache_dir, zoo, artifact_format)
    if final.is_dir():
        return _read_build(final)
    if builder is None:
        build, builder_name = load_zoo_builder(artifact_format)
    else:
        build = builder
        qualname = getattr(builder, "__qualname__", type(builder).__name__)
        builder_name = f"{getattr(builder, '__module__', '?')}:{qualname}"
    parent = final.parent
    made = _mkdirs(parent, stop=cache_dir)
    _sweep_stale_partials(parent)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{final.name}.", suffix=PARTIAL_SUFFIX))
    try:
        record = _build_into(staging, build, builder_name, zoo, artifact_format)
        try:
            staging.rename(final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise
            # Another process finished the same build first: its copy is as good as ours.
            logger.info("zoo artifact %s was built concurrently; using the other build", final)
            shutil.rmtree(staging, ignore_errors=True)
            return _read_build(final)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty: another build may be using it
        if isinstance(e, OSError):
            raise ArtifactError(
                f"zoo:{zoo.name} ({artifact_format}): cannot write the build into the cache at {cache_dir}: {e}.",
                hint="Free disk space, or point the cache at a writable folder (MLMODELSCOPE_CACHE_DIR).",
            ) from e
        raise
    logger.info("built zoo:%s?seed=%d (%s) in %.1f s: %s", zoo.name, zoo.seed, artifact_format, record.build_s, final)
    return FetchedArtifact(path=final / record.path, sha256=record.sha256)


def _build_into(staging: Path, build: ZooBuilder, builder_name: str, zoo: ZooRef, artifact_format: str) -> BuildRecord:
    destination = staging / ARTIFACT_FOLDER
    destination.mkdir()
    started = time.perf_counter()
    try:
        built = Path(build(zoo.name, destination, seed=zoo.seed))
    except MLModelScopeError:
        raise
    except Exception as e:  # a framework's own exception: keep it as the cause
        raise ArtifactError(
            f"building zoo:{zoo.name}?seed={zoo.seed} in format {artifact_format} with {builder_name} failed: {e}",
            hint="This is a bug in the zoo builder or a broken framework installation; the traceback has the cause.",
        ) from e
    elapsed_s = time.perf_counter() - started
    resolved, root = built.resolve(), destination.resolve()
    if not (resolved == root or root in resolved.parents) or not resolved.exists():
        raise ArtifactError(
            f"the zoo builder {builder_name} returned {built} for zoo:{zoo.name}, which is not a file or folder "
            f"inside its destination {destination}.",
            hint="A zoo builder must write into the folder it is given and return the path the predictor loads.",
        )
    record = BuildRecord(
        model=zoo.name,
        format=artifact_format,
        seed=zoo.seed,
        path=resolved.relative_to(staging.resolve()).as_posix(),
        sha256=tree_sha256(resolved),
        builder=builder_name,
        build_s=elapsed_s,
    )
    (staging / BUILD_RECORD).write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return record


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's ``sha256sum``-style listing (sorted relative paths)."""
    if path.is_file():
        return sha256_of_file(path)
    lines = [
        f"{sha256_of_file(file)}  {file.relative_to(path).as_posix()}\n"
        for file in sorted(p for p in path.rglob("*") if p.is_file())
    ]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _read_build(folder: Path) -> FetchedArtifact:
    record_path = folder / BUILD_RECORD
    try:
        record = BuildRecord.model_validate(json.loads(record_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as e:
        raise ArtifactError(
            f"the cached zoo build {folder} has no readable {BUILD_RECORD}: {e}.",
            hint=f"Delete {folder}; the next run builds it again.",
        ) from e
    path = folder / record.path
    if not path.exists():
        raise ArtifactError(
            f"the cached zoo build {folder} lacks {record.path}, which its {BUILD_RECORD} names.",
            hint=f"Delete {folder}; the next run builds it again.",
        )
    actual = tree_sha256(path)
    if actual != record.sha256:
        # A cached file changed after its build (disk damage, an edit): the result would name a model it did not run.
        raise ArtifactError(
            f"the cached zoo build {folder} is damaged: {record.path} has sha256 {actual}, not the {record.sha256} "
            f"its {BUILD_RECORD} recorded when it was built.",
            hint=f"Delete {folder}; the next run builds it again.",
        )
    return FetchedArtifact(path=path, sha256=record.sha256)


def _mkdirs(folder: Path, *, stop: Path) -> list[Path]:
    """Create ``folder`` and its missing parents below ``stop``; the ones created, outermost first."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != stop and current != current.parent:
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _sweep_stale_partials(parent: Path, *, max_age_s: float = STALE_PARTIAL_AGE_S) -> None:
    """Remove build folders that killed runs left behind (young ones may be a build running right now)."""
    cutoff = time.time() - max_age_s
    for leftover in parent.glob(f".*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):
            if leftover.lstat().st_mtime < cutoff:
                shutil.rmtree(leftover)
