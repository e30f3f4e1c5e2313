"""Does a long performance run cost more memory than LoadGen itself needs for its schedule?

LoadGen pre-generates every query of a performance test (twice the queries ``min_duration`` needs at the expected
latency it is given, 274 bytes per slot of a vector grown by doubling), so its memory grows with the run's length
whatever the system under test does. This benchmark separates that from ours: the same SingleStream settings run

- through bare LoadGen with a null SUT (``bare`` below: answers every query at once, holds nothing), with the
  expected latency our calibration chose (read from our result's LoadGen requested settings), and
- through our agent (``python -m mlmodelscope.agent --spec run.json``, trace level model, no NATS) on digits-cnn
  with ONNX Runtime (a ~4-16 us model, so the run has as many queries as a model can have; ``--framework null``
  runs the null predictor instead). Without NATS nothing publishes the MODEL spans, so the driver's pump drops
  each row once its latency is in the 4-byte column (with NATS the rows go once streamed),

for 10, 30 and 60 s (``--durations``), each in its own process; it prints both peak RSS (``os.wait4``'s
ru_maxrss), their ratio and our excess (ours - LoadGen's) as each pair ends, then a table of all of them side by
side with the acceptance of issue 16: ratio <= 1.25 at every duration, and the longest run's excess within 10% of
the shortest's (what we keep does not grow with the run). ``--bytes-per-query`` instead measures LoadGen's cost
of one pre-generated query: bare LoadGen at (hint, 5 s), (hint, 15 s) and (2 x hint, 5 s), the figures behind
``mlmodelscope.core.evaluation.schedule.LOADGEN_BYTES_PER_QUERY`` (peak RSS difference per slot of the schedule's
vector; a least-squares split into per-generated and per-issued bytes is printed too, but the vector's doubling
makes it a poor model).

Usage: ``python benchmarks/run_memory.py [--durations 10,30,60] [--framework null]`` or ``--bytes-per-query``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def bare_loadgen(hint_ns: int, duration_s: float, min_query_count: int, log_dir: Path) -> dict[str, Any]:
    """One SingleStream PerformanceOnly test of a null SUT (in this process); LoadGen's own figures."""
    import mlperf_loadgen as lg

    from mlmodelscope.core.evaluation.loadgen_report import read_detail_log

    response, complete = lg.QuerySampleResponse, lg.QuerySamplesComplete

    def issue(samples: list[Any]) -> None:
        complete([response(sample.id, 0, 0) for sample in samples])

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = round(duration_s * 1000)
    settings.min_query_count = min_query_count
    settings.single_stream_expected_latency_ns = hint_ns
    log = lg.LogSettings()
    log_dir.mkdir(parents=True, exist_ok=True)
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda samples: None, lambda samples: None)
    started = time.perf_counter()
    lg.StartTestWithLogSettings(sut, qsl, settings, log, "")
    wall_s = time.perf_counter() - started
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    detail = read_detail_log(log_dir / "mlperf_log_detail.txt")
    return {
        "wall_s": wall_s,
        "generated_query_count": int(detail.get("generated_query_count", 0)),
        "query_count": int(detail.get("result_query_count", 0)),
        "valid": detail.get("result_validity") == "VALID",
    }


