"""Operator scale: 100 Evaluations of 4 runs each applied at once against KMock; time until all 400 Jobs exist.

Prints, per round: (a) the floor, a bare client creating the same 400 Job manifests straight into a fresh KMock
(50 requests in flight), and (b) the real operator (kopf + our reconciler) turning 100 Evaluations, POSTed
concurrently, into those 400 Jobs; the ratio (b)/(a); the reconcile latency (kopf handler or watch event to
status written, including the wait for a pass of the same Evaluation) and each pass's own duration, as p50/p99
over every pass; and how many passes ran.

Everything runs in one event loop: KMock, the operator, and the client. The machine's two cores are shared, so
compare the ratio rather than absolute times.

    .venv/bin/python benchmarks/operator_scale.py [--evaluations 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the KMock emulator with its workarounds lives with the tests

from mlmodelscope.operator import jobs, planning  # noqa: E402
from mlmodelscope.operator.evaluation import EvaluationSpec  # noqa: E402
from tests.support.operator_harness import (  # noqa: E402
    Api,
    Emulator,
    collection,
    kube_api,
    operator,
    operator_settings,
    register_assets,
    scratch_assets,
)

RUNS_PER_EVALUATION = 4
SPEC: dict[str, Any] = {
    "models": ["digits-cnn"],
    "frameworks": ["onnxruntime"],
    "targets": [{"arch": "amd64"}, {"arch": "arm64"}],
    "batch_sizes": [1, 8],
    "parallelism": 4,
    "min_duration_s": 1,
}


_IN_FLIGHT: set[int] = set()


class ShortMemoryEmulator(Emulator):
    """KMock matches every request against its whole request history (O(n) per request, O(n^2) per run), which at
    this scale would measure KMock rather than the operator: it remembers only the requests still being served
    (no reaction here counts past requests)."""

    async def _handle(self, request: Any) -> Any:
        _IN_FLIGHT.add(id(request))
        self._requests[:] = [r for r in self._requests if id(r) in _IN_FLIGHT]
        try:
            return await super()._handle(request)
        finally:
            _IN_FLIGHT.discard(id(request))


def _evaluation(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "mlmodelscope.org/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": f"scale-{index:03d}"},
        "spec": SPEC,
    }


def _job_count(emulator: Any) -> int:
    return sum(1 for (resource, _, _), obj in emulator.objects.items() if resource.plural == "jobs" and not obj.deleted)


async def _wait_for_jobs(emulator: Any, count: int, timeout_s: float) -> float:
    started = time.perf_counter()
    while _job_count(emulator) < count:
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"only {_job_count(emulator)} of {count} Jobs after {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def _bare(assets: Path, workdir: Path, evaluations: int) -> float:
    """The same Job manifests, created directly (no kopf, no planning, no status)."""
    settings = operator_settings("http://unused", workdir, assets)
    spec = EvaluationSpec.model_validate(SPEC)
    manifests = []
    catalog = await _catalog(assets)
    for index in range(evaluations):
        name = f"scale-{index:03d}"
        for run in planning.plan(name, f"uid-{index}", spec, catalog, settings):
            body = jobs.run_spec(run, f"default/{name}", spec, settings).model_dump_json()
            manifests.append(
                jobs.build_job(
                    run,
                    evaluation=name,
                    namespace="default",
                    uid=f"uid-{index}",
                    spec=spec,
                    settings=settings,
                    run_spec_json=body,
                )
            )
    async with kube_api(ShortMemoryEmulator) as (emulator, url), httpx.AsyncClient(base_url=url, timeout=60) as client:
        gate = asyncio.Semaphore(50)

        async def create(manifest: dict[str, Any]) -> None:
            async with gate:
                response = await client.post(collection("jobs"), json=manifest)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(create(m) for m in manifests))
        elapsed = time.perf_counter() - started
        assert _job_count(emulator) == len(manifests) == evaluations * RUNS_PER_EVALUATION
        return elapsed


async def _catalog(assets: Path) -> planning.ResourceCatalog:
    from mlmodelscope.core.manifests.resources import Dataset, Framework, Model

    def load(kind: Any, path: str) -> Any:
        return kind.model_validate(yaml.safe_load((assets / path).read_text(encoding="utf-8")))

    return planning.ResourceCatalog.of(
        "default",
        models=[load(Model, "models/digits-cnn.yaml")],
        frameworks=[load(Framework, "frameworks/onnxruntime.yaml")],
        datasets=[load(Dataset, "datasets/digits.yaml")],
    )


async def _operator(assets: Path, workdir: Path, evaluations: int) -> tuple[float, list[float], list[float]]:
    async with kube_api(ShortMemoryEmulator) as (emulator, url):
        api = Api(url)
        await register_assets(
            api, assets, {"models": ["digits-cnn"], "frameworks": ["onnxruntime"], "datasets": ["digits"]}
        )
        settings = operator_settings(url, workdir, assets, reconcile_interval_s=5.0, posting_level="warning")
        async with operator(settings) as running:
            started = time.perf_counter()
            await asyncio.gather(*(api.create(_evaluation(i)) for i in range(evaluations)))
            await _wait_for_jobs(emulator, evaluations * RUNS_PER_EVALUATION, timeout_s=600)
            elapsed = time.perf_counter() - started
            await asyncio.sleep(1.0)  # let the passes triggered by the last Jobs' events finish
            latencies = list(running.reconciler.latencies_s)
            passes = list(running.reconciler.passes_s)
        assert _job_count(emulator) == evaluations * RUNS_PER_EVALUATION  # and not one more
        await api.close()
        return elapsed, latencies, passes


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _main(evaluations: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as scratch:
        workdir = Path(scratch)
        assets = scratch_assets(workdir / "assets")
        total = evaluations * RUNS_PER_EVALUATION
        print(f"{evaluations} Evaluations x {RUNS_PER_EVALUATION} runs = {total} Jobs, KMock, one event loop")
        print(
            f"{'round':>5} {'(a) bare create':>16} {'(b) operator':>13} {'(b)/(a)':>8} "
            f"{'reconcile p50':>14} {'p99':>9} {'pass p50':>9} {'p99':>8} {'passes':>7}"
        )
        ratios, p99s, times = [], [], []
        for round_ in range(1, rounds + 1):
            bare_s = await _bare(assets, workdir, evaluations)
            operator_s, latencies, passes = await _operator(assets, workdir, evaluations)
            p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
            ratios.append(operator_s / bare_s)
            p99s.append(p99)
            times.append(operator_s)
            own50, own99 = _percentile(passes, 0.50), _percentile(passes, 0.99)
            print(
                f"{round_:>5} {bare_s:>14.2f} s {operator_s:>11.2f} s {operator_s / bare_s:>8.2f} "
                f"{p50 * 1000:>11.0f} ms {p99 * 1000:>6.0f} ms {own50 * 1000:>6.0f} ms {own99 * 1000:>5.0f} ms "
                f"{len(latencies):>7}"
            )
        print(
            f"median: all {total} Jobs exist after {statistics.median(times):.2f} s, "
            f"(b)/(a) {statistics.median(ratios):.2f}, reconcile p99 {statistics.median(p99s) * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.evaluations, args.rounds))


if __name__ == "__main__":
    main()
