"""One agent run: the unit a Kubernetes Job (or a local agent process) executes.

``python -m mlmodelscope.agent --spec run.json`` (or ``--spec-env VAR``) reads a ``RunSpec`` (the core's run
contract), builds a registry of exactly the Model, Framework and Dataset it carries (no asset folder is read),
evaluates, and publishes everything to NATS JetStream: ``run_started`` first, ``progress``, MODEL spans and per-query
records while it runs (``agent.streaming``: from a bounded buffer, spilled to the run folder while NATS is slow),
then the remaining spans and records in batches, and ``run_finished`` with the full result (or the error) last.
The agent only connects outward, to NATS (with the token in ``MLMODELSCOPE_NATS_TOKEN`` when the server requires
one): nothing listens on it.

Exit codes: 0 the run succeeded, 1 the evaluation failed (the failure is published), 2 the messages could not be
delivered (NATS unreachable for ``give_up_after_s``: everything unsent, the result included, is then kept in
``<run dir>/unpublished/<run>.jsonl`` for ``mlmodelscope runs import``), 143 (128 + SIGTERM) the agent was told to
stop: it published the run as ``cancelled`` with the spans and queries of the phases it had finished, within
``cancel_grace_s``, without waiting for LoadGen to end its test.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from mlmodelscope.agent.bus.connection import nats_token
from mlmodelscope.agent.bus.publisher import PublishError, PublisherSettings, RunPublisher
from mlmodelscope.agent.bus.spool import UnpublishedSpool
from mlmodelscope.agent.sigterm import SigtermWatcher
from mlmodelscope.agent.streaming import SPILL_PART, SpanStreamer, StreamingProgress, query_record, stream_settings
from mlmodelscope.core.artifacts.settings import DownloadSettings, S3Settings
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import ManifestError, MLModelScopeError
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.evaluation.environment import architecture
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.messages import Progress, QueryMode, QueryRecord, RunFinished, RunStarted
from mlmodelscope.core.run_contract import RunSpec
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import MODEL_SPAN_NAME, Tracer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNDELIVERED = 2
EXIT_CANCELLED = 128 + 15  # as a shell reports a process ended by SIGTERM
_RUN_PHASES: dict[str, QueryMode] = {"accuracy_run": "accuracy", "performance_run": "performance"}


def read_run_spec(path: Path) -> RunSpec:
    """The run spec in ``path``; ManifestError naming the file and every invalid field otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the run spec: {e.strerror}.") from e
    spec = _parse_run_spec(text, str(path))
    return spec if spec.run_dir is not None else spec.model_copy(update={"run_dir": path.resolve().parent})


def run_spec_from_env(name: str, environ: Mapping[str, str]) -> RunSpec:
    """The run spec in environment variable ``name`` (how the operator's Jobs pass it); ManifestError naming the
    variable and every invalid field otherwise."""
    text = environ.get(name)
    if not text:
        state = "is not set" if name not in environ else "is empty"
        raise ManifestError(
            f"environment variable {name} {state}: it should hold the run spec.",
            hint=f"Set {name} to the RunSpec JSON (mlmodelscope.core.run_contract.RunSpec), or pass --spec FILE.",
        )
    return _parse_run_spec(text, f"${name}")


def _parse_run_spec(text: str, source: str) -> RunSpec:
    try:
        return RunSpec.model_validate_json(text)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or '(document)'}: {str(p['msg']).removeprefix('Value error, ')}"
            for p in e.errors()
        )
        raise ManifestError(
            f"{source}: invalid run spec: {problems}.",
            hint="See `RunSpec` in mlmodelscope.core.run_contract; a resource whose sha256 does not match its spec "
            "was changed after the run spec was written: write the run spec again.",
        ) from e


def query_records(spans: list[Span]) -> list[QueryRecord]:
    """Per-query records from the MODEL-level predict spans, with the mode of the run span they belong to."""
    modes = {s.span_id: _RUN_PHASES[s.name] for s in spans if s.name in _RUN_PHASES}
    return [
        query_record(span, modes[span.parent_id])
        for span in spans
        if span.name == MODEL_SPAN_NAME and span.level == TraceLevel.MODEL and span.parent_id in modes
    ]


def query_parents(spans: list[Span]) -> list[tuple[int, QueryMode]]:
    """(phase span id, mode) of the run phases among ``spans``: their MODEL spans are the query records."""
    return [(s.span_id, _RUN_PHASES[s.name]) for s in spans if s.name in _RUN_PHASES]


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
            if self._publisher is None or not self._publisher.delivering:
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