def run_measured(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, float, str]:
    """Run ``command`` in a child process: (its peak RSS in bytes, its wall time in s, its stdout)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout.read().decode()
    stderr = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr[-2000:]}")
    return usage.ru_maxrss * 1024, wall_s, stdout  # Linux: ru_maxrss is in KiB


def bare_in_child(hint_ns: int, duration_s: float, min_query_count: int, scratch: Path) -> tuple[int, dict[str, Any]]:
    log_dir = scratch / f"bare-{hint_ns}-{duration_s:g}"
    command = [
        sys.executable,
        __file__,
        "bare",
        f"--hint-ns={hint_ns}",
        f"--duration-s={duration_s}",
        f"--min-query-count={min_query_count}",
        f"--log-dir={log_dir}",
    ]
    rss, wall_s, stdout = run_measured(command)
    figures = json.loads(stdout.strip().splitlines()[-1])
    figures["process_wall_s"] = wall_s
    return rss, figures


def agent_in_child(duration_s: float, scratch: Path, framework: str = "onnxruntime") -> tuple[int, dict[str, Any]]:
    """digits-cnn on ``framework`` through the agent entry point, trace level model; (peak RSS, result figures)."""
    from mlmodelscope.core.manifests import load_registry
    from mlmodelscope.core.run_contract import ResolvedResources, RunSpec
    from mlmodelscope.core.tracing.spans import TraceLevel

    assets = Path(os.environ.get("MLMODELSCOPE_ASSETS", REPO / "assets"))
    registry = load_registry([assets])
    run = scratch / f"agent-{duration_s:g}"
    run.mkdir(parents=True)
    spec = RunSpec(
        run_id=f"memory-{duration_s:g}",
        evaluation_id=f"memory-{duration_s:g}",
        model="digits-cnn",
        framework=framework,
        dataset="digits",
        resources=ResolvedResources.from_registry(registry, "digits-cnn", framework, "digits"),
        intra_op_threads=1,
        trace_level=TraceLevel.MODEL,
        settings={"scenario": "single-stream", "mode": "performance", "min_duration_s": duration_s},
        cache_dir=scratch / "cache",
        output_dir=run / "out",
    )
    (run / "run.json").write_text(spec.model_dump_json())
    command = [sys.executable, "-m", "mlmodelscope.agent", "--spec", str(run / "run.json"), "-o", str(run / "r.json")]
    rss, wall_s, _ = run_measured(command)
    performance = json.loads((run / "r.json").read_text())["performance"]
    return rss, {
        "process_wall_s": wall_s,
        "queries": performance["queries"],
        "valid": performance["verdict"]["valid"],
        "hint_ns": int(performance["loadgen_requested_settings"]["single_stream_expected_latency_ns"]),
        "min_query_count": int(performance["loadgen_requested_settings"]["min_query_count"]),
        "schedule": performance.get("schedule"),
    }


def bytes_per_query(hint_ns: int, durations_s: tuple[float, float]) -> None:
    """Three bare runs: (hint, short), (hint, long), (2 x hint, short); solved for bytes per generated query (the
    schedule, set by the hint) and per issued query (what LoadGen records as queries complete, set by the SUT)."""
    runs = [(hint_ns, durations_s[0]), (hint_ns, durations_s[1]), (2 * hint_ns, durations_s[0])]
    with tempfile.TemporaryDirectory() as scratch:
        measured = [bare_in_child(hint, duration_s, 1, Path(scratch)) for hint, duration_s in runs]
    for (rss, figures), (hint, duration_s) in zip(measured, runs, strict=True):
        print(f"bare LoadGen, hint {hint} ns, {duration_s:g} s: peak RSS {rss / 2**20:8.1f} MiB {figures}")
    peaks = np.array([m[0] for m in measured], dtype=float)
    counts = np.array([[1.0, m[1]["generated_query_count"], m[1]["query_count"]] for m in measured])
    base, per_generated, per_issued = np.linalg.solve(counts, peaks)
    print(
        f"bytes per generated query {per_generated:.0f}, per issued query {per_issued:.0f}, base {base / 2**20:.1f} MiB"
    )


def compare(durations_s: list[float], framework: str = "onnxruntime") -> None:
    rows: list[tuple[float, int, int, int, int, bool]] = []  # duration, queries, hint, ours, bare, valid
    with tempfile.TemporaryDirectory() as scratch:
        for duration_s in durations_s:
            ours, result = agent_in_child(duration_s, Path(scratch), framework)
            bare, figures = bare_in_child(result["hint_ns"], duration_s, result["min_query_count"], Path(scratch))
            print(
                f"{duration_s:>5g} s: ours {ours / 2**20:8.1f} MiB ({result}); bare LoadGen at hint "
                f"{result['hint_ns']} ns {bare / 2**20:8.1f} MiB ({figures}); ratio {ours / bare:.2f}, "
                f"our excess {(ours - bare) / 2**20:.1f} MiB",
                flush=True,
            )
            rows.append((duration_s, result["queries"], result["hint_ns"], ours, bare, result["valid"]))
    print(summary_table(rows, framework))


def summary_table(rows: list[tuple[float, int, int, int, int, bool]], framework: str) -> str:
    """The pairs side by side, and whether they meet issue 16's acceptance (ratio <= 1.25, flat excess)."""
    lines = [
        f"digits-cnn on {framework}, SingleStream, trace level model (agent without NATS) vs bare LoadGen (null SUT)",
        f"{'min_duration':>12} {'queries':>10} {'hint ns':>8} {'ours MiB':>9} {'bare MiB':>9} {'ratio':>6} "
        f"{'excess MiB':>10} {'verdict':>8}",
    ]
    for duration_s, queries, hint_ns, ours, bare, valid in rows:
        lines.append(
            f"{duration_s:>11g}s {queries:>10,} {hint_ns:>8,} {ours / 2**20:>9.1f} {bare / 2**20:>9.1f} "
            f"{ours / bare:>6.2f} {(ours - bare) / 2**20:>10.1f} {'VALID' if valid else 'INVALID':>8}"
        )
    ratios_ok = all(ours / bare <= 1.25 for _, _, _, ours, bare, _ in rows)
    lines.append(f"ratio <= 1.25 at every duration: {'yes' if ratios_ok else 'no'}")
    if len(rows) > 1:
        first, last = rows[0][3] - rows[0][4], rows[-1][3] - rows[-1][4]
        growth = (last - first) / first if first > 0 else float("inf")
        lines.append(
            f"excess at {rows[-1][0]:g} s vs {rows[0][0]:g} s: {last / 2**20:.1f} vs {first / 2**20:.1f} MiB "
            f"({growth:+.1%}; within 10%: {'yes' if abs(growth) <= 0.10 else 'no'})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    bare = sub.add_parser("bare", help="(internal) one bare LoadGen test in this process; prints JSON")
    bare.add_argument("--hint-ns", type=int, required=True)
    bare.add_argument("--duration-s", type=float, required=True)
    bare.add_argument("--min-query-count", type=int, default=1)
    bare.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--durations", default="10,30,60", help="min_duration of each pair of runs, seconds.")
    parser.add_argument("--framework", default="onnxruntime", help="digits-cnn's framework (onnxruntime, null).")
    parser.add_argument("--bytes-per-query", action="store_true", help="Measure LoadGen's bytes per query.")
    parser.add_argument("--hint-ns", type=int, default=4_312, help="With --bytes-per-query: the expected latency.")
    args = parser.parse_args(argv)
    if args.command == "bare":
        print(json.dumps(bare_loadgen(args.hint_ns, args.duration_s, args.min_query_count, args.log_dir)))
    elif args.bytes_per_query:
        bytes_per_query(args.hint_ns, (5.0, 15.0))
    else:
        compare([float(d) for d in args.durations.split(",")], args.framework)
    return 0


if __name__ == "__main__":
    sys.exit(main())
