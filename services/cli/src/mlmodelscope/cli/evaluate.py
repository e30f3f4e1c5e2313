"""``mlmodelscope evaluate``: run one model on one framework under a LoadGen scenario and report the result."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mlmodelscope.agent.run import RunSpec
from mlmodelscope.cli.context import CliContext, build_context
from mlmodelscope.cli.local import BusProgress, DataDir, data_dir, fetch_json, local_collector, wait_for_runs
from mlmodelscope.cli.render import result_table
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.evaluation.runner import EvaluationRequest, run_evaluation
from mlmodelscope.core.evaluation.settings import MODES, SCENARIOS, EvaluationSettings, Seeds
from mlmodelscope.core.manifests.resources import Accelerator
from mlmodelscope.core.tracing.spans import TraceLevel

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
    """Poll the driver's progress (no callbacks on the hot path) and draw a bar (--direct mode)."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)
        while not done.wait(_POLL_INTERVAL_S):
            elapsed = time.monotonic() - progress.started_monotonic_s if progress.started_monotonic_s else 0.0
            label = f"{progress.phase}: {progress.completed_queries:,} queries"
            if progress.min_duration_s > 0:
                completed = min(elapsed, progress.min_duration_s)
                bar.update(task, description=label, total=progress.min_duration_s, completed=completed)
            else:
                bar.update(task, description=label, total=None)


def _run_id(evaluation_id: str, framework: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{evaluation_id}-{framework}")[:128]


def _agent_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1].removeprefix("error: ")


def agent_interpreter(context: CliContext, framework: str) -> str:
    """The Python that runs ``framework``'s agents: its resource's ``spec.runtime.python`` or this one.

    A relative path is relative to the Framework manifest's folder (like artifact URIs), so a checkout's
    ``.venv-mxnet`` is found wherever the repository lives.
    """
    python = context.registry.framework(framework).spec.runtime.python
    if not python:
        return sys.executable
    manifest = context.registry.source_of("Framework", framework)
    path = Path(python) if Path(python).is_absolute() or "/" not in python else manifest.parent / python
    resolved = shutil.which(str(path)) if "/" not in python else (str(path) if os.access(path, os.X_OK) else None)
    if resolved is None:
        raise EvaluationError(
            f"framework '{framework}' runs in the interpreter {path} (spec.runtime.python in {manifest}), "
            "which does not exist or is not executable.",
            hint="Run `make setup` (it creates the framework environments), or fix spec.runtime.python.",
        )
    return resolved


