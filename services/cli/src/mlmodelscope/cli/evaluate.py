"""``mlmodelscope evaluate``: run one model on one framework under a LoadGen scenario and report the result."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mlmodelscope.cli.context import build_context
from mlmodelscope.cli.render import result_table
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.evaluation.runner import EvaluationRequest, run_evaluation
from mlmodelscope.core.evaluation.settings import MODES, SCENARIOS, EvaluationSettings, Seeds
from mlmodelscope.core.manifests.resources import Accelerator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_POLL_INTERVAL_S = 0.2


def parse_duration_s(text: str, option: str) -> float:
    """'10' or '10s' -> 10.0; '500ms' -> 0.5; '2m' -> 120.0."""
    match = _DURATION.match(text)
    if match is None:
        raise EvaluationError(
            f"{option} '{text}' is not a duration.",
            hint="Write seconds (10, 10s), milliseconds (500ms) or minutes (2m).",
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise EvaluationError(f"{option} '{value}' is not one of: {', '.join(allowed)}.")
    return value


def _watch(progress: RunProgress, done: threading.Event, console: Console) -> None:
    """Poll the driver's progress (no callbacks on the hot path) and draw a bar."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)
        while not done.wait(_POLL_INTERVAL_S):
            elapsed = time.monotonic() - progress.started_monotonic_s if progress.started_monotonic_s else 0.0
            label = f"{progress.phase}: {progress.completed_queries:,} queries"
            if progress.min_duration_s > 0:
                bar.update(
                    task,
                    description=label,
                    total=progress.min_duration_s,
                    completed=min(elapsed, progress.min_duration_s),
                )
            else:
                bar.update(task, description=label, total=None)


def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `mlmodelscope models list`).")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="Framework name.")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: the model's).")] = None,
    scenario: Annotated[str, typer.Option(help="single-stream | multi-stream | server | offline.")] = "single-stream",
    mode: Annotated[str, typer.Option(help="accuracy | performance | both.")] = "both",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Samples per predictor call.")] = 1,
    min_duration: Annotated[str, typer.Option(help="LoadGen minimum duration (10s, 500ms, 2m).")] = "10s",
    max_duration: Annotated[str | None, typer.Option(help="LoadGen maximum duration.")] = None,
    min_queries: Annotated[int, typer.Option(help="LoadGen minimum query count.")] = 100,
    max_queries: Annotated[int | None, typer.Option(help="LoadGen maximum query count.")] = None,
    target_qps: Annotated[float | None, typer.Option(help="Server: Poisson arrival rate, queries/s.")] = None,
    latency_bound_ms: Annotated[float | None, typer.Option(help="Server: latency bound (default 100 ms).")] = None,
    samples_per_query: Annotated[int, typer.Option(help="Multi-stream: samples per query.")] = 8,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up predictor calls.")] = 10,
    seed: Annotated[int | None, typer.Option(help="Derive LoadGen's three seeds from this one.")] = None,
    device: Annotated[str, typer.Option(help="cpu | gpu | fpga.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="Intra-op threads for the framework.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Result JSON path.")] = None,
) -> None:
    """Evaluate MODEL on FRAMEWORK: accuracy and/or performance under an MLPerf LoadGen scenario."""
    options = ctx.find_root().obj or {}
    settings = EvaluationSettings(
        scenario=_choice(scenario, SCENARIOS, "--scenario"),
        mode=_choice(mode, MODES, "--mode"),
        batch_size=batch_size,
        warmup_queries=warmup,
        min_duration_s=parse_duration_s(min_duration, "--min-duration"),
        max_duration_s=parse_duration_s(max_duration, "--max-duration") if max_duration else None,
        min_query_count=min_queries,
        max_query_count=max_queries,
        target_qps=target_qps,
        latency_bound_ms=latency_bound_ms,
        samples_per_query=samples_per_query,
        seeds=Seeds.from_single(seed) if seed is not None else Seeds(),
    )
    accelerator: Accelerator = _choice(device, ("cpu", "gpu", "fpga"), "--device")  # type: ignore[assignment]
    context = build_context(options.get("assets", []), options.get("cache_dir"))
    if output is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        output = Path("results") / f"{model}-{framework}-{settings.scenario}-{stamp}" / "result.json"
    request = EvaluationRequest(
        model=model,
        framework=framework,
        dataset=dataset,
        settings=settings,
        output_dir=output.parent / f"{output.stem}-loadgen",
        device=accelerator,
        intra_op_threads=threads,
    )
    console = Console()
    progress = RunProgress()
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(progress, done, console), daemon=True)
    watcher.start()
    try:
        result: EvaluationResult = run_evaluation(context.registry, context.store, request, progress=progress)
    finally:
        done.set()
        watcher.join()
    result.write(output)
    console.print(result_table(result))
    console.print(f"result: {output}   LoadGen logs: {request.output_dir}")