class _Finisher:
    """Publishes a run's last messages exactly once: after the evaluation, or at once on SIGTERM (from the watcher
    thread, while the main thread may still be inside LoadGen)."""

    def __init__(
        self,
        spec: RunSpec,
        publisher: RunPublisher | None,
        tracer: Tracer,
        progress: RunProgress,
        streamer: SpanStreamer | None = None,
    ) -> None:
        self._spec = spec
        self._publisher = publisher
        self._tracer = tracer
        self._progress = progress
        self._streamer = streamer
        self._lock = threading.Lock()

    def finish(
        self,
        status: Literal["succeeded", "failed", "cancelled"],
        result: RunResult | None,
        error: str,
        *,
        close_timeout_s: float | None = None,
    ) -> str | None:
        """Publish spans, queries and run_finished, and wait for their acks; returns the delivery error ("" when
        none). A second call (the other thread) waits for the first to end, publishes nothing and returns None."""
        if not self._lock.acquire(blocking=False):
            self._lock.acquire()
            return None
        streamer = self._streamer
        if streamer is not None:
            streamer.stop(timeout_s=close_timeout_s)
        spans = self._tracer.drain()
        records = query_records(spans)
        if self._publisher is None:
            return ""
        streamed_spans = streamer.spans_sent if streamer is not None else 0
        streamed_queries = streamer.queries_sent if streamer is not None else 0
        try:
            if streamer is not None:
                streamer.redeliver()
            self._publisher.publish_span_columns(spans, query_parents(spans))
            self._publisher.publish(
                RunFinished(
                    status=status,
                    result=result,
                    error=error,
                    span_count=streamed_spans + len(spans),
                    query_count=streamed_queries + len(records),
                    finished_at=datetime.now(UTC),
                )
            )
            self._publisher.close(timeout_s=close_timeout_s)
        except PublishError as e:
            return str(e)
        finally:
            if streamer is not None and self._publisher.everything_kept:
                streamer.spill.remove()
        return ""

    def cancel(self) -> None:
        """SIGTERM: publish the run as cancelled with what the finished phases recorded, then end the process
        (LoadGen cannot be stopped from outside its test; the pod is going away anyway)."""
        phase, completed = self._progress.phase, self._progress.completed_queries
        error = f"cancelled: the agent received SIGTERM during the {phase} phase, after {completed:,} queries."
        undelivered = self.finish("cancelled", None, error, close_timeout_s=self._spec.cancel_grace_s)
        if undelivered is None:
            return  # the run had ended and was being published: the main thread finishes it and exits
        sys.stderr.write(f"error: {error}{' ' + undelivered if undelivered else ''}\n")
        sys.stderr.flush()
        os._exit(EXIT_CANCELLED)


def run_agent(spec: RunSpec, source: str = "the run spec") -> tuple[int, RunResult | None, str]:
    """Evaluate and publish; returns (exit code, result if any, error message if any); ``source`` names the spec
    (its file, ``$VARIABLE``) in errors. On SIGTERM the process ends from inside (exit code ``EXIT_CANCELLED``)
    once the cancelled run is published."""
    publisher = None
    tracer = Tracer(spec.run_id, spec.trace_level)
    if spec.nats_url:
        settings = PublisherSettings(spec.nats_url, give_up_after_s=spec.give_up_after_s, token=nats_token(os.environ))
        publisher = RunPublisher(spec.run_id, settings, UnpublishedSpool(spec.spool_dir, spec.run_id))
    progress: RunProgress = RunProgress()
    streamer = None
    if publisher is None:  # nothing publishes the MODEL spans: the driver's pump drops their rows once read
        tracer.keep_model_spans = False
        if tracer.enabled(TraceLevel.FRAMEWORK):  # but a profile window's first calls are attributed after the run
            tracer.retain_model_spans = spec.settings.framework_trace_max_calls
    if publisher is not None and tracer.enabled(TraceLevel.MODEL):
        if tracer.enabled(TraceLevel.FRAMEWORK):  # the profile window's model spans are attributed after the run
            tracer.retain_model_spans = spec.settings.framework_trace_max_calls
        progress = StreamingProgress(tracer=tracer)
        spill = UnpublishedSpool(spec.spool_dir, spec.run_id, SPILL_PART)
        streamer = SpanStreamer(tracer, publisher, spill, stream_settings(os.environ))
    finisher = _Finisher(spec, publisher, tracer, progress, streamer)
    with SigtermWatcher(finisher.cancel):
        if publisher is not None:
            publisher.start()
        return _evaluate_and_publish(spec, source, publisher, tracer, progress, finisher, streamer)


def _evaluate_and_publish(
    spec: RunSpec,
    source: str,
    publisher: RunPublisher | None,
    tracer: Tracer,
    progress: RunProgress,
    finisher: _Finisher,
    streamer: SpanStreamer | None,
) -> tuple[int, RunResult | None, str]:
    result: RunResult | None = None
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
        if streamer is not None:
            streamer.start()  # after run_started: the collector learns the run's labels first
        with _ProgressReporter(publisher, progress, spec.progress_interval_s):
            try:
                registry = spec.resources.registry(source)  # exactly what the spec carries
                store = ArtifactStore(
                    spec.cache_dir,
                    s3=S3Settings.from_env(os.environ),
                    downloads=DownloadSettings.from_env(os.environ),
                )
                request = RunRequest(
                    model=spec.model,
                    framework=spec.framework,
                    dataset=spec.dataset,
                    settings=spec.settings,
                    output_dir=spec.output_dir,
                    device=spec.device,
                    intra_op_threads=spec.intra_op_threads,
                )
                result = execute_run(registry, store, request, progress=progress, tracer=tracer)
            except MLModelScopeError as e:
                error = str(e)
    except PublishError as e:
        return EXIT_UNDELIVERED, result, f"{error} {e}".strip()
    undelivered = finisher.finish("succeeded" if result is not None else "failed", result, error)
    if undelivered is None:  # SIGTERM came first: the watcher published the run as cancelled (and ends the process)
        return EXIT_CANCELLED, None, "cancelled: the agent received SIGTERM."
    if undelivered:
        return EXIT_UNDELIVERED, result, f"{error} {undelivered}".strip()
    return (EXIT_OK if result is not None else EXIT_FAILED), result, error
