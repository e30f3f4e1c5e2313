"""One evaluation from manifest to result: resolve, fetch, load, warm up, run accuracy and/or performance.

This is the data flow of DESIGN.md section 2 in one place, shared by the CLI (locally) and the agent (in a
cluster): manifest -> artifact fetch (checksum) -> dataset reader (opened, nothing decoded yet) -> predictor.load
-> driver (LoadGen scenario; its QSL decodes and pre-processes each loaded set, untimed) -> predict -> scorer ->
result. Each phase's wall time is recorded, so cold-start cost is reported separately from steady-state latency.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.artifacts.zoo import fetch_artifact
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.datasets.reader import ClassLabels, DatasetReader
from mlmodelscope.core.datasets.sample_cache import SampleCache
from mlmodelscope.core.errors import EvaluationError, ManifestError, naming_the_manifest
from mlmodelscope.core.evaluation.cpu_quota import CpuBudget, container_cpus
from mlmodelscope.core.evaluation.driver import LoadGenDriver, RunOutcome, RunProgress
from mlmodelscope.core.evaluation.environment import Environment, capture_environment
from mlmodelscope.core.evaluation.loadgen_report import ConstraintCheck
from mlmodelscope.core.evaluation.profile_window import ProfileWindow
from mlmodelscope.core.evaluation.results import (
    AccuracyResult,
    FrameworkTrace,
    LoadTime,
    PerformanceResult,
    ResourceRef,
    RunResult,
    Throughput,
    Verdict,
)
from mlmodelscope.core.evaluation.sample_library import SampleLibrary, dataset_source_sha256
from mlmodelscope.core.evaluation.scoring import Scorer, make_scorer
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.fields import Accelerator, FileRef
from mlmodelscope.core.manifests.registry import NULL_PREDICTOR, Registry, Resolution, check_version
from mlmodelscope.core.manifests.resources import Dataset, Model
from mlmodelscope.core.predictor import Predictor, PredictorOptions, load_predictor_class
from mlmodelscope.core.processing.postprocess import load_labels
from mlmodelscope.core.tracing.hardware import HardwareSampler
from mlmodelscope.core.tracing.spans import AttributeValue, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer


@dataclass(frozen=True)
class RunRequest:
    model: str
    framework: str
    dataset: str | None
    settings: EvaluationSettings
    output_dir: Path
    device: Accelerator = "cpu"
    intra_op_threads: int | None = None


def intra_op_threads(requested: int | None) -> CpuBudget:
    """The requested count, else the container's CPU limit (see ``cpu_quota``): never the node's core count."""
    return CpuBudget(requested, "run spec") if requested is not None else container_cpus()


def _fetch_labels(store: ArtifactStore, labels: FileRef | None, base_dir: Path | None) -> list[str] | None:
    if labels is None:
        return None
    return load_labels(store.fetch(labels.uri, labels.sha256, base_dir=base_dir))


@dataclass
class _Phase:
    span_id: int = 0
    seconds: float = 0.0


@contextmanager
def _phase(tracer: Tracer, name: str, parent_id: int = 0, **attributes: AttributeValue) -> Iterator[_Phase]:
    """Time one phase of the evaluation; also an APPLICATION span when that level is traced."""
    phase = _Phase(span_id=tracer.new_span_id() if tracer.enabled(TraceLevel.APPLICATION) else 0)
    start_ns = time.perf_counter_ns()
    try:
        yield phase
    finally:
        end_ns = time.perf_counter_ns()
        phase.seconds = (end_ns - start_ns) / 1e9
        if phase.span_id:
            tracer.record(
                name, TraceLevel.APPLICATION, start_ns, end_ns, parent_id, dict(attributes), span_id=phase.span_id
            )


def _profile_window(predictor: Predictor, tracer: Tracer, settings: EvaluationSettings) -> ProfileWindow | None:
    """The bounded window the framework profiler covers at FRAMEWORK level (None below it: nothing per call)."""
    profiler = predictor.framework_profiler() if tracer.enabled(TraceLevel.FRAMEWORK) else None
    return ProfileWindow(profiler, tracer, settings.framework_trace_max_calls) if profiler is not None else None


def execute_run(
    registry: Registry,
    store: ArtifactStore,
    request: RunRequest,
    *,
    progress: RunProgress | None = None,
    tracer: Tracer | None = None,
) -> RunResult:
    """Evaluate one model on one framework; spans go to ``tracer`` at its level (none without one)."""
    run_id = tracer.run_id if tracer is not None else str(uuid.uuid4())
    tracer = tracer or Tracer(run_id, TraceLevel.NO)
    resolution, dataset, predictor_class, installed_version = _resolve(registry, request)
    model, framework, artifact = resolution.model, resolution.framework, resolution.artifact
    with _phase(tracer, "evaluation", model=model.name, framework=framework.name) as root:
        with (
            naming_the_manifest(f"model '{model.name}' ({resolution.model_where})"),
            _phase(tracer, "artifact_fetch", root.span_id, uri=artifact.uri) as fetch_phase,
        ):
            fetched = fetch_artifact(store, artifact, base_dir=resolution.model_dir)  # built first for zoo: URIs
        dataset_entry = registry.entry("Dataset", dataset.name)
        threads = intra_op_threads(request.intra_op_threads)
        with (
            naming_the_manifest(f"dataset '{dataset.name}' ({dataset_entry.where})"),
            _phase(tracer, "dataset_load", root.span_id, dataset=dataset.name) as dataset_phase,
        ):
            reader = open_reader(dataset, store, dataset_entry.folder)  # opened and listed; nothing decoded yet
            cache = _sample_cache(store, dataset, reader, model, request)
            library = SampleLibrary(reader, model.spec, cache, threads=threads.cpus)  # decodes on LoadGen's load
        output_spec = model.spec.outputs[0]
        with naming_the_manifest(f"model '{model.name}' labels ({resolution.model_where})"):
            labels = _fetch_labels(store, output_spec.labels, resolution.model_dir)
        _check_labels(reader, dataset, model, request.settings)
        scorer = make_scorer(model.spec, reader.truth, labels) if request.settings.runs_accuracy else None
        profile_dir = request.output_dir / "framework-profile" if tracer.enabled(TraceLevel.FRAMEWORK) else None
        options = PredictorOptions(device=request.device, intra_op_threads=threads.cpus, profile_dir=profile_dir)
        predictor = predictor_class(model.spec, options)
        with _phase(tracer, "model_load", root.span_id, format=artifact.format) as load_phase:
            predictor.load(fetched.path)
        try:
            driver = LoadGenDriver(predictor, library, scorer, request.settings, progress, tracer)
            runs = _runs(driver, scorer, tracer, request, root.span_id)
        finally:
            predictor.close()

    environment = capture_environment(
        framework={"name": framework.name, "version": installed_version},
        manifest_sha256=registry.checksums(),
        artifact_sha256={artifact.uri: fetched.sha256, **dataset_source_sha256(dataset)},
        intra_op_threads=threads.cpus,
        intra_op_threads_source=threads.source,
    )
    load_time = LoadTime(
        artifact_fetch_s=fetch_phase.seconds,
        dataset_s=dataset_phase.seconds,
        model_load_s=load_phase.seconds,
        warmup_s=runs.warmup_s,
        calibration_s=runs.calibration_s,
    )
    return _result(registry, request, resolution, dataset, installed_version, tracer, load_time, runs, environment)


def _resolve(registry: Registry, request: RunRequest) -> tuple[Resolution, Dataset, type[Predictor], str]:
    """The model, framework, artifact and dataset of the request, and the predictor class; checked before any work."""
    resolution = registry.resolve(request.model, request.framework)
    model, framework = resolution.model, resolution.framework
    dataset_name = request.dataset or model.spec.dataset
    if dataset_name is None:
        raise ManifestError(
            f"model '{model.name}' names no default dataset and none was given.", hint="Pass --dataset NAME."
        )
    dataset = registry.dataset(dataset_name)
    predictor_class = load_predictor_class(framework.spec.predictor)
    installed_version = predictor_class.library_version()
    if framework.spec.predictor != NULL_PREDICTOR and framework.name == model.spec.framework.name:
        check_version(
            installed_version,
            model.spec.framework.version,
            what=f"the installed {framework.name}",
            model=model,
        )
    if request.device not in framework.spec.accelerators:
        raise EvaluationError(
            f"framework '{framework.name}' declares accelerators {framework.spec.accelerators}, not "
            f"'{request.device}'.",
            hint="Choose --device from the framework's accelerators.",
        )
    return resolution, dataset, predictor_class, installed_version


@dataclass
class _Runs:
    warmup_s: float = 0.0
    calibration_s: float = 0.0
    accuracy: AccuracyResult | None = None
    performance: PerformanceResult | None = None
    framework_trace: FrameworkTrace | None = None


def _runs(driver: LoadGenDriver, scorer: Scorer | None, tracer: Tracer, request: RunRequest, root_span: int) -> _Runs:
    """Warm up, then the accuracy run and/or the performance run (with its profiler window and hardware samples)."""
    runs = _Runs()
    with _phase(tracer, "warmup", root_span) as warmup_phase:
        warmup = driver.warm_up()
    runs.warmup_s = warmup_phase.seconds
    runs.calibration_s = warmup.calibration_s
    if request.settings.runs_accuracy:
        assert scorer is not None
        log_dir = request.output_dir / "loadgen-accuracy"
        with _phase(tracer, "accuracy_run", root_span, mode="accuracy") as run_phase:
            outcome = driver.run("accuracy", warmup, log_dir)
        tracer.materialize_model_spans(parent_id=run_phase.span_id)
        runs.accuracy = scorer.result(_accuracy_verdict(outcome, scorer), log_dir)
    if request.settings.runs_performance:
        log_dir = request.output_dir / "loadgen-performance"
        window = _profile_window(driver.predictor, tracer, request.settings)
        sampler = HardwareSampler(tracer)
        with _phase(tracer, "performance_run", root_span, mode="performance") as run_phase:
            if window is not None:
                window.open()
            sampler.start()
            try:
                outcome = driver.run("performance", warmup, log_dir)
            finally:
                sampler.stop()
                if window is not None:
                    window.close()
        model_spans = tracer.materialize_model_spans(parent_id=run_phase.span_id)
        if window is not None:
            runs.framework_trace = window.attribute(model_spans)
        runs.performance = _performance_result(outcome, log_dir)
    return runs


def _result(
    registry: Registry,
    request: RunRequest,
    resolution: Resolution,
    dataset: Dataset,
    installed_version: str,
    tracer: Tracer,
    load_time: LoadTime,
    runs: _Runs,
    environment: Environment,
) -> RunResult:
    model, framework = resolution.model, resolution.framework
    return RunResult(
        id=tracer.run_id,
        created_at=datetime.now(UTC),
        model=ResourceRef(
            name=model.name, version=model.spec.version, spec_sha256=registry.spec_sha256("Model", model.name)
        ),
        framework=ResourceRef(
            name=framework.name,
            version=installed_version,
            spec_sha256=registry.spec_sha256("Framework", framework.name),
        ),
        dataset=ResourceRef(
            name=dataset.name, version=dataset.spec.split, spec_sha256=registry.spec_sha256("Dataset", dataset.name)
        ),
        device=request.device,
        requested_settings=request.settings,
        trace_level=tracer.level.name.lower(),
        load_time=load_time,
        accuracy=runs.accuracy,
        performance=runs.performance,
        framework_trace=runs.framework_trace,
        environment=environment,
    )


def _sample_cache(
    store: ArtifactStore, dataset: Dataset, reader: DatasetReader, model: Model, request: RunRequest
) -> SampleCache | None:
    """The on-disk cache of pre-processed samples, for image files only (arrays are cheap to pre-process again)."""
    if not request.settings.sample_cache or dataset.spec.source.kind not in ("folder", "coco"):
        return None
    return SampleCache(store.cache_dir, reader.fingerprint, model.spec.inputs[0])


def _check_labels(reader: DatasetReader, dataset: Dataset, model: Model, settings: EvaluationSettings) -> None:
    """Class labels must be classes of a classification model; accuracy needs every item labelled."""
    truth = reader.truth
    output_spec = model.spec.outputs[0]
    classes = output_spec.shape[-1] if output_spec.shape else 0
    if not isinstance(truth, ClassLabels) or not len(truth.labels):
        return
    labels = truth.labels
    if settings.runs_accuracy and labels.min() < 0:
        raise ManifestError(
            f"dataset '{dataset.name}' has {int((labels < 0).sum())} unlabelled items (e.g. "
            f"{reader.name(int(np.flatnonzero(labels < 0)[0]))}); an accuracy run needs every item's class.",
            hint="Label the dataset (class sub-folders or a labels file), or run with --mode performance.",
        )
    if classes > 0 and (labels.min() < -1 or labels.max() >= classes):
        raise ManifestError(
            f"dataset '{dataset.name}' has labels outside 0..{classes - 1}, the classes of model '{model.name}'.",
            hint="Evaluate the model on a dataset of its own task and label set.",
        )


def _accuracy_verdict(outcome: RunOutcome, scorer: Scorer) -> Verdict:
    """VALID when every dataset item was answered and LoadGen logged no error."""
    answered = scorer.answered
    count, total = int(answered.sum()), len(answered)
    complete = count == total
    return Verdict(
        valid=complete and not outcome.errors,
        result="VALID" if complete and not outcome.errors else "INVALID",
        constraints=[
            ConstraintCheck(name="all_samples", satisfied=complete, reason=f"{count} of {total} samples were answered")
        ],
        recommendations=[],
        early_stopping=[],
        errors=outcome.errors,
    )


def _performance_result(outcome: RunOutcome, log_dir: Path) -> PerformanceResult:
    report = outcome.report
    assert report is not None
    records = outcome.records
    if len(records) == 0:
        raise EvaluationError("the performance run completed no query.", hint=f"See the LoadGen logs in {log_dir}.")
    samples = records.samples
    batch_per_loadgen_sample = samples / len(records)
    uses_units = report.effective_settings.get("scenario") in ("SingleStream", "Server")
    samples_per_s = report.throughput_samples_per_s * (batch_per_loadgen_sample if uses_units else 1.0)
    metric = report.throughput_metric
    if samples_per_s <= 0:  # MultiStream: LoadGen reports latencies only; count what the SUT completed
        samples_per_s, metric = samples / outcome.duration_s, "sut_samples_per_second"
    return PerformanceResult(
        verdict=Verdict(
            valid=report.valid,
            result="VALID" if report.valid else "INVALID",
            constraints=report.constraints,
            recommendations=report.recommendations,
            early_stopping=report.early_stopping,
            errors=report.errors,
        ),
        latency=records.stats(),
        loadgen_latency_ns=report.latency_ns,
        throughput=Throughput(
            samples_per_s=samples_per_s,
            queries_per_s=len(records) / outcome.duration_s if outcome.duration_s > 0 else 0.0,
            loadgen_metric=metric,
        ),
        queries=len(records),
        samples=samples,
        duration_s=outcome.duration_s,
        effective_settings=report.effective_settings,
        loadgen_requested_settings=report.requested_settings,
        log_dir=str(log_dir),
        schedule=outcome.schedule,
    )
