"""From an Evaluation and the cluster's Model/Framework/Dataset resources to the list of runs, one Job each.

Pure functions, no I/O: the matrix models x frameworks x targets (x repeats) x batch sizes is expanded in a fixed
order, and everything a Job needs is decided here (image, device resource and count, requests and limits, placement,
settings, names, and the resolved resources the run evaluates, with the sha256 of each spec). Whatever cannot be
satisfied (an unknown model, no image for ppc64le + gpu, a batch larger than the dataset, inconsistent settings)
is collected and raised as one ``UnsatisfiableError`` naming every missing piece, so the user fixes them at once.

Names are deterministic: the same spec always plans the same Job names (so a restarted operator or a replayed
event finds its Jobs instead of duplicating them), and a changed spec plans new ones (stale Jobs are deleted).
The digest includes the sha256 of the Model, Framework and Dataset specs, so an edited Model plans new runs.
A plan is bounded (``max_runs``): the Evaluation's status lists every run and etcd stores at most 1.5 MiB per object.
The run id also carries the Evaluation's uid, so a deleted and re-created Evaluation never mixes its results in
the collector with its predecessor's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlmodelscope.core.errors import IncompatibleFrameworkError
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.fields import Accelerator, Architecture
from mlmodelscope.core.manifests.registry import NULL_PREDICTOR, check_version
from mlmodelscope.core.manifests.resources import Framework, Model
from mlmodelscope.core.run_contract import ResolvedResource, ResolvedResources
from mlmodelscope.operator.catalog import Applied, ResourceCatalog
from mlmodelscope.operator.errors import UnsatisfiableError
from mlmodelscope.operator.evaluation import EvaluationSpec, JobResources, Target
from mlmodelscope.operator.settings import OperatorSettings

JOB_NAME_MAX = 63
ARCH_LABEL = "kubernetes.io/arch"
_HASH_LEN = 10


@dataclass(frozen=True)
class PlannedRun:
    key: str
    model: str
    framework: str
    dataset: str
    arch: Architecture
    accelerator: Accelerator
    batch_size: int
    repetition: int
    image: str
    device_resource: str | None
    settings: EvaluationSettings
    job_name: str
    run_id: str
    resources: ResolvedResources
    spec_sha256: dict[str, str]
    target: Target
    requests: dict[str, str]
    limits: dict[str, str]
    node_selector: dict[str, str]


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def _pair_problem(model: Model, framework: Framework) -> str | None:
    if framework.spec.predictor != NULL_PREDICTOR and model.spec.framework.name == framework.name:
        try:
            check_version(
                framework.spec.version, model.spec.framework.version, what=f"Framework '{framework.name}'", model=model
            )
        except IncompatibleFrameworkError as e:
            return e.message
    if framework.spec.predictor != NULL_PREDICTOR and model.spec.artifact_for(framework.spec.formats) is None:
        have = ", ".join(a.format for a in model.spec.artifacts)
        return (
            f"Model '{model.name}' has artifacts in {have}; Framework '{framework.name}' runs "
            f"{', '.join(framework.spec.formats)}"
        )
    return None


def _image(framework: Framework, arch: str, accelerator: str) -> str | None:
    return next((c.image for c in framework.spec.containers if c.arch == arch and c.accelerator == accelerator), None)


def _image_problem(framework: Framework, arch: str, accelerator: str) -> str:
    have = ", ".join(f"{c.arch}/{c.accelerator}" for c in framework.spec.containers) or "none"
    return f"Framework '{framework.name}' has no container image for {arch}/{accelerator} (spec.containers has: {have})"


def _device_resource(framework: Framework, accelerator: Accelerator, settings: OperatorSettings) -> str | None:
    if accelerator == "cpu":
        return None
    default = settings.gpu_resource if accelerator == "gpu" else settings.fpga_resource
    return framework.spec.device_resources.get(accelerator, default)


def _target_name(target: Target) -> str:
    return f"target {target.arch}/{target.accelerator}"


def pod_resources(
    target: Target, spec: EvaluationSpec, device_resource: str | None, settings: OperatorSettings
) -> tuple[dict[str, str], dict[str, str]] | str:
    """(requests, limits) of a run's container, or why they cannot be. The target's resources replace the
    Evaluation's; empty requests equal the limits (Guaranteed QoS); the device resource is exactly ``count``, and
    a device quantity written in resources that says otherwise is a contradiction, never silently rewritten
    (a cpu target asking for a GPU or FPGA through resources is one too)."""
    declared: JobResources = target.resources or spec.resources
    limits = dict(declared.limits)
    requests = dict(declared.requests) or dict(limits)
    if device_resource is None:
        for where, table in (("limits", declared.limits), ("requests", declared.requests)):
            device = next((r for r in (settings.gpu_resource, settings.fpga_resource) if r in table), None)
            if device is not None:
                return (
                    f"{_target_name(target)} has no accelerator but resources.{where} asks for {device}: "
                    f"{table[device]}; set the target's accelerator and count instead"
                )
    if device_resource is not None:
        wanted = str(target.count)
        for where, table in (("limits", limits), ("requests", requests)):
            written = table.get(device_resource)
            if written is not None and written != wanted and not (where == "requests" and not declared.requests):
                return (
                    f"{_target_name(target)} has count {target.count} (devices per run) but resources.{where} "
                    f"asks for {device_resource}: {written}; set count: {written} and leave {device_resource} "
                    "out of resources"
                )
        requests[device_resource] = wanted
        limits[device_resource] = wanted
    return requests, limits


def node_selector(target: Target) -> dict[str, str] | str:
    """The target's architecture label plus its own node_selector, or why they contradict each other."""
    written = target.node_selector.get(ARCH_LABEL)
    if written is not None and written != target.arch:
        return (
            f"{_target_name(target)} has node_selector {ARCH_LABEL}: {written}, which contradicts its arch "
            f"{target.arch}; leave {ARCH_LABEL} out of node_selector"
        )
    return {**target.node_selector, ARCH_LABEL: target.arch}


