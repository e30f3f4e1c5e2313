"""The analyses of stored runs, shared by the REST API and the web pages so both show the same numbers.

Each function takes an open database connection and returns the core's pydantic models (``RunAnalysis``,
``Comparison``, ``Timeline``, ``BatchSweep``) or the API's; unknown runs raise ``UnknownRunError`` (404) and runs
that cannot be analysed (no performance-mode query records) raise the core's ``AnalysisError`` (422).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, func, select

from mlmodelscope.collector.analysis_models import (
    CandidateComparison,
    ComparedRun,
    CompareView,
    RegressionStatus,
)
from mlmodelscope.collector.errors import UnknownRunError
from mlmodelscope.collector.storage import baselines as baseline_store
from mlmodelscope.collector.storage import reads, schema
from mlmodelscope.collector.storage.aggregates import joined_halves, sum_halves
from mlmodelscope.collector.storage.finite_json import describe_replaced, finite_json
from mlmodelscope.collector.task_metrics import TaskComparison, task_comparisons
from mlmodelscope.core.analysis.compare import BootstrapSettings, Comparison, compare
from mlmodelscope.core.analysis.errors import AnalysisError
from mlmodelscope.core.analysis.layers import LayerGroup, canonical_op_type, counts_in_breakdown
from mlmodelscope.core.analysis.regression import RegressionPolicy, RegressionVerdict, judge
from mlmodelscope.core.analysis.run import RunAnalysis, analyze
from mlmodelscope.core.analysis.samples import QuerySample
from mlmodelscope.core.analysis.timeline import Timeline, timeline
from mlmodelscope.core.evaluation.batch_sweep import BatchSweep, batch_sweeps
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.tracing.spans import Span, TraceLevel

log = logging.getLogger(__name__)
MAX_COMPARED_RUNS = 8
# Levels below the chosen model spans a timeline reads (framework calls, their operators, and below).
TIMELINE_DESCENDANT_LEVELS = 4


def run_row(connection: Connection, run_id: str) -> dict[str, Any]:
    row = reads.get_run(connection, run_id)
    if row is None:
        raise UnknownRunError(f"no run '{run_id}'", hint="See GET /api/v1/runs.")
    return row


def compared_run(row: dict[str, Any]) -> ComparedRun:
    return ComparedRun.model_validate(row)


def sample_of(connection: Connection, run_id: str) -> QuerySample:
    rows = reads.list_queries(connection, run_id, "performance")
    if not rows:
        raise AnalysisError(
            f"run '{run_id}' has no performance-mode query records to analyse",
            hint="Analyse a run evaluated in performance (or both) mode at trace level model or above.",
        )
    return QuerySample.from_records([dict(row) for row in rows])


def _span(row: Any) -> Span:
    return Span(
        run_id=row.run_id,
        span_id=row.span_id,
        parent_id=row.parent_id,
        name=row.name,
        level=TraceLevel(row.level),
        start_ns=row.start_ns,
        end_ns=row.end_ns,
        attributes=row.attributes,
    )


def layer_groups(connection: Connection, run_id: str) -> list[LayerGroup]:
    """FRAMEWORK-level operator spans aggregated by the database (a run may have millions of them)."""
    spans = schema.spans
    attributes = spans.c.attributes
    keys = ("node", "op_type", "kind", "depth", "framework", "framework_op")
    node, op_type, kind, depth, framework, framework_op = (attributes[key].as_string() for key in keys)
    columns = (spans.c.name, node, op_type, kind, depth, framework, framework_op)
    rows = connection.execute(
        select(*columns, func.count(), *sum_halves(spans.c.end_ns - spans.c.start_ns))  # no overflow
        .where(spans.c.run_id == run_id, spans.c.level == int(TraceLevel.FRAMEWORK))
        .group_by(*columns)
    )
    totals: dict[tuple[str, str], list[int]] = {}
    for name, node_name, op, span_kind, span_depth, span_framework, raw_op, calls, high_ns, low_ns in rows:
        if not counts_in_breakdown(op, span_kind, span_depth):
            continue
        key = (str(node_name or name), canonical_op_type(str(op), span_framework, raw_op))
        entry = totals.setdefault(key, [0, 0])
        entry[0] += int(calls)
        entry[1] += joined_halves(high_ns, low_ns)
    return [LayerGroup(name, op, calls, ns) for (name, op), (calls, ns) in totals.items()]


def run_analysis(connection: Connection, run_id: str, *, top: int, settings: BootstrapSettings) -> RunAnalysis:
    run_row(connection, run_id)
    sample = sample_of(connection, run_id)
    return analyze(run_id, sample, layer_groups=layer_groups(connection, run_id), top=top, settings=settings)


def timeline_spans(connection: Connection, run_id: str, queries: int) -> tuple[int, list[Span]]:
    """(all spans of the run, the spans a timeline needs): phases, the first ``queries`` model spans of the
    performance run (else of any run phase) and their descendants, read without loading the whole trace."""
    spans = schema.spans
    total = int(connection.execute(select(func.count()).where(spans.c.run_id == run_id)).scalar_one())
    phases = [
        _span(row)
        for row in connection.execute(
            select(spans).where(spans.c.run_id == run_id, spans.c.level == int(TraceLevel.APPLICATION))
        )
    ]
    run_spans = [s.span_id for s in phases if s.name == "performance_run"] or [
        s.span_id for s in phases if s.name.endswith("_run")
    ]
    statement = select(spans).where(spans.c.run_id == run_id, spans.c.level == int(TraceLevel.MODEL))
    if run_spans:
        statement = statement.where(spans.c.parent_id.in_(run_spans))
    chosen = [_span(row) for row in connection.execute(statement.order_by(spans.c.start_ns).limit(queries))]
    found = {s.span_id: s for s in phases + chosen}
    parents = [s.span_id for s in chosen]
    for _depth in range(TIMELINE_DESCENDANT_LEVELS):
        if not parents:
            break
        # A span already found (a parent link looping back) is not read again: every round reads new spans only.
        children = [
            span
            for span in map(
                _span,
                connection.execute(select(spans).where(spans.c.run_id == run_id, spans.c.parent_id.in_(parents))),
            )
            if span.span_id not in found
        ]
        found.update((s.span_id, s) for s in children)
        parents = [s.span_id for s in children]
    return total, list(found.values())


def run_timeline(connection: Connection, run_id: str, *, queries: int) -> Timeline:
    run_row(connection, run_id)
    total, spans = timeline_spans(connection, run_id, queries)
    return timeline(spans, queries=queries).model_copy(update={"span_count": total})


def parse_result(document: Any) -> EvaluationResult | None:
    """The stored result document as an ``EvaluationResult``, or None when it is not one (another schema version,
    or numbers that are not finite): pages and sweeps then show what they can instead of failing."""
    if document is None:
        return None
    finite, replaced = finite_json(document)
    if replaced:
        log.info("a stored result has non-finite numbers and is not analysed: %s", describe_replaced(replaced))
        return None
    try:
        return EvaluationResult.model_validate(finite)
    except ValidationError as e:
        log.info("a stored result is not an EvaluationResult of this version: %s", e.errors()[0]["msg"])
        return None


def result_of(connection: Connection, run_id: str) -> EvaluationResult | None:
    row = reads.get_result(connection, run_id)
    return None if row is None else parse_result(row["result"])


def compare_runs(connection: Connection, run_ids: list[str], settings: BootstrapSettings) -> CompareView:
    """The first run is the baseline; every other one is compared with it."""
    if len(run_ids) < 2:
        raise AnalysisError("a comparison needs at least two runs", hint="Pass ?run=A&run=B (A is the baseline).")
    if len(run_ids) > MAX_COMPARED_RUNS:
        raise AnalysisError(f"at most {MAX_COMPARED_RUNS} runs can be compared at once, got {len(run_ids)}")
    rows = [run_row(connection, run_id) for run_id in run_ids]
    baseline = sample_of(connection, run_ids[0])
    candidates = [
        CandidateComparison(
            candidate=compared_run(row),
            comparison=compare(baseline, sample_of(connection, row["run_id"]), settings),
        )
        for row in rows[1:]
    ]
    accuracy = accuracy_comparisons(connection, run_ids)
    return CompareView(baseline=compared_run(rows[0]), candidates=candidates, accuracy=accuracy)


def accuracy_comparisons(connection: Connection, run_ids: list[str]) -> list[TaskComparison]:
    """The detection/segmentation figures of the runs (their stored results), side by side."""
    return task_comparisons([(run_id, result_of(connection, run_id)) for run_id in dict.fromkeys(run_ids)])


def evaluation_sweeps(connection: Connection, evaluation_id: str) -> list[BatchSweep]:
    """Throughput vs batch size of each (model, framework, device, scenario) the evaluation ran at 2+ batch sizes."""
    runs = schema.runs
    documents = connection.execute(
        select(runs.c.result).where(
            runs.c.evaluation_id == evaluation_id, runs.c.status == "succeeded", runs.c.result.is_not(None)
        )
    ).scalars()
    results = [parse_result(document) for document in documents]
    return batch_sweeps([result for result in results if result is not None])


def comparison_with_baseline(
    connection: Connection, run_id: str, baseline_run_id: str, settings: BootstrapSettings
) -> Comparison:
    return compare(sample_of(connection, baseline_run_id), sample_of(connection, run_id), settings)


def regression_status(connection: Connection, run_id: str, policy: RegressionPolicy) -> RegressionStatus:
    """The stored check of the run, or (for runs older than their baseline) the same rule applied now."""
    row = run_row(connection, run_id)
    stored = baseline_store.get_check(connection, run_id)
    if stored is not None:
        report = stored["report"]
        return RegressionStatus(
            run_id=run_id,
            state="regressed" if stored["regressed"] else "ok",
            stored=True,
            baseline_run_id=stored["baseline_run_id"],
            verdict=RegressionVerdict.model_validate(report["verdict"]),
            comparison=Comparison.model_validate(report["comparison"]),
            checked_at=stored["checked_at"],
        )
    labels = baseline_store.labels_of_run(row)
    baseline = baseline_store.baseline_for(connection, labels) if labels is not None else None
    if baseline is None:
        return RegressionStatus(run_id=run_id, state="no baseline", stored=False)
    if baseline["run_id"] == run_id:
        return RegressionStatus(run_id=run_id, state="baseline", stored=False, baseline_run_id=run_id)
    comparison = comparison_with_baseline(connection, run_id, baseline["run_id"], BootstrapSettings())
    verdict = judge(comparison, policy)
    return RegressionStatus(
        run_id=run_id,
        state="regressed" if verdict.regressed else "ok",
        stored=False,
        baseline_run_id=baseline["run_id"],
        verdict=verdict,
        comparison=comparison,
    )
