"""What does tracing cost a real model? Our SingleStream path at trace level NO vs MODEL vs FRAMEWORK.

Side by side, in one process run (the machine is shared and noisy, so only ratios within one run are meaningful),
the bench CNN of ``harness_overhead.py`` (~4 ms per query, batch 1, one intra-op thread) through our
SingleStream performance path with ``execute_run(..., tracer=Tracer(run_id, level))`` at:

  NO         nothing recorded (the baseline);
  MODEL      APPLICATION phase spans + one MODEL ``predict`` span per query (the SUT appends one tuple per call);
  FRAMEWORK  the above + ONNX Runtime's own profiler (on for the whole session), its JSON profile turned into
             FRAMEWORK spans (``model_run`` + one per operator) under each ``predict`` span.

Each round runs the three levels back to back (in a rotated order, so no level always runs first); the ratios
are per round, against that round's NO run, and their median is reported. Figures: LoadGen's p50 (what the
targets are on) and the SUT-side p50 of the same runs. Also printed: spans per level and, as a sanity check,
that at FRAMEWORK level every ``predict`` span has FRAMEWORK children.

Targets: MODEL/NO <= 1.02 and FRAMEWORK/NO <= 1.15 (the XSP paper measured +57% for MLModelScope's layer-level
profiling). Exit code 1 when a LoadGen run is INVALID, the sanity check fails or a target is missed.
Usage: ``python benchmarks/tracing_overhead.py [--seconds S] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Imported from the sibling script: ``python benchmarks/tracing_overhead.py`` puts benchmarks/ on sys.path.
from harness_overhead import IMAGE, THREADS, write_assets

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import MODEL_SPAN_NAME, Tracer

LEVELS = (TraceLevel.NO, TraceLevel.MODEL, TraceLevel.FRAMEWORK)
TARGETS = {TraceLevel.MODEL: 1.02, TraceLevel.FRAMEWORK: 1.15}


@dataclass(frozen=True)
class LevelRun:
    loadgen_p50_ns: float
    sut_p50_ns: float
    valid: bool
    queries: int
    span_counts: Counter[TraceLevel]
    framework_check: tuple[bool, str] | None  # FRAMEWORK level only
    wall_s: float


def run_at_level(root: Path, level: TraceLevel, seconds: float, out_dir: Path) -> LevelRun:
    registry = load_registry([root])
    store = ArtifactStore(root / "cache")
    request = RunRequest(
        model="bench-cnn",
        framework="onnxruntime",
        dataset=None,
        settings=EvaluationSettings(scenario="single-stream", mode="performance", min_duration_s=seconds),
        output_dir=out_dir,  # FRAMEWORK: ONNX Runtime writes its profile JSON under out_dir/framework-profile
        intra_op_threads=THREADS,
    )
    tracer = Tracer(f"bench-{level.name.lower()}-{out_dir.name}", level)
    start = time.perf_counter()
    result = execute_run(registry, store, request, tracer=tracer)
    wall_s = time.perf_counter() - start
    performance = result.performance
    assert performance is not None
    spans = tracer.drain()
    return LevelRun(
        loadgen_p50_ns=performance.loadgen_latency_ns["50.00_percentile_latency"],
        sut_p50_ns=performance.latency.p50_ns,
        valid=performance.verdict.valid,
        queries=performance.queries,
        span_counts=Counter(s.level for s in spans),
        framework_check=framework_children_check(spans) if level >= TraceLevel.FRAMEWORK else None,
        wall_s=wall_s,
    )


def framework_children_check(spans: list[Span]) -> tuple[bool, str]:
    """Every MODEL ``predict`` span has >= 1 FRAMEWORK child, and every FRAMEWORK span has a ``predict`` parent."""
    predict = {s.span_id for s in spans if s.level == TraceLevel.MODEL and s.name == MODEL_SPAN_NAME}
    framework = [s for s in spans if s.level == TraceLevel.FRAMEWORK]
    children = Counter(s.parent_id for s in framework)
    orphans = sum(1 for s in framework if s.parent_id not in predict)
    childless = sum(1 for span_id in predict if children[span_id] == 0)
    ok = bool(predict) and childless == 0 and orphans == 0
    per_query = len(framework) / len(predict) if predict else 0.0
    return ok, (
        f"{len(predict)} predict spans, {len(framework)} FRAMEWORK spans ({per_query:.1f} per predict), "
        f"{childless} predict spans without FRAMEWORK children, {orphans} FRAMEWORK spans not under a predict span"
    )


def level_counts(counts: Counter[TraceLevel]) -> str:
    return ", ".join(f"{level.name} {counts[level]}" for level in sorted(counts)) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="LoadGen min duration of each run.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds; median ratios are reported.")
    args = parser.parse_args(argv)

    runs: dict[TraceLevel, list[LevelRun]] = {level: [] for level in LEVELS}
    sanity_ok, sanity_lines = True, []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_assets(root)
        for round_ in range(args.rounds):
            order = LEVELS[round_ % len(LEVELS) :] + LEVELS[: round_ % len(LEVELS)]
            for level in order:
                run = run_at_level(root, level, args.seconds, root / f"{level.name.lower()}{round_}")
                runs[level].append(run)
                if run.framework_check is not None:
                    ok, line = run.framework_check
                    sanity_ok &= ok
                    sanity_lines.append(f"round {round_}: {line}")
                print(
                    f"round {round_} {level.name:<9} LoadGen p50 {run.loadgen_p50_ns / 1000:8.1f} us  "
                    f"SUT p50 {run.sut_p50_ns / 1000:8.1f} us  {run.queries} queries  "
                    f"{run.span_counts.total()} spans ({level_counts(run.span_counts)})  "
                    f"{'VALID' if run.valid else 'INVALID'}  wall {run.wall_s:.1f} s",
                    flush=True,
                )

    print(f"\nbench-cnn {IMAGE} batch 1, {THREADS} intra-op thread, {args.seconds:g} s per run, {args.rounds} rounds")
    for level in LEVELS:
        loadgen = " ".join(f"{r.loadgen_p50_ns / 1000:.1f}" for r in runs[level])
        sut = " ".join(f"{r.sut_p50_ns / 1000:.1f}" for r in runs[level])
        print(f"  {level.name:<9} p50 per round (us): LoadGen {loadgen}   SUT {sut}")
    met = True
    for level, target in TARGETS.items():
        for what, field in (("LoadGen p50", "loadgen_p50_ns"), ("SUT p50", "sut_p50_ns")):
            ratios = [
                getattr(r, field) / getattr(b, field) for r, b in zip(runs[level], runs[TraceLevel.NO], strict=True)
            ]
            median = statistics.median(ratios)
            verdict = ""
            if what == "LoadGen p50":
                verdict = f"   target <= {target:.2f} {'met' if median <= target else 'MISSED'}"
                met &= median <= target
            print(
                f"ratio {level.name}/NO ({what}) median {median:.3f} "
                f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)}){verdict}"
            )
    print("FRAMEWORK sanity (every predict span has FRAMEWORK children):", "ok" if sanity_ok else "FAILED")
    for line in sanity_lines:
        print(f"  {line}")
    valid = all(r.valid for level_runs in runs.values() for r in level_runs)
    print(f"all LoadGen runs VALID: {valid}")
    return 0 if valid and sanity_ok and met else 1


if __name__ == "__main__":
    sys.exit(main())
