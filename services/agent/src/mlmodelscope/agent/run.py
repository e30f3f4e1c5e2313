"""One agent run: the unit a Kubernetes Job (or a local agent process) executes.

``mlmodelscope agent run --spec run.json`` reads a ``RunSpec``, evaluates, and publishes everything to NATS
JetStream: ``run_started`` first, ``progress`` while it runs, then the spans and per-query records in batches, and
``run_finished`` with the full result (or the error) last. The agent only connects outward, to NATS: nothing
listens on it. It exits 0 when the run succeeded, 1 when the evaluation failed (the failure is published), and 2
when the messages could not be delivered.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlmodelscope.agent.bus.publisher import PublishError, PublisherSettings, RunPublisher
from mlmodelscope.core.artifacts import ArtifactStore, S3Settings
from mlmodelscope.core.errors import ManifestError, MLModelScopeError
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.evaluation.environment import architecture
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.evaluation.runner import EvaluationRequest, run_evaluation
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.registry import load_registry
from mlmodelscope.core.manifests.resources import Accelerator
from mlmodelscope.core.messages import Progress, QueryRecord, RunFinished, RunId, RunStarted
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import MODEL_SPAN_NAME, Tracer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNDELIVERED = 2
_RUN_PHASES = {"accuracy_run": "accuracy", "performance_run": "performance"}


class RunSpec(BaseModel):
    """Everything one run needs; written by the CLI (locally) or the operator (as a Job's argument)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: RunId
    evaluation_id: str = Field(min_length=1, max_length=128)
    model: str
    framework: str
    dataset: str | None = None
    device: Accelerator = "cpu"
    intra_op_threads: int | None = Field(default=None, ge=1)
    trace_level: TraceLevel = TraceLevel.MODEL
    settings: EvaluationSettings = Field(default_factory=EvaluationSettings)
    nats_url: str = Field(default="", description="Empty: evaluate without publishing (debugging).")
    assets: list[Path] = Field(min_length=1, description="Asset folders, as --assets.")
    cache_dir: Path
    output_dir: Path = Field(description="LoadGen logs and framework profiles go here.")
    progress_interval_s: float = Field(default=0.5, gt=0)
    give_up_after_s: float = Field(default=60.0, gt=0, description="How long NATS may stay unreachable.")


def read_run_spec(path: Path) -> RunSpec:
    """The run spec in ``path``; ManifestError naming the file and every invalid field otherwise."""
    try:
        return RunSpec.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the run spec: {e.strerror}.") from e
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
        raise ManifestError(
            f"{path}: invalid run spec: {problems}.", hint="See `RunSpec` in mlmodelscope.agent.run."
        ) from e


def query_records(spans: list[Span]) -> list[QueryRecord]:
    """Per-query records from the MODEL-level predict spans, with the mode of the run span they belong to."""
    modes = {s.span_id: _RUN_PHASES[s.name] for s in spans if s.name in _RUN_PHASES}
    records = []
    for span in spans:
        if span.name != MODEL_SPAN_NAME or span.level != TraceLevel.MODEL or span.parent_id not in modes:
            continue
        attributes = span.attributes
        records.append(
            QueryRecord(
                seq=int(attributes["seq"]),
                mode=modes[span.parent_id],
                first_item=int(attributes["first_item"]),
                item_count=int(attributes["item_count"]),
                start_ns=span.start_ns,
                end_ns=span.end_ns,
            )
        )
    return records


class _ProgressReporter:
    """Publishes the driver's progress at a fixed interval from its own thread (nothing on the hot path)."""

    def __init__(self, publisher: RunPublisher | None, progress: RunProgress, interval_s: float) -> None:
        self._publisher = publisher
        self._progress = progress
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._started_s = time.monotonic()

    def __enter__(self) -> _ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            if self._publisher is None:
                continue
            try:
                self._publisher.publish(
                    Progress(
                        phase=self._progress.phase,
                        completed_queries=self._progress.completed_queries,
                        elapsed_s=time.monotonic() - self._started_s,
                    )
                )
            except PublishError:
                return  # the final close() reports it


def run_agent(spec: RunSpec) -> tuple[int, EvaluationResult | None, str]:
    """Evaluate and publish; returns (exit code, result if any, error message if any)."""
    publisher = None
    tracer = Tracer(spec.run_id, spec.trace_level)
    if spec.nats_url:
        publisher = RunPublisher(spec.run_id, PublisherSettings(spec.nats_url, give_up_after_s=spec.give_up_after_s))
        publisher.start()
    progress = RunProgress()
    result: EvaluationResult | None = None
    error = ""
    try:
        if publisher is not None:
            publisher.publish(
                RunStarted(
                    evaluation_id=spec.evaluation_id,
                    model=spec.model,
                    framework=spec.framework,
                    dataset=spec.dataset or "",
                    scenario=spec.settings.scenario,
                    mode=spec.settings.mode,
                    batch_size=spec.settings.batch_size,
                    arch=architecture(),
                    accelerator=spec.device,
                    trace_level=spec.trace_level.name.lower(),
                    epoch_offset_ns=tracer.epoch_offset_ns,
                    started_at=datetime.now(UTC),
                )
            )
        with _ProgressReporter(publisher, progress, spec.progress_interval_s):
            try:
                registry = load_registry(spec.assets)
                store = ArtifactStore(spec.cache_dir, s3=S3Settings.from_env(os.environ))
                request = EvaluationRequest(
                    model=spec.model,
                    framework=spec.framework,
                    dataset=spec.dataset,
                    settings=spec.settings,
                    output_dir=spec.output_dir,
                    device=spec.device,
                    intra_op_threads=spec.intra_op_threads,
                )
                result = run_evaluation(registry, store, request, progress=progress, tracer=tracer)
            except MLModelScopeError as e:
                error = str(e)
        finished_at = datetime.now(UTC)  # the evaluation's end, before its spans are published
        spans = tracer.drain()
        records = query_records(spans)
        if publisher is not None:
            publisher.publish_spans(spans)
            publisher.publish_queries(records)
            publisher.publish(
                RunFinished(
                    status="succeeded" if result is not None else "failed",
                    result=result.model_dump(mode="json") if result is not None else None,
                    error=error,
                    span_count=len(spans),
                    query_count=len(records),
                    finished_at=finished_at,
                )
            )
            publisher.close()
    except PublishError as e:
        return EXIT_UNDELIVERED, result, f"{error} {e}".strip()
    return (EXIT_OK if result is not None else EXIT_FAILED), result, error
