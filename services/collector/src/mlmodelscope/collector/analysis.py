"""The analyses of stored runs, shared by the REST API and the web pages so both show the same numbers.

Each function takes an open database connection and returns the core's pydantic models (``RunAnalysis``,
``Comparison``, ``Timeline``, ``BatchSweep``) or the API's; unknown runs raise ``UnknownRunError`` (404) and runs
that cannot be analysed (no performance-mode query records) raise the core's ``AnalysisError`` (422).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import Connection, select

from mlmodelscope.collector.analysis_models import (
    CandidateComparison,
    ComparedRun,
    CompareView,
    RegressionStatus,
)
from mlmodelscope.collector.errors import UnknownRunError
from mlmodelscope.collector.storage import baselines as baseline_store
from mlmodelscope.collector.storage import reads, schema, span_store
from mlmodelscope.collector.storage.finite_json import describe_replaced, finite_json
from mlmodelscope.collector.task_metrics import TaskComparison, task_comparisons
from mlmodelscope.core.analysis.compare import BootstrapSettings, Comparison, compare
from mlmodelscope.core.analysis.errors import AnalysisError
from mlmodelscope.core.analysis.layers import LayerGroup, canonical_op_type, counts_in_breakdown
from mlmodelscope.core.analysis.query_samples import QuerySample
from mlmodelscope.core.analysis.regression import RegressionPolicy, RegressionVerdict, judge
from mlmodelscope.core.analysis.run_analysis import RunAnalysis, analyze
from mlmodelscope.core.analysis.timeline import Timeline, timeline
from mlmodelscope.core.evaluation.batch_sweep import BatchSweep, batch_sweeps
from mlmodelscope.core.evaluation.results import RunResult
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
    queries = span_store.run_queries(connection, run_id, "performance")
    if not len(queries):
        raise AnalysisError(
            f"run '{run_id}' has no performance-mode query records to analyse",
            hint="Analyse a run evaluated in performance (or both) mode at trace level model or above.",
        )
    return QuerySample.from_intervals(queries.start_ns, queries.end_ns, queries.item_count)


_LAYER_KEYS = ("node", "op_type", "kind", "depth", "framework", "framework_op")


def layer_groups(connection: Connection, run_id: str) -> list[LayerGroup]:
    """FRAMEWORK-level operator spans aggregated with numpy (a run may have millions of them): grouped by name,
    attribute text and the integer attributes among the layer keys, each group's attributes read once."""
    columns = span_store.run_columns(connection, run_id, levels=[TraceLevel.FRAMEWORK])
    if not len(columns):
        return []
    int_keys = [key for key in _LAYER_KEYS if key in columns.ints]
    keys = [columns.name_index.astype(np.int64), columns.attribute_index.astype(np.int64)]
    for key in int_keys:
        values, present = columns.int_attribute(key) or (np.zeros(0, np.int64), np.zeros(0, np.bool_))
        keys += [values, present.astype(np.int64)]
    stacked = np.stack(keys, axis=1)
    groups, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    durations = (columns.end_ns - columns.start_ns)[order]
    boundaries = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    # Exact sums of durations up to 2**63 each: 32-bit halves summed apart (no int64 overflow), joined in Python.
    high = np.add.reduceat(durations >> 32, boundaries).tolist()
    low = np.add.reduceat(durations & 0xFFFFFFFF, boundaries).tolist()
    sums = [(h << 32) + lo for h, lo in zip(high, low, strict=True)]
    calls = np.diff(np.r_[boundaries, len(durations)])
    tables = columns.attribute_dicts()
    totals: dict[tuple[str, str], list[int]] = {}
    for group, group_calls, group_ns in zip(groups.tolist(), calls.tolist(), sums, strict=True):
        name = columns.names[group[0]]
        attributes: dict[str, Any] = dict(tables[group[1]])
        for i, key in enumerate(int_keys):
            if group[3 + 2 * i]:
                attributes[key] = group[2 + 2 * i]
        node, op, kind, depth, framework, framework_op = (_text_or_none(attributes.get(key)) for key in _LAYER_KEYS)
        if not counts_in_breakdown(op, kind, depth):
            continue
        layer = (str(node or name), canonical_op_type(str(op), framework, framework_op))
        entry = totals.setdefault(layer, [0, 0])
        entry[0] += int(group_calls)
        entry[1] += int(group_ns)
    return [LayerGroup(name, op, calls, ns) for (name, op), (calls, ns) in totals.items()]


def _text_or_none(value: Any) -> str | None:
    """An attribute as the old JSON-path read gave it: text, or None when absent (booleans as JSON spells them)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_analysis(connection: Connection, run_id: str, *, top: int, settings: BootstrapSettings) -> RunAnalysis:
    run_row(connection, run_id)
    sample = sample_of(connection, run_id)
    return analyze(run_id, sample, layer_groups=layer_groups(connection, run_id), top=top, settings=settings)


def timeline_spans(connection: Connection, run_id: str, queries: int) -> tuple[int, list[Span]]:
    """(all spans of the run, the spans a timeline needs): phases, the first ``queries`` model spans of the
    performance run (else of any run phase) and their descendants, selected with numpy from the run's columns;
    only those few become ``Span`` objects."""
    columns = span_store.run_columns(connection, run_id)
    total = len(columns)
    phases = np.flatnonzero(columns.level == int(TraceLevel.APPLICATION))
    phase_names = [columns.names[i] for i in columns.name_index[phases].tolist()]
    phase_ids = columns.span_id[phases].tolist()
    run_spans = [i for i, n in zip(phase_ids, phase_names, strict=True) if n == "performance_run"] or [
        i for i, n in zip(phase_ids, phase_names, strict=True) if n.endswith("_run")
    ]
    model = columns.level == int(TraceLevel.MODEL)
    if run_spans:
        model &= np.isin(columns.parent_id, np.array(run_spans, dtype=np.int64))
    candidates = np.flatnonzero(model)
    chosen = candidates[np.argsort(columns.start_ns[candidates], kind="stable")[:queries]]
    found = np.zeros(total, np.bool_)
    found[phases] = True
    found[chosen] = True
    parents = columns.span_id[chosen]
    for _depth in range(TIMELINE_DESCENDANT_LEVELS):
        if not len(parents):
            break
        # A span already found (a parent link looping back) is not read again: every round reads new spans only.
        children = np.isin(columns.parent_id, parents) & ~found
        found |= children
        parents = columns.span_id[children]
    return total, list(columns.select(np.flatnonzero(found)).spans(run_id))


def run_timeline(connection: Connection, run_id: str, *, queries: int) -> Timeline:
    run_row(connection, run_id)
    total, spans = timeline_spans(connection, run_id, queries)
    return timeline(spans, queries=queries).model_copy(update={"span_count": total})


def parse_result(document: Any) -> RunResult | None:
    """The stored result document as an ``RunResult``, or None when it is not one (another schema version,
    or numbers that are not finite): pages and sweeps then show what they can instead of failing."""
    if document is None:
        return None
    finite, replaced = finite_json(document)
    if replaced:
        log.info("a stored result has non-finite numbers and is not analysed: %s", describe_replaced(replaced))
        return None
    try:
        return RunResult.model_validate(finite)
    except ValidationError as e:
        log.info("a stored result is not an RunResult of this version: %s", e.errors()[0]["msg"])
        return None


def result_of(connection: Connection, run_id: str) -> RunResult | None:
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
