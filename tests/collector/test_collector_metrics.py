"""/metrics: Prometheus names and units, values equal to the true counts, and the same after a restart."""

from __future__ import annotations

import itertools

import pytest

from mlmodelscope.collector.metrics import LATENCY_BUCKETS_NS, LATENCY_BUCKETS_S, bucket_index
from tests.support.collector import (
    LABELS,
    full_run,
    metric_samples,
    query_batch,
    query_latency_ns,
    run_started,
    running_app,
    sample,
    settings_for,
    span_batch,
)

pytestmark = pytest.mark.anyio


def test_latency_buckets_span_50us_to_60s_in_roughly_doubling_steps() -> None:
    assert LATENCY_BUCKETS_S[0] == 50e-6
    assert LATENCY_BUCKETS_S[-1] == 60.0
    ratios = [b / a for a, b in itertools.pairwise(LATENCY_BUCKETS_S)]
    assert all(1.4 <= ratio <= 2.5 for ratio in ratios), ratios
    # Upper bounds are inclusive, as Prometheus's "le".
    assert bucket_index(50_000) == 0
    assert bucket_index(50_001) == 1
    assert bucket_index(LATENCY_BUCKETS_NS[-1] + 1) == len(LATENCY_BUCKETS_NS)


async def test_metrics_equal_true_counts_and_survive_a_restart(database_url: str) -> None:
    settings = settings_for(database_url)
    async with running_app(settings) as running:
        ingestor = running.runtime.ingestor
        for envelope in full_run("run-1", spans=4, queries=10):
            ingestor.ingest(envelope)
        ingestor.ingest(full_run("run-1")[1])  # redelivery: a duplicate
        ingestor.ingest(span_batch("run-1", range(3, 7), sequence=1))  # new id, spans 5 and 6 are new
        ingestor.ingest(query_batch("run-2", range(4), mode="accuracy", item_count=8))  # before run_started
        ingestor.ingest_bytes(b"garbage")
        ingestor.ingest_bytes(b"x" * 600_000)
        response = await running.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        before = metric_samples(response.text)

    expected_buckets: dict[str, float] = {}
    latencies = [query_latency_ns(seq) for seq in range(10)]
    for bound_s, bound_ns in zip(LATENCY_BUCKETS_S, LATENCY_BUCKETS_NS, strict=True):
        expected_buckets[repr(bound_s)] = sum(1 for latency in latencies if latency <= bound_ns)
    expected_buckets["+Inf"] = 10

    def check(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], *, run_2_labelled: bool) -> None:
        assert sample(samples, "mlmodelscope_spans_ingested_total") == 6
        assert sample(samples, "mlmodelscope_messages_duplicate_total") == 1
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="malformed") == 1
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="too_large") == 1
        assert sample(samples, "mlmodelscope_messages_rejected_total", reason="invalid") == 0
        assert sample(samples, "mlmodelscope_messages_ingested_total", kind="spans") == 2
        assert sample(samples, "mlmodelscope_inferences_total", **LABELS) == 10
        assert sample(samples, "mlmodelscope_inference_latency_seconds_count", **LABELS) == 10
        assert sample(samples, "mlmodelscope_inference_latency_seconds_sum", **LABELS) == pytest.approx(
            sum(latencies) / 1e9
        )
        for le, value in expected_buckets.items():
            assert sample(samples, "mlmodelscope_inference_latency_seconds_bucket", le=le, **LABELS) == value, le
        assert sample(samples, "mlmodelscope_accuracy_top1_ratio", **LABELS) == pytest.approx(0.98)
        assert sample(samples, "mlmodelscope_accuracy_ratio", metric="top1", **LABELS) == pytest.approx(0.98)
        assert sample(samples, "mlmodelscope_throughput_samples_per_second", **LABELS) == pytest.approx(1234.5)
        build = [key for key in samples if key[0] == "mlmodelscope_build_info"]
        assert len(build) == 1
        assert samples[build[0]] == 1
        resnet = {**LABELS, "model": "resnet50"}
        assert sample(samples, "mlmodelscope_inferences_total", **resnet) == (32 if run_2_labelled else None)
        # No label names a run or a request.
        for name, labels in samples:
            assert {key for key, _ in labels} <= {*LABELS, "le", "reason", "kind", "version", "metric"}, name

    check(before, run_2_labelled=False)

    # A new app on the same database: the counters start from the stored truth, not from zero.
    async with running_app(settings) as restarted:
        after = metric_samples((await restarted.client.get("/metrics")).text)
        check(after, run_2_labelled=False)
        # run-2's labels arrive: its earlier accuracy queries are counted now (4 calls x 8 items).
        restarted.runtime.ingestor.ingest(run_started("run-2", model="resnet50"))
        labelled = metric_samples((await restarted.client.get("/metrics")).text)
        check(labelled, run_2_labelled=True)

    async with running_app(settings) as again:
        check(metric_samples((await again.client.get("/metrics")).text), run_2_labelled=True)


async def test_metrics_has_no_redirect_and_a_registry_per_app(sqlite_url: str) -> None:
    async with running_app(settings_for(sqlite_url)) as first:
        first.runtime.ingestor.ingest(span_batch("run-x", range(1, 4)))
        async with running_app(settings_for(sqlite_url.replace("collector.db", "other.db"))) as second:
            response = await second.client.get("/metrics", follow_redirects=False)
            assert response.status_code == 200
            assert sample(metric_samples(response.text), "mlmodelscope_spans_ingested_total") == 0
        assert (
            sample(metric_samples((await first.client.get("/metrics")).text), "mlmodelscope_spans_ingested_total") == 3
        )