def _evaluate_locally(
    context: CliContext, specs: list[RunSpec], data: DataDir, console: Console
) -> tuple[list[EvaluationResult], dict[str, str]]:
    """Run the specs as agent processes through an embedded NATS and the collector; results from the collector."""
    results: list[EvaluationResult] = []
    failures: dict[str, str] = {}
    with local_collector(data, with_nats=True) as (collector, server):
        assert server is not None
        agents: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        bus = BusProgress()
        bus.follow(server.url)
        try:
            for spec in specs:
                run_dir = data.runs / spec.run_id
                run_dir.mkdir(parents=True, exist_ok=True)
                spec = spec.model_copy(update={"nats_url": server.url})
                (run_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
                python = agent_interpreter(context, spec.framework)
                command = [python, "-m", "mlmodelscope.agent", "--spec", str(run_dir / "spec.json")]
                with (run_dir / "agent.log").open("wb") as log:
                    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                agents[spec.run_id] = (process, run_dir / "agent.log")
            columns = (TextColumn("{task.description}"), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                tasks = {run_id: bar.add_task(run_id, total=None) for run_id in agents}
                while any(process.poll() is None for process, _ in agents.values()):
                    for run_id, task in tasks.items():
                        phase = bus.phases.get(run_id, "starting")
                        count = bus.completed.get(run_id, 0)
                        bar.update(task, description=f"{run_id}: {phase}, {count:,} queries")
                    time.sleep(_POLL_INTERVAL_S)
        finally:
            bus.stop()
            for process, _ in agents.values():
                if process.poll() is None:
                    process.kill()
        published = [run_id for run_id, (process, _) in agents.items() if process.returncode in (0, 1)]
        for run_id, (process, log_path) in agents.items():
            if process.returncode != 0:
                failures[run_id] = _agent_error(log_path)
        details = wait_for_runs(collector.url, published, timeout_s=120.0) if published else {}
        for run_id, detail in details.items():
            if detail["status"] == "succeeded":
                document = fetch_json(collector.url, f"/api/v1/runs/{run_id}/result")
                results.append(EvaluationResult.model_validate(document))
            else:
                failures.setdefault(run_id, detail.get("error") or "failed")
    return results, failures


def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `mlmodelscope models list`).")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="Framework name(s), comma-separated.")],
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
    trace_level: Annotated[
        str, typer.Option(help="no | application | model | framework | library | system | hardware | full.")
    ] = "model",
    direct: Annotated[
        bool, typer.Option("--direct", help="Evaluate in this process, without NATS, collector or agents.")
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Result JSON path.")] = None,
) -> None:
    """Evaluate MODEL on FRAMEWORK(s): accuracy and/or performance under an MLPerf LoadGen scenario."""
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
    try:
        level = TraceLevel.parse(trace_level)
    except ValueError as e:
        raise EvaluationError(f"--trace-level: {e}.") from e
    frameworks = [name.strip() for name in framework.split(",") if name.strip()]
    if not frameworks:
        raise EvaluationError("--framework names no framework.")
    context = build_context(options.get("assets", []), options.get("cache_dir"))
    for name in frameworks:  # unknown names, incompatible pairs and missing runtimes fail before anything starts
        context.registry.resolve(model, name)
        if not direct:
            agent_interpreter(context, name)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if output is None:
        output = Path("results") / f"{model}-{'-'.join(frameworks)}-{settings.scenario}-{stamp}" / "result.json"
    console = Console()
    if direct:
        if len(frameworks) > 1:
            raise EvaluationError("--direct evaluates one framework at a time.")
        result = _evaluate_directly(context, model, frameworks[0], dataset, settings, accelerator, threads, output)
        result.write(output)
        console.print(result_table(result))
        console.print(f"result: {output}   LoadGen logs: {output.parent / f'{output.stem}-loadgen'}")
        return
    evaluation_id = f"{model}-{stamp}-{uuid.uuid4().hex[:6]}"
    specs = [
        RunSpec(
            run_id=_run_id(evaluation_id, name),
            evaluation_id=evaluation_id,
            model=model,
            framework=name,
            dataset=dataset,
            device=accelerator,
            intra_op_threads=threads,
            trace_level=level,
            settings=settings,
            assets=context.asset_roots,
            cache_dir=context.store.cache_dir.resolve(),
            output_dir=(output.parent / f"{output.stem}-loadgen" / (name if len(frameworks) > 1 else "")).resolve(),
        )
        for name in frameworks
    ]
    data = data_dir(os.environ)
    results, failures = _evaluate_locally(context, specs, data, console)
    for result in results:
        console.print(result_table(result))
    if len(results) == 1:
        results[0].write(output)
    elif results:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=2) + "\n")
    if results:
        console.print(f"result: {output}   LoadGen logs: {output.parent / f'{output.stem}-loadgen'}")
        console.print(f"data (NATS, collector database, agent logs): {data.root}")
        for result in results:
            console.print(f"trace: mlmodelscope trace export {result.id} -o {result.id}.trace.json")
    if failures:
        problems = "; ".join(f"{run_id}: {message}" for run_id, message in failures.items())
        raise EvaluationError(f"{len(failures)} of {len(specs)} runs failed: {problems}")


def _evaluate_directly(
    context: CliContext,
    model: str,
    framework: str,
    dataset: str | None,
    settings: EvaluationSettings,
    device: Accelerator,
    threads: int | None,
    output: Path,
) -> EvaluationResult:
    request = EvaluationRequest(
        model=model,
        framework=framework,
        dataset=dataset,
        settings=settings,
        output_dir=output.parent / f"{output.stem}-loadgen",
        device=device,
        intra_op_threads=threads,
    )
    progress = RunProgress()
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(progress, done, Console()), daemon=True)
    watcher.start()
    try:
        return run_evaluation(context.registry, context.store, request, progress=progress)
    finally:
        done.set()
        watcher.join()