def _job_name(evaluation: str, digest: str) -> str:
    prefix = evaluation[: JOB_NAME_MAX - _HASH_LEN - 1].rstrip("-")
    return f"{prefix}-{digest}"


def count_runs(spec: EvaluationSpec) -> int:
    """How many runs the spec's matrix has (before checking any resource)."""
    per_pair = sum(t.repeats for t in spec.targets) * len(spec.batch_sizes)
    return len(spec.models) * len(spec.frameworks) * per_pair


def _check_size(spec: EvaluationSpec, settings: OperatorSettings) -> None:
    total = count_runs(spec)
    if total <= settings.max_runs:
        return
    targets = " + ".join(f"{t.arch}/{t.accelerator} x{t.repeats}" for t in spec.targets)
    raise UnsatisfiableError(
        f"the Evaluation plans {total} runs ({len(spec.models)} models x {len(spec.frameworks)} frameworks x "
        f"{sum(t.repeats for t in spec.targets)} target repeats ({targets}) x {len(spec.batch_sizes)} batch sizes), "
        f"more than the limit of {settings.max_runs} runs per Evaluation (its status lists every run, and etcd "
        "stores at most 1.5 MiB per object); split it into several Evaluations.",
        hint="The limit is the operator's max_runs setting.",
    )


class _Resolver:
    """Each resource's ResolvedResource, computed once per plan (its canonical spec and sha256)."""

    def __init__(self, assets_dir: str) -> None:
        self.assets_dir = assets_dir
        self._cache: dict[tuple[str, str], ResolvedResource] = {}

    def __call__(self, applied: Applied[Any]) -> ResolvedResource:
        key = (applied.resource.kind, applied.resource.name)
        resolved = self._cache.get(key)
        if resolved is None:
            resolved = self._cache[key] = applied.resolved(self.assets_dir)
        return resolved


def plan(
    name: str, uid: str, spec: EvaluationSpec, catalog: ResourceCatalog, settings: OperatorSettings
) -> list[PlannedRun]:
    """Every run of the Evaluation in matrix order; UnsatisfiableError naming every problem otherwise."""
    _check_size(spec, settings)
    problems: list[str] = []
    settings_by_batch, selectors = _spec_checks(spec, catalog, problems)
    if problems:
        raise UnsatisfiableError("; ".join(dict.fromkeys(problems)) + ".")

    resolve = _Resolver(settings.agent_assets_dir)
    runs: list[PlannedRun] = []
    for model_name in spec.models:
        model = catalog.models[model_name]
        dataset_name = spec.dataset or model.resource.spec.dataset
        dataset = catalog.datasets.get(dataset_name) if dataset_name else None
        if dataset_name is None:
            problems.append(f"Model '{model_name}' names no default dataset: set spec.dataset")
        elif dataset is None:
            problems.append(catalog.unknown("Dataset", dataset_name))
        for framework_name in spec.frameworks:
            framework = catalog.frameworks[framework_name]
            pair = _pair_problem(model.resource, framework.resource)
            if pair is not None:
                problems.append(pair)
                continue
            for target, selector in zip(spec.targets, selectors, strict=True):
                placed = _placement(framework_name, framework.resource, target, spec, settings)
                if isinstance(placed, str):
                    problems.append(placed)
                    continue
                resources = ResolvedResources(
                    model=resolve(model),
                    framework=resolve(framework),
                    dataset=resolve(dataset) if dataset is not None else None,
                )
                for batch_size in spec.batch_sizes:
                    if dataset is not None and batch_size > dataset.resource.spec.size:
                        problems.append(
                            f"batch size {batch_size} exceeds the {dataset.resource.spec.size} samples of "
                            f"Dataset '{dataset.resource.name}'"
                        )
                        continue
                    cell = _Cell(model_name, framework_name, dataset_name or "", target, selector, batch_size)
                    runs.extend(
                        _planned_run(name, uid, spec, cell, placed, resources, settings_by_batch[batch_size], r)
                        for r in range(target.repeats)
                    )
    if problems:
        raise UnsatisfiableError("; ".join(dict.fromkeys(problems)) + ".")
    return runs


