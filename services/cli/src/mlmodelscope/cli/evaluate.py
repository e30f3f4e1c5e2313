"""``mlmodelscope evaluate``: run one model on one framework under a LoadGen scenario and report the result."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mlmodelscope.cli.context import CliContext, build_context
from mlmodelscope.cli.local import BusProgress, DataDir, data_dir, local_collector, wait_for_runs
from mlmodelscope.cli.prechecks import check_before_start, check_schedule
from mlmodelscope.cli.render import result_table, summary_tables
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.cli.termination import TerminationSignal, signals_deferred, stopping_on_termination_signals
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.cpu_quota import container_cpus
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.evaluation.runner import EvaluationRequest, run_evaluation
from mlmodelscope.core.evaluation.settings import (
    DEFAULT_FRAMEWORK_TRACE_MAX_CALLS,
    MODES,
    SCENARIOS,
    EvaluationSettings,
    Seeds,
)
from mlmodelscope.core.evaluation.summary import summarize
from mlmodelscope.core.manifests.fields import Accelerator
from mlmodelscope.core.messages import run_id_for
from mlmodelscope.core.run_contract import ResolvedResources, RunSpec
from mlmodelscope.core.tracing.spans import TraceLevel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_POLL_INTERVAL_S = 0.2
# An agent told to stop publishes its run as cancelled first; it gets this long before SIGKILL.
_AGENT_STOP_TIMEOUT_S = 10.0


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


def parse_batch_sizes(text: str) -> list[int]:
    """'8' -> [8]; '1,2,4' -> [1, 2, 4] (sorted, without repeats); EvaluationError for anything else."""
    sizes: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item.isdigit() or not 1 <= int(item) <= 65536:
            raise EvaluationError(
                f"--batch-size '{text}': '{item}' is not a batch size.",
                hint="Give an integer from 1 to 65536, or a comma-separated list such as 1,2,4,8.",
            )
        sizes.add(int(item))
    return sorted(sizes)


def _loadgen_dir(root: Path, framework: str | None, batch_size: int | None) -> Path:
    """LoadGen logs of one run: <output>-loadgen[/<framework>][/batch-<n>]."""
    path = root / framework if framework else root
    return (path / f"batch-{batch_size}" if batch_size is not None else path).resolve()


def _agent_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1].removeprefix("error: ")


def agent_interpreter(context: CliContext, framework: str) -> str:
    """The Python that runs ``framework``'s agents (the Framework's ``spec.runtime.python``, or this one)."""
    return context.registry.agent_interpreter(framework, sys.executable)


def _start_agent(context: CliContext, spec: RunSpec, data: DataDir) -> tuple[subprocess.Popen[bytes], Path]:
    """One agent process for ``spec`` with its framework's interpreter; its output goes to the run's agent.log."""
    run_dir = data.runs / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
    command = [
        agent_interpreter(context, spec.framework),
        "-m",
        "mlmodelscope.agent",
        "--spec",
        str(run_dir / "spec.json"),
    ]
    with (run_dir / "agent.log").open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return process, run_dir / "agent.log"


def _stop_agents(processes: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM every agent still running (it publishes its run as cancelled), wait for all of them together at most
    ``timeout_s``, then SIGKILL the ones left."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()


def _evaluate_locally(
    context: CliContext, specs: list[RunSpec], data: DataDir, console: Console, parallel: int
) -> tuple[list[EvaluationResult], dict[str, str]]:
    """Run the specs as agent processes (at most ``parallel`` at once, in order) through an embedded NATS and the
    collector; results come back from the collector."""
    results: list[EvaluationResult] = []
    failures: dict[str, str] = {}
    # The agents need only NATS: their start-up (framework imports, model load) overlaps the collector's. A
    # collector that dies while starting is restarted like one that dies later (ensure_running); reading the
    # results waits for it to be ready (CollectorProcess.get).
    with local_collector(data, with_nats=True, wait_ready=False) as (collector, server):
        assert server is not None
        agents: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        bus = BusProgress()
        bus.follow(server.url)
        try:
            pending = list(specs)
            columns = (TextColumn("{task.description}"), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                tasks: dict[str, TaskID] = {}
                while pending or any(process.poll() is None for process, _ in agents.values()):
                    if collector.ensure_running():
                        console.print(
                            f"the collector died; restarted it ({collector.restarts} of {collector.max_restarts}), "
                            "nothing is lost (the messages wait in JetStream)"
                        )
                    running = sum(process.poll() is None for process, _ in agents.values())
                    while pending and running < parallel:
                        spec = pending.pop(0).model_copy(update={"nats_url": server.url})
                        with signals_deferred():  # a started agent is always in `agents`, which are stopped
                            agents[spec.run_id] = _start_agent(context, spec, data)
                        tasks[spec.run_id] = bar.add_task(spec.run_id, total=None)
                        running += 1
                    for run_id, task in tasks.items():
                        process = agents[run_id][0]
                        phase = bus.phases.get(run_id, "starting") if process.poll() is None else "done"
                        count = bus.completed.get(run_id, 0)
                        bar.update(task, description=f"{run_id}: {phase}, {count:,} queries")
                    time.sleep(_POLL_INTERVAL_S)
        finally:
            bus.stop()
            _stop_agents([process for process, _ in agents.values()], _AGENT_STOP_TIMEOUT_S)
        published = [run_id for run_id, (process, _) in agents.items() if process.returncode in (0, 1)]
        for run_id, (process, log_path) in agents.items():
            if process.returncode != 0:
                failures[run_id] = _agent_error(log_path)
        details = wait_for_runs(collector, published, timeout_s=120.0) if published else {}
        for run_id, detail in details.items():
            if detail["status"] == "succeeded":
                document = collector.get_json(run_api_path(run_id, "result"))
                results.append(EvaluationResult.model_validate(document))
            else:
                failures.setdefault(run_id, _unsuccessful(detail))
    return results, failures


def _unsuccessful(detail: dict[str, Any]) -> str:
    """What to report of a run that failed or was cancelled: its error, always naming a cancellation as one."""
    status = str(detail.get("status") or "failed")
    error = str(detail.get("error") or "")
    if not error:
        return status
    return error if error.startswith(f"{status}:") or status == "failed" else f"{status}: {error}"


@dataclass(frozen=True)
class _Option:
    flag: str
    fix: str


# The `evaluate` option behind each field of EvaluationSettings and RunSpec, and how to fix a bad value: an invalid
# setting is reported with the flag the user typed, never the internal field name. Keep it in step with the options.
OPTION_OF_FIELD: dict[str, _Option] = {
    "model": _Option("--model", "Name a model of `mlmodelscope models list`."),
    "framework": _Option("--framework", "Name frameworks of `mlmodelscope frameworks list`, comma-separated."),
    "dataset": _Option("--dataset", "Name a dataset of `mlmodelscope datasets list`, or leave it out."),
    "scenario": _Option("--scenario", "Choose single-stream, multi-stream, server or offline."),
    "mode": _Option("--mode", "Choose accuracy, performance or both."),
    "batch_size": _Option("--batch-size", "Give an integer from 1 to 65536, or a list such as 1,2,4,8."),
    "warmup_queries": _Option("--warmup", "Give a number of untimed calls, 0 or more (10 by default)."),
    "min_duration_s": _Option("--min-duration", "Give a duration such as 10s, 500ms or 2m."),
    "max_duration_s": _Option("--max-duration", "Give a duration above 0 and not below --min-duration, or omit it."),
    "min_query_count": _Option("--min-queries", "Give a query count of 1 or more."),
    "max_query_count": _Option("--max-queries", "Give a query count not below --min-queries, or omit it."),
    "target_qps": _Option("--target-qps", "Give the server scenario's arrival rate in queries/s, e.g. 100."),
    "expected_latency_ms": _Option("--expected-latency-ms", "Give milliseconds above 0, or omit it (measured)."),
    "expected_qps": _Option("--expected-qps", "Give samples/s above 0, or omit it (measured)."),
    "latency_bound_ms": _Option("--latency-bound-ms", "Give milliseconds above 0, e.g. 50, or omit it (100 ms)."),
    "samples_per_query": _Option("--samples-per-query", "Give a number of samples of 1 or more."),
    "seeds": _Option("--seed", "Give an integer, or omit it for MLPerf's official seeds."),
    "device": _Option("--device", "Choose cpu, gpu or fpga."),
    "intra_op_threads": _Option("--threads", "Give 1 or more threads, or omit it for the framework's default."),
    "trace_level": _Option("--trace-level", "Choose a level of `mlmodelscope evaluate --help`."),
    "framework_trace_max_calls": _Option("--framework-trace-calls", "Give a number of calls of 1 or more (1000)."),
    "performance_sample_count": _Option(
        "--performance-sample-count", "Give a number of dataset items of 1 or more, or omit it (up to 1024)."
    ),
    "sample_cache": _Option("--sample-cache", "Pass --sample-cache or --no-sample-cache."),
    "output_dir": _Option("--output", "Give a writable path for the result JSON."),
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_CTX = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _option_of(location: tuple[int | str, ...]) -> _Option | None:
    return next((OPTION_OF_FIELD[p] for p in location if isinstance(p, str) and p in OPTION_OF_FIELD), None)


def _with_flags(text: str) -> str:
    """Field names in a message (``target_qps``) replaced by their flags; a flag already given after one, in
    parentheses, is not repeated. Only snake_case names: 'mode' or 'scenario' are also plain words."""
    for name, option in OPTION_OF_FIELD.items():
        if "_" not in name:
            continue
        text = re.sub(rf"\b{name}\b(?: \({re.escape(option.flag)}\))?", option.flag, text)
    return text


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _first_option_named(text: str) -> _Option | None:
    """The option whose flag comes first in ``text`` (the one a rule across fields is about)."""
    named = [(match.start(), o) for o in OPTION_OF_FIELD.values() if (match := re.search(rf"{o.flag}\b", text))]
    return min(named, key=lambda pair: pair[0])[1] if named else None


def options_error(error: ValidationError) -> EvaluationError:
    """The invalid settings as the user wrote them: ``--target-qps must be > 0 (got -1.0)``, with the fix."""
    problems: list[str] = []
    fixes: list[str] = []
    for problem in error.errors():
        option = _option_of(problem["loc"])
        bound = _BOUNDS.get(problem["type"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if option is not None and bound is not None:
            limit = problem.get("ctx", {}).get(_BOUND_CTX[problem["type"]])
            problems.append(f"{option.flag} must be {bound} {_number(limit)} (got {_number(problem['input'])})")
        elif option is not None:
            problems.append(f"{option.flag}: {_with_flags(message)}")
        else:  # a rule across fields: name every flag it mentions
            problems.append(_with_flags(message))
            option = _first_option_named(problems[-1])
        if option is not None and option.fix not in fixes:
            fixes.append(option.fix)
    return EvaluationError("; ".join(problems) + ".", hint=" ".join(fixes))


@contextlib.contextmanager
def _naming_options() -> Iterator[None]:
    try:
        yield
    except ValidationError as e:
        raise options_error(e) from e


def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `mlmodelscope models list`).")],
    framework: Annotated[str, typer.Option("--framework", "-f", help="Framework name(s), comma-separated.")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: the model's).")] = None,
    scenario: Annotated[str, typer.Option(help="single-stream | multi-stream | server | offline.")] = "single-stream",
    mode: Annotated[str, typer.Option(help="accuracy | performance | both.")] = "both",
    batch_size: Annotated[
        str, typer.Option("--batch-size", "-b", help="Samples per predictor call; a list (1,2,4,8) sweeps them.")
    ] = "1",
    min_duration: Annotated[str, typer.Option(help="LoadGen minimum duration (10s, 500ms, 2m).")] = "10s",
    max_duration: Annotated[str | None, typer.Option(help="LoadGen maximum duration.")] = None,
    min_queries: Annotated[int, typer.Option(help="LoadGen minimum query count.")] = 100,
    max_queries: Annotated[int | None, typer.Option(help="LoadGen maximum query count.")] = None,
    target_qps: Annotated[float | None, typer.Option(help="Server: Poisson arrival rate, queries/s.")] = None,
    expected_latency_ms: Annotated[
        float | None,
        typer.Option(
            help="Single/multi-stream: LoadGen's expected latency hint (default: measured); sizes its schedule."
        ),
    ] = None,
    expected_qps: Annotated[
        float | None, typer.Option(help="Offline: LoadGen's expected samples/s hint (default: measured).")
    ] = None,
    latency_bound_ms: Annotated[float | None, typer.Option(help="Server: latency bound (default 100 ms).")] = None,
    samples_per_query: Annotated[int, typer.Option(help="Multi-stream: samples per query.")] = 8,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up predictor calls.")] = 10,
    performance_sample_count: Annotated[
        int | None,
        typer.Option(help="Dataset items kept pre-processed in RAM at once (default: min(size, 1024))."),
    ] = None,
    sample_cache: Annotated[
        bool, typer.Option(help="Keep pre-processed image samples on disk for later runs (results never change).")
    ] = True,
    seed: Annotated[int | None, typer.Option(help="Derive LoadGen's three seeds from this one.")] = None,
    device: Annotated[str, typer.Option(help="cpu | gpu | fpga.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="Intra-op threads for the framework.")] = None,
    trace_level: Annotated[
        str, typer.Option(help="no | application | model | framework | library | system | hardware | full.")
    ] = "model",
    framework_trace_calls: Annotated[
        int,
        typer.Option(help="At --trace-level framework: profile this many calls of the performance run, then stop."),
    ] = DEFAULT_FRAMEWORK_TRACE_MAX_CALLS,
    reference: Annotated[
        str | None, typer.Option(help="Framework the others are compared with (default: the first of --framework).")
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(min=1, help="Agents running at once (default: one per framework; batch sizes run in turn)."),
    ] = None,
    direct: Annotated[
        bool, typer.Option("--direct", help="Evaluate in this process, without NATS, collector or agents.")
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Result JSON path.")] = None,
) -> None:
    """Evaluate MODEL on FRAMEWORK(s): accuracy and/or performance under an MLPerf LoadGen scenario."""
    options = ctx.find_root().obj or {}
    batch_sizes = parse_batch_sizes(batch_size)
    with _naming_options():
        settings = EvaluationSettings(
            scenario=_choice(scenario, SCENARIOS, "--scenario"),
            mode=_choice(mode, MODES, "--mode"),
            batch_size=batch_sizes[0],
            warmup_queries=warmup,
            min_duration_s=parse_duration_s(min_duration, "--min-duration"),
            max_duration_s=parse_duration_s(max_duration, "--max-duration") if max_duration else None,
            min_query_count=min_queries,
            max_query_count=max_queries,
            target_qps=target_qps,
            expected_latency_ms=expected_latency_ms,
            expected_qps=expected_qps,
            latency_bound_ms=latency_bound_ms,
            samples_per_query=samples_per_query,
            seeds=Seeds.from_single(seed) if seed is not None else Seeds(),
            framework_trace_max_calls=framework_trace_calls,
            performance_sample_count=performance_sample_count,
            sample_cache=sample_cache,
        )
    accelerator: Accelerator = _choice(device, ("cpu", "gpu", "fpga"), "--device")  # type: ignore[assignment]
    try:
        level = TraceLevel.parse(trace_level)
    except ValueError as e:
        raise EvaluationError(f"--trace-level: {e}.") from e
    frameworks = list(dict.fromkeys(name.strip() for name in framework.split(",") if name.strip()))
    if not frameworks:
        raise EvaluationError("--framework names no framework.")
    reference = reference or frameworks[0]
    if reference not in frameworks:
        raise EvaluationError(
            f"--reference '{reference}' is not one of the evaluated frameworks ({', '.join(frameworks)})."
        )
    context = build_context(options.get("assets", []), options.get("cache_dir"))
    # Unknown names, incompatible pairs, malformed artifact URIs and missing runtimes fail before anything starts.
    check_before_start(context, model, frameworks, dataset, accelerator, with_agents=not direct)
    # LoadGen pre-generates its whole schedule: say before anything starts when it may not fit in memory.
    schedule_warning = check_schedule([settings.model_copy(update={"batch_size": size}) for size in batch_sizes])
    if schedule_warning is not None:
        literal_console(stderr=True).print(f"warning: {schedule_warning}", soft_wrap=True, markup=False)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if output is None:
        output = Path("results") / f"{model}-{'-'.join(frameworks)}-{settings.scenario}-{stamp}" / "result.json"
    console = literal_console()
    if direct:
        if len(frameworks) > 1 or len(batch_sizes) > 1:
            raise EvaluationError("--direct evaluates one framework at one batch size at a time.")
        result = _evaluate_directly(context, model, frameworks[0], dataset, settings, accelerator, threads, output)
        result.write(output)
        console.print(result_table(result))
        console.print(f"result: {output}   LoadGen logs: {output.parent / f'{output.stem}-loadgen'}")
        return
    evaluation_id = f"{model}-{stamp}-{uuid.uuid4().hex[:6]}"
    sweep = len(batch_sizes) > 1
    concurrent = min(parallel or len(frameworks), len(frameworks) * len(batch_sizes))
    if threads is None and concurrent > 1:
        # Agents side by side must not oversubscribe the cores: a framework's spinning thread pool (ONNX Runtime,
        # OpenMP) starves the others and every latency turns into scheduling noise.
        threads = max(1, container_cpus().cpus // concurrent)
        console.print(f"{concurrent} agents at once: {threads} intra-op thread(s) each (override with --threads)")
    loadgen_dir = output.parent / f"{output.stem}-loadgen"
    # The agents evaluate exactly these resources (the manifests as validated now), and read no asset folder.
    resources = {name: ResolvedResources.from_registry(context.registry, model, name, dataset) for name in frameworks}
    with _naming_options():
        specs = [
            RunSpec(
                run_id=run_id_for(evaluation_id, name, size if sweep else None),
                evaluation_id=evaluation_id,
                model=model,
                framework=name,
                dataset=resources[name].dataset_name,
                resources=resources[name],
                device=accelerator,
                intra_op_threads=threads,
                trace_level=level,
                settings=settings.model_copy(update={"batch_size": size}),
                cache_dir=context.store.cache_dir.resolve(),
                output_dir=_loadgen_dir(loadgen_dir, name if len(frameworks) > 1 else None, size if sweep else None),
            )
            for size in batch_sizes
            for name in frameworks
        ]
    data = data_dir(os.environ)
    try:
        with stopping_on_termination_signals():
            results, failures = _evaluate_locally(context, specs, data, console, concurrent)
    except TerminationSignal as e:
        literal_console(stderr=True).print(
            f"stopped by {e.name}: the agents, the collector and NATS that this evaluation started are stopped; "
            f"what was stored is in {data.root}.",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(e.exit_code) from None
    for result in results:
        console.print(result_table(result))
    if len(specs) == 1 and results:
        results[0].write(output)
    elif results:
        summary = summarize(evaluation_id, reference, results, failures)
        summary.write(output)
        for table in summary_tables(summary):
            console.print(table)
    if results:
        console.print(f"result: {output}   LoadGen logs: {output.parent / f'{output.stem}-loadgen'}")
        console.print(f"data (NATS, collector database, agent logs): {data.root}")
        if len(results) == 1:
            console.print(f"trace: mlmodelscope trace export {results[0].id} -o {results[0].id}.trace.json")
        else:
            console.print("traces: `mlmodelscope runs list`, then `mlmodelscope trace export RUN_ID -o RUN_ID.json`")
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
    watcher = threading.Thread(target=_watch, args=(progress, done, literal_console()), daemon=True)
    watcher.start()
    try:
        return run_evaluation(context.registry, context.store, request, progress=progress)
    finally:
        done.set()
        watcher.join()
