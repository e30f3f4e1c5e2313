"""From an Evaluation and the cluster's Model/Framework/Dataset resources to the list of runs, one Job each.

Pure functions, no I/O: the matrix models x frameworks x targets (x count) x batch sizes is expanded in a fixed
order, and everything a Job needs is decided here (image, device resource, settings, names). Whatever cannot be
satisfied (an unknown model, no image for ppc64le + gpu, a batch larger than the dataset, inconsistent settings)
is collected and raised as one ``UnsatisfiableError`` naming every missing piece, so the user fixes them at once.

Names are deterministic: the same spec always plans the same Job names (so a restarted operator or a replayed
event finds its Jobs instead of duplicating them), and a changed spec plans new ones (stale Jobs are deleted).
The run id also carries the Evaluation's uid, so a deleted and re-created Evaluation never mixes its results in
the collector with its predecessor's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlmodelscope.core.errors import IncompatibleFrameworkError
from mlmodelscope.core.evaluation.settings import EvaluationSettings, Seeds
from mlmodelscope.core.manifests.registry import NULL_PREDICTOR, check_version
from mlmodelscope.core.manifests.resources import Accelerator, Architecture, Dataset, Framework, Model
from mlmodelscope.operator.errors import UnsatisfiableError
from mlmodelscope.operator.evaluation import EvaluationSpec
from mlmodelscope.operator.settings import OperatorSettings

JOB_NAME_MAX = 63
_HASH_LEN = 10


@dataclass(frozen=True)
class Catalog:
    """The Model, Framework and Dataset resources of the Evaluation's namespace (invalid ones: their problems)."""

    namespace: str
    models: Mapping[str, Model]
    frameworks: Mapping[str, Framework]
    datasets: Mapping[str, Dataset]
    invalid: Mapping[tuple[str, str], str]


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


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def _unknown(kind: str, name: str, table: Mapping[str, Any], catalog: Catalog) -> str:
    invalid = catalog.invalid.get((kind, name))
    if invalid is not None:
        return f"{kind} '{name}' in namespace '{catalog.namespace}' is invalid: {invalid}"
    known = ", ".join(sorted(table)) or "none"
    return f"unknown {kind} '{name}' in namespace '{catalog.namespace}' (known: {known})"


def run_settings(spec: EvaluationSpec, batch_size: int) -> EvaluationSettings:
    """The EvaluationSettings of one run (ValidationError when the spec's settings contradict each other)."""
    values: dict[str, Any] = {
        "scenario": spec.scenario,
        "mode": spec.mode,
        "batch_size": batch_size,
        "warmup_queries": spec.warmup_queries,
        "min_duration_s": spec.min_duration_s,
        "max_duration_s": spec.max_duration_s,
        "min_query_count": spec.min_query_count,
        "max_query_count": spec.max_query_count,
        "target_qps": spec.target_qps,
        "latency_bound_ms": spec.latency_bound_ms,
        "samples_per_query": spec.samples_per_query,
    }
    if spec.seed is not None:
        values["seeds"] = Seeds.from_single(spec.seed)
    return EvaluationSettings(**values)


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


def _job_name(evaluation: str, digest: str) -> str:
    prefix = evaluation[: JOB_NAME_MAX - _HASH_LEN - 1].rstrip("-")
    return f"{prefix}-{digest}"


def plan(name: str, uid: str, spec: EvaluationSpec, catalog: Catalog, settings: OperatorSettings) -> list[PlannedRun]:
    """Every run of the Evaluation in matrix order; UnsatisfiableError naming every problem otherwise."""
    problems: list[str] = []
    for kind, names, table in (
        ("Model", spec.models, catalog.models),
        ("Framework", spec.frameworks, catalog.frameworks),
    ):
        problems.extend(_unknown(kind, n, table, catalog) for n in names if n not in table)
    if spec.dataset is not None and spec.dataset not in catalog.datasets:
        problems.append(_unknown("Dataset", spec.dataset, catalog.datasets, catalog))
    settings_by_batch: dict[int, EvaluationSettings] = {}
    for batch_size in spec.batch_sizes:
        try:
            settings_by_batch[batch_size] = run_settings(spec, batch_size)
        except ValidationError as e:
            reasons = "; ".join(str(p["msg"]).removeprefix("Value error, ") for p in e.errors())
            problems.append(f"settings: {reasons}")
            break
    if problems:
        raise UnsatisfiableError("; ".join(dict.fromkeys(problems)) + ".")

    runs: list[PlannedRun] = []
    for model_name in spec.models:
        model = catalog.models[model_name]
        dataset_name = spec.dataset or model.spec.dataset
        dataset = catalog.datasets.get(dataset_name) if dataset_name else None
        if dataset_name is None:
            problems.append(f"Model '{model_name}' names no default dataset: set spec.dataset")
        elif dataset is None:
            problems.append(_unknown("Dataset", dataset_name, catalog.datasets, catalog))
        for framework_name in spec.frameworks:
            framework = catalog.frameworks[framework_name]
            pair = _pair_problem(model, framework)
            if pair is not None:
                problems.append(pair)
                continue
            for target in spec.targets:
                if target.accelerator not in framework.spec.accelerators:
                    problems.append(
                        f"Framework '{framework_name}' does not support accelerator "
                        f"{target.accelerator} (spec.accelerators: {', '.join(framework.spec.accelerators)})"
                    )
                    continue
                image = _image(framework, target.arch, target.accelerator)
                if image is None:
                    problems.append(_image_problem(framework, target.arch, target.accelerator))
                    continue
                for batch_size in spec.batch_sizes:
                    if dataset is not None and batch_size > dataset.spec.size:
                        problems.append(
                            f"batch size {batch_size} exceeds the {dataset.spec.size} samples of "
                            f"Dataset '{dataset.name}'"
                        )
                        continue
                    for repetition in range(target.repeats):
                        key = f"{model_name}/{framework_name}/{target.arch}-{target.accelerator}/b{batch_size}"
                        if target.repeats > 1:
                            key += f"/r{repetition}"
                        run_settings_ = settings_by_batch[batch_size]
                        digest = _digest(
                            key,
                            image,
                            dataset_name,
                            run_settings_.model_dump(mode="json"),
                            spec.trace_level,
                            spec.threads,
                            spec.resources.model_dump(),
                            spec.timeout_s,
                            spec.retries,
                            spec.queue_name,
                        )
                        runs.append(
                            PlannedRun(
                                key=key,
                                model=model_name,
                                framework=framework_name,
                                dataset=dataset_name or "",
                                arch=target.arch,
                                accelerator=target.accelerator,
                                batch_size=batch_size,
                                repetition=repetition,
                                image=image,
                                device_resource=_device_resource(framework, target.accelerator, settings),
                                settings=run_settings_,
                                job_name=_job_name(name, digest),
                                run_id=f"{name[:80]}-{uid.replace('-', '')[:12]}-{digest}",
                            )
                        )
    if problems:
        raise UnsatisfiableError("; ".join(dict.fromkeys(problems)) + ".")
    return runs
