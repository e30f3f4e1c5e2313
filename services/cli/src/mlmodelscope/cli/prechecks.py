"""What ``mlmodelscope evaluate`` can check before it starts NATS, the collector and the agents.

An agent only starts evaluating 6-12 s after the command (services up, interpreter and framework imported), so a
typo found there costs the user that long and a stack of processes. Everything that needs no download and no
framework is checked here first, with the core's own rules (the registry's resolution, the artifact store's URI
parsing), so the messages are the ones the agent would have given, only at once.

One check only warns: LoadGen's schedule (``core.evaluation.schedule``) is pre-generated whole before the first
query and grows with ``--min-duration``; the agent estimates it after its calibration test, minutes into a run
that may then be killed for memory. ``check_schedule`` estimates it here for the fastest model LoadGen can drive
(or at the user's pinned hint), so a run that may not fit is announced before anything starts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mlmodelscope.cli.context import CliContext
from mlmodelscope.core.artifacts.locations import parse_uri
from mlmodelscope.core.errors import EvaluationError, ManifestError, naming_the_manifest
from mlmodelscope.core.evaluation.schedule import FASTEST_QUERY_NS, available_memory, worst_case_schedule
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.compatibility import fit
from mlmodelscope.core.manifests.fields import Accelerator, FileRef
from mlmodelscope.core.manifests.resources import Dataset, Model


def _check_uri(uri: str, base_dir: Path | None, where: str) -> None:
    with naming_the_manifest(where):
        parse_uri(uri, base_dir)


def _check_model_files(model: Model, manifest: str, folder: Path | None, artifact_uri: str, is_zoo: bool) -> None:
    where = f"model '{model.name}' ({manifest})"
    if not is_zoo:
        _check_uri(artifact_uri, folder, where)
    labels: FileRef | None = model.spec.outputs[0].labels if model.spec.outputs else None
    if labels is not None:
        _check_uri(labels.uri, folder, f"model '{model.name}' labels ({manifest})")


def _check_dataset(context: CliContext, model: Model, dataset_name: str | None) -> None:
    name = dataset_name or model.spec.dataset
    if name is None:
        raise ManifestError(
            f"model '{model.name}' names no default dataset and none was given.", hint="Pass --dataset NAME."
        )
    dataset: Dataset = context.registry.dataset(name)
    entry = context.registry.entry("Dataset", dataset.name)
    where = f"dataset '{dataset.name}' ({entry.where})"
    if dataset.spec.source.uri is not None:
        _check_uri(dataset.spec.source.uri, entry.folder, where)
    if dataset.spec.labels is not None:
        _check_uri(dataset.spec.labels.uri, entry.folder, where)
    verdict = fit(model, dataset)
    if not verdict.ok:
        raise EvaluationError(
            f"model '{model.name}' cannot be evaluated on dataset '{dataset.name}': " + " ".join(verdict.reasons),
            hint=f"See `mlmodelscope models list --dataset {dataset.name}` for the models that fit it, or pass "
            "another --dataset.",
        )


def check_before_start(
    context: CliContext,
    model_name: str,
    frameworks: Sequence[str],
    dataset_name: str | None,
    device: Accelerator,
    *,
    with_agents: bool,
) -> None:
    """Raise the error the run would end with, for every problem found without fetching or importing anything:
    unknown model/framework/dataset, a framework that cannot run the model (format, version constraint), a device
    the framework does not declare, a malformed artifact URI (an S3 URI without a key, ...), a missing agent
    interpreter, a dataset the model cannot consume (``compatibility.fit``: task, input type, shape, classes)."""
    for name in frameworks:
        resolution = context.registry.resolve(model_name, name)
        framework = resolution.framework
        if device not in framework.spec.accelerators:
            raise EvaluationError(
                f"framework '{framework.name}' declares accelerators {framework.spec.accelerators}, not '{device}'.",
                hint="Choose --device from the framework's accelerators.",
            )
        artifact = resolution.artifact
        _check_model_files(
            resolution.model, resolution.model_where, resolution.model_dir, artifact.uri, artifact.zoo is not None
        )
        if with_agents:
            context.registry.agent_interpreter(name, sys.executable)
    _check_dataset(context, context.registry.model(model_name), dataset_name)


def check_schedule(settings: Sequence[EvaluationSettings], available: tuple[int, str] | None = None) -> str | None:
    """A warning when LoadGen's schedule for one of these performance runs may not fit in ``available`` memory
    (bytes, where the figure comes from; default: this machine's, ``available_memory``), else None.

    Before the run the model's speed is unknown: unless the hint is pinned the warning says how fast a model must
    be for the schedule not to fit (the agent checks again with the measured cost, before LoadGen starts)."""
    memory = available if available is not None else available_memory()
    for each in settings:
        if not each.runs_performance:
            continue
        estimate = worst_case_schedule(each, memory)
        if estimate.warning is None:
            continue
        if estimate.hints.pinned:
            return f"{estimate.warning} Estimated before the run at the hint given."
        fits_from_ns = fitting_query_ns(each, memory)
        return (
            f"if the model answers a query in less than about {_duration(fits_from_ns)} through LoadGen, its "
            f"pre-generated schedule may not fit in memory. For the fastest model LoadGen can drive "
            f"({FASTEST_QUERY_NS / 1000:g} us per query): {estimate.warning} The agent estimates the schedule again "
            "once it has measured the model, before LoadGen starts."
        )
    return None


def fitting_query_ns(settings: EvaluationSettings, memory: tuple[int, str]) -> float:
    """The least cost per query (ns, to a factor of 2) at which the run's schedule raises no warning."""
    per_query_ns = float(FASTEST_QUERY_NS)
    for _ in range(48):  # 8 us x 2^48: far beyond any run
        if worst_case_schedule(settings, memory, per_query_ns=per_query_ns).warning is None:
            break
        per_query_ns *= 2
    return per_query_ns


def _duration(ns: float) -> str:
    return f"{ns / 1e6:,.1f} ms" if ns >= 1e6 else f"{ns / 1e3:,.0f} us"
