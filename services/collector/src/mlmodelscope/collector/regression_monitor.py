"""Compares each new run with the baseline of its labels once it is complete, stores the check and updates metrics.

A background task of the app calls ``check_pending`` every ``regression_check_interval_s``: it finds succeeded runs
that finished after their baseline was set and have no check yet, waits until every span and query the agent
announced is stored (a check on half the queries would be wrong), applies the regression rule
(``core.analysis.regression``) and stores the verdict in ``regression_checks`` with the comparison behind it.
Kept out of the ingest path on purpose: ingestion stays one short transaction per message.
"""

from __future__ import annotations

import logging
from typing import Any

from mlmodelscope.collector import analysis
from mlmodelscope.collector.metrics import CollectorMetrics, RegressionState, RunLabels
from mlmodelscope.collector.storage import baselines as store
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.timeutil import utc
from mlmodelscope.core.analysis.compare import BootstrapSettings
from mlmodelscope.core.analysis.errors import AnalysisError
from mlmodelscope.core.analysis.regression import RegressionPolicy, judge

log = logging.getLogger(__name__)


def metric_labels(row: dict[str, Any]) -> RunLabels:
    return RunLabels(
        str(row["model"]),
        str(row["framework"]),
        str(row["arch"]),
        str(row["accelerator"]),
        str(row["scenario"]),
        str(row["batch_size"]),
    )


def state_of(check: dict[str, Any]) -> RegressionState:
    return RegressionState(
        at=utc(check["checked_at"]),
        regressed=bool(check["regressed"]),
        p99_ratio=float(check["p99_ratio"]),
        throughput_ratio=float(check["throughput_ratio"]),
    )


def seed_metrics(database: Database, metrics: CollectorMetrics) -> None:
    """Load every stored check into the regression gauges (at startup)."""
    with database.read() as connection:
        for check in store.all_checks(connection):
            metrics.apply_regression(metric_labels(check), state_of(check))


class RegressionMonitor:
    def __init__(self, database: Database, metrics: CollectorMetrics, policy: RegressionPolicy) -> None:
        self.database = database
        self.metrics = metrics
        self.policy = policy
        self._unanalysable: set[str] = set()

    def check_pending(self) -> list[str]:
        """Check every run that is due; returns the run ids checked now."""
        with self.database.read() as connection:
            candidates = [r for r in store.unchecked_candidates(connection) if r not in self._unanalysable]
        checked = []
        for run_id in candidates:
            if self._check(run_id):
                checked.append(run_id)
        return checked

    def _check(self, run_id: str) -> bool:
        with self.database.write() as connection:
            row = analysis.run_row(connection, run_id)
            if row["received_query_count"] < (row["expected_query_count"] or 0) or row["received_span_count"] < (
                row["expected_span_count"] or 0
            ):
                return False  # not complete yet: the next round checks it
            labels = store.labels_of_run(row)
            baseline = store.baseline_for(connection, labels) if labels is not None else None
            if labels is None or baseline is None:
                return False
            try:
                comparison = analysis.comparison_with_baseline(
                    connection, run_id, baseline["run_id"], BootstrapSettings()
                )
            except AnalysisError as e:
                log.info("run %s is not checked for regressions: %s", run_id, e.message)
                self._unanalysable.add(run_id)
                return False
            verdict = judge(comparison, self.policy)
            check = {
                **labels,
                "run_id": run_id,
                "baseline_run_id": baseline["run_id"],
                "regressed": verdict.regressed,
                "p99_ratio": verdict.p99_ratio,
                "throughput_ratio": verdict.throughput_ratio,
                "report": {
                    "verdict": verdict.model_dump(mode="json"),
                    "comparison": comparison.model_dump(mode="json"),
                },
            }
            store.record_check(connection, check)
            stored = store.get_check(connection, run_id)
        assert stored is not None
        self.metrics.apply_regression(metric_labels(stored), state_of(stored))
        if verdict.regressed:
            log.warning("run %s regressed against %s: %s", run_id, baseline["run_id"], "; ".join(verdict.reasons))
        return True
