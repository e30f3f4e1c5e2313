"""Reading LoadGen's verdict and figures back from its detail log.

LoadGen writes every setting and result as a ``:::MLLOG {json}`` line to ``mlperf_log_detail.txt``. That log,
not the human summary, is the machine-readable record: we parse it into a ``LoadGenReport`` holding the VALID /
INVALID verdict with a reason per constraint, LoadGen's recommendations, its early-stopping estimate, its latency
percentiles and throughput, and the *effective* settings it ran with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mlmodelscope.core.errors import EvaluationError

DETAIL_LOG = "mlperf_log_detail.txt"
SUMMARY_LOG = "mlperf_log_summary.txt"
_PREFIX = ":::MLLOG "
_SENTENCE_END = re.compile(r"(?<=\.)\s+")


class ConstraintCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    satisfied: bool
    reason: str


class LoadGenReport(BaseModel):
    """LoadGen's own figures for one performance run (latencies in ns as LoadGen measured them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    valid: bool
    constraints: list[ConstraintCheck]
    recommendations: list[str]
    early_stopping: list[str]
    errors: list[str]
    query_count: int
    throughput_samples_per_s: float
    throughput_metric: str
    latency_ns: dict[str, float]
    effective_settings: dict[str, Any]
    requested_settings: dict[str, Any]


def read_detail_log(path: Path) -> dict[str, Any]:
    """key -> value of every MLLOG line (later lines win), plus 'error_*' and 'warning_*' lists."""
    values: dict[str, Any] = {"_errors": [], "_warnings": []}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise EvaluationError(f"LoadGen wrote no detail log at {path}: {e.strerror}.") from e
    for line in lines:
        if not line.startswith(_PREFIX):
            continue
        try:
            entry = json.loads(line[len(_PREFIX) :])
        except json.JSONDecodeError:
            continue  # LoadGen never writes these, but a truncated last line must not hide the rest
        key, value = entry.get("key"), entry.get("value")
        metadata = entry.get("metadata", {})
        if metadata.get("is_error"):
            values["_errors"].append(f"{key}: {value}")
        elif metadata.get("is_warning"):
            values["_warnings"].append(f"{key}: {value}")
        values[key] = value
    return values


def _split_bullets(text: str) -> list[str]:
    return [part.strip() for part in text.split(" * ") if part.strip().strip("*").strip()]


def _constraints(log: dict[str, Any]) -> list[ConstraintCheck]:
    duration_ms = log.get("effective_min_duration_ms", 0)
    min_queries = log.get("effective_min_query_count", 0)
    checks = [
        ConstraintCheck(
            name="min_duration",
            satisfied=bool(log.get("result_min_duration_met")),
            reason=f"the test must run at least {duration_ms} ms"
            + ("" if log.get("result_min_duration_met") else "; it ended sooner"),
        ),
        ConstraintCheck(
            name="min_queries",
            satisfied=bool(log.get("result_min_queries_met")),
            reason=f"at least {min_queries} queries must complete; {log.get('result_query_count', 0)} did",
        ),
        ConstraintCheck(
            name="early_stopping",
            satisfied=bool(log.get("early_stopping_met")),
            reason=" ".join(_split_bullets(str(log.get("early_stopping_result", "")))) or "not applicable",
        ),
    ]
    if "result_perf_constraints_met" in log:
        bound = log.get("effective_target_latency_ns", 0)
        percentile = log.get("effective_target_latency_percentile", 0)
        checks.append(
            ConstraintCheck(
                name="latency_bound",
                satisfied=bool(log["result_perf_constraints_met"]),
                reason=f"the {percentile * 100:g}th percentile latency must be <= {bound} ns; "
                f"{log.get('result_overlatency_query_count', 0)} queries were over",
            )
        )
    return checks


def _throughput(log: dict[str, Any]) -> tuple[float, str]:
    for key in ("result_samples_per_second", "result_completed_samples_per_sec", "result_qps_with_loadgen_overhead"):
        if key in log:
            return float(log[key]), key.removeprefix("result_")
    return 0.0, "none"


def parse_report(log_dir: Path) -> LoadGenReport:
    log = read_detail_log(log_dir / DETAIL_LOG)
    if "result_validity" not in log:
        problems = "; ".join(log["_errors"]) or "no result was logged"
        raise EvaluationError(f"LoadGen did not finish the test ({problems}).", hint=f"See {log_dir / DETAIL_LOG}.")
    throughput, metric = _throughput(log)
    latency = {
        key.removeprefix("result_").removesuffix("_ns"): float(value)
        for key, value in log.items()
        if key.startswith("result_") and key.endswith("latency_ns")
    }
    if "early_stopping_latency_ss" in log:
        latency["early_stopping_estimate"] = float(log["early_stopping_latency_ss"])
    return LoadGenReport(
        valid=log["result_validity"] == "VALID",
        constraints=_constraints(log),
        recommendations=[r for r in _SENTENCE_END.split(str(log.get("result_invalid_reason", "")).strip()) if r],
        early_stopping=_split_bullets(str(log.get("early_stopping_result", ""))),
        errors=list(log["_errors"]),
        query_count=int(log.get("result_query_count", 0)),
        throughput_samples_per_s=throughput,
        throughput_metric=metric,
        latency_ns=latency,
        effective_settings={k.removeprefix("effective_"): v for k, v in log.items() if k.startswith("effective_")},
        requested_settings={k.removeprefix("requested_"): v for k, v in log.items() if k.startswith("requested_")},
    )