def _spec_checks(
    spec: EvaluationSpec, catalog: ResourceCatalog, problems: list[str]
) -> tuple[dict[int, EvaluationSettings], list[dict[str, str]]]:
    """The checks of the spec alone (names, settings, targets), appending to ``problems``: the settings per batch
    size and the node selector per target."""
    problems.extend(catalog.unknown("Model", n) for n in spec.models if n not in catalog.models)
    problems.extend(catalog.unknown("Framework", n) for n in spec.frameworks if n not in catalog.frameworks)
    if spec.dataset is not None and spec.dataset not in catalog.datasets:
        problems.append(catalog.unknown("Dataset", spec.dataset))
    settings_by_batch: dict[int, EvaluationSettings] = {}
    for batch_size in spec.batch_sizes:
        try:
            settings_by_batch[batch_size] = spec.run_settings(batch_size)
        except ValidationError as e:
            reasons = "; ".join(str(p["msg"]).removeprefix("Value error, ") for p in e.errors())
            problems.append(f"settings: {reasons}")
            break
    selectors: list[dict[str, str]] = []
    for target in spec.targets:
        selector = node_selector(target)
        if isinstance(selector, str):
            problems.append(selector)
        else:
            selectors.append(selector)
    return settings_by_batch, selectors


@dataclass(frozen=True)
class _Placement:
    """Where a framework's runs for one target go: its image, device resource and pod sizes."""

    image: str
    device_resource: str | None
    requests: dict[str, str]
    limits: dict[str, str]


@dataclass(frozen=True)
class _Cell:
    """One model x framework x target x batch size of the matrix (its repetitions share it)."""

    model: str
    framework: str
    dataset: str
    target: Target
    selector: dict[str, str]
    batch_size: int


def _placement(
    framework_name: str, framework: Framework, target: Target, spec: EvaluationSpec, settings: OperatorSettings
) -> _Placement | str:
    """The image, device resource and pod sizes of ``framework`` on ``target``, or the problem that prevents it."""
    if target.accelerator not in framework.spec.accelerators:
        return (
            f"Framework '{framework_name}' does not support accelerator "
            f"{target.accelerator} (spec.accelerators: {', '.join(framework.spec.accelerators)})"
        )
    image = _image(framework, target.arch, target.accelerator)
    if image is None:
        return _image_problem(framework, target.arch, target.accelerator)
    device_resource = _device_resource(framework, target.accelerator, settings)
    sized = pod_resources(target, spec, device_resource, settings)
    if isinstance(sized, str):
        return sized
    requests, limits = sized
    return _Placement(image, device_resource, requests, limits)


def _planned_run(
    name: str,
    uid: str,
    spec: EvaluationSpec,
    cell: _Cell,
    placed: _Placement,
    resources: ResolvedResources,
    run_settings: EvaluationSettings,
    repetition: int,
) -> PlannedRun:
    """One run of the matrix: its key, the digest of everything that defines it, its Job name and run id."""
    target = cell.target
    key = f"{cell.model}/{cell.framework}/{target.arch}-{target.accelerator}/b{cell.batch_size}"
    if target.repeats > 1:
        key += f"/r{repetition}"
    checksums = resources.checksums()
    digest = _digest(
        key,
        placed.image,
        cell.dataset or None,
        checksums,
        run_settings.model_dump(mode="json"),
        spec.trace_level,
        spec.threads,
        target.model_dump(mode="json"),
        placed.requests,
        placed.limits,
        spec.timeout_s,
        spec.retries,
        spec.queue_name,
    )
    return PlannedRun(
        key=key,
        model=cell.model,
        framework=cell.framework,
        dataset=cell.dataset,
        arch=target.arch,
        accelerator=target.accelerator,
        batch_size=cell.batch_size,
        repetition=repetition,
        image=placed.image,
        device_resource=placed.device_resource,
        settings=run_settings,
        job_name=_job_name(name, digest),
        run_id=f"{name[:80]}-{uid.replace('-', '')[:12]}-{digest}",
        resources=resources,
        spec_sha256=checksums,
        target=target,
        requests=placed.requests,
        limits=placed.limits,
        node_selector=cell.selector,
    )


__all__ = ["PlannedRun", "ResourceCatalog", "count_runs", "node_selector", "plan", "pod_resources"]
