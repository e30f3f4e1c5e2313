"""Complete, valid ``RunResult`` documents, as an agent's ``run_finished`` carries them, for the collector tests.

The bus contract types ``RunFinished.result`` as the core's ``RunResult``, so a test cannot send a partial dict:
these builders give every required part, with figures chosen so each one found in a response can only have come
from the field it is checked against (top-1 0.98, 1234.5 samples/s, a seed above 2**63 that must survive storage).
"""

from __future__ import annotations

from datetime import UTC, datetime

from mlmodelscope.core.evaluation.environment import Environment, GpuInfo
from mlmodelscope.core.evaluation.results import (
    AccuracyResult,
    LatencyStats,
    LoadTime,
    PerformanceResult,
    ResourceRef,
    RunResult,
    Throughput,
    Verdict,
)
from mlmodelscope.core.evaluation.settings import EvaluationSettings, Seeds

BIG_SEED = 11176391829184272374  # above 2**63: a signed 64-bit column would break it
VERDICT = Verdict(valid=True, result="VALID", constraints=[], recommendations=[], early_stopping=[])
ENVIRONMENT = Environment(
    hostname="h",
    os="linux",
    kernel="6",
    python="3.11",
    arch="amd64",
    cpu_model="cpu",
    cpu_count_logical=2,
    cpu_count_physical=1,
    memory_total_bytes=2**30,
    gpu=GpuInfo(available=False),
    packages={},
)
LOAD_TIME = LoadTime(artifact_fetch_s=0.01, dataset_s=0.5, model_load_s=0.25, warmup_s=0.1)


def latency_stats(p50_ns: int = 800_000) -> LatencyStats:
    return LatencyStats(
        count=1000,
        min_ns=p50_ns // 2,
        max_ns=p50_ns * 3,
        mean_ns=p50_ns * 1.1,
        trimmed_mean_20_ns=float(p50_ns),
        p50_ns=p50_ns,
        p90_ns=p50_ns * 2,
        p95_ns=p50_ns * 2,
        p97_ns=p50_ns * 2,
        p99_ns=p50_ns * 3,
        p99_9_ns=p50_ns * 3,
    )


def performance(samples_per_s: float = 1234.5) -> PerformanceResult:
    return PerformanceResult(
        verdict=VERDICT,
        latency=latency_stats(),
        loadgen_latency_ns={"p50": 810_000.0},
        throughput=Throughput(samples_per_s=samples_per_s, queries_per_s=1000.0, loadgen_metric="qps"),
        queries=1000,
        samples=1000,
        duration_s=1.0,
        effective_settings={},
        loadgen_requested_settings={},
        log_dir="/runs/r/performance",
    )


def classification_result(
    *, top1: float = 0.98, samples_per_s: float = 1234.5, run_id: str = "result-1", model: str = "digits-cnn"
) -> RunResult:
    """A classification run with an accuracy and a performance part."""
    return RunResult(
        id=run_id,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        model=ResourceRef(name=model, version="1.0"),
        framework=ResourceRef(name="onnxruntime", version="1.20.0"),
        dataset=ResourceRef(name="digits", version="1"),
        device="cpu",
        requested_settings=EvaluationSettings(mode="both", seeds=Seeds(sample_index=BIG_SEED)),
        load_time=LOAD_TIME,
        accuracy=AccuracyResult(top1=top1, top5=1.0, count=450, verdict=VERDICT, log_dir="/runs/r/accuracy"),
        performance=performance(samples_per_s),
        environment=ENVIRONMENT,
    )
