"""``mlmodelscope evaluate``: run one model on one framework under a LoadGen scenario and report the result.

The command reads its options (``EvaluateOptions``: each option declared once, the command's signature made from
it), checks them and the named resources before anything starts, plans one run spec per framework and batch size,
runs them (``agent_runs``: agents in local mode; ``direct_run`` with ``--direct``) and reports the results.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import typing
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlmodelscope.cli.agent_runs import evaluate_locally
from mlmodelscope.cli.context import CliContext, build_context
from mlmodelscope.cli.direct_run import evaluate_directly
from mlmodelscope.cli.local import data_dir
from mlmodelscope.cli.option_errors import naming_options
from mlmodelscope.cli.prechecks import check_before_start, check_schedule
from mlmodelscope.cli.render import result_table, summary_tables
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.cli.termination import TerminationSignal, stopping_on_termination_signals
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.cpu_quota import container_cpus
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.settings import (
    DEFAULT_FRAMEWORK_TRACE_MAX_CALLS,
    MODES,
    SCENARIOS,
    EvaluationSettings,
    Seeds,
)
from mlmodelscope.core.evaluation.summary import summarize
from mlmodelscope.core.manifests.fields import Accelerator
from mlmodelscope.core.run_contract import RunSpec, run_matrix
from mlmodelscope.core.tracing.spans import TraceLevel

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


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


@dataclass(frozen=True)
class EvaluateOptions:
    """The options of ``mlmodelscope evaluate`` as the user gave them. ``evaluate``'s signature is made from these
    fields (``_command_signature``), so typer sees the same options, in the same order, with the same help."""

    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `mlmodelscope models list`).")]
    framework: Annotated[str, typer.Option("--framework", "-f", help="Framework name(s), comma-separated.")]
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: the model's).")] = None
    scenario: Annotated[str, typer.Option(help="single-stream | multi-stream | server | offline.")] = "single-stream"
    mode: Annotated[str, typer.Option(help="accuracy | performance | both.")] = "both"
    batch_size: Annotated[
        str, typer.Option("--batch-size", "-b", help="Samples per predictor call; a list (1,2,4,8) sweeps them.")
    ] = "1"
    min_duration: Annotated[str, typer.Option(help="LoadGen minimum duration (10s, 500ms, 2m).")] = "10s"
    max_duration: Annotated[str | None, typer.Option(help="LoadGen maximum duration.")] = None
    min_queries: Annotated[int, typer.Option(help="LoadGen minimum query count.")] = 100
    max_queries: Annotated[int | None, typer.Option(help="LoadGen maximum query count.")] = None
    target_qps: Annotated[float | None, typer.Option(help="Server: Poisson arrival rate, queries/s.")] = None
    expected_latency_ms: Annotated[
        float | None,
        typer.Option(
            help="Single/multi-stream: LoadGen's expected latency hint (default: measured); sizes its schedule."
        ),
    ] = None
    expected_qps: Annotated[
        float | None, typer.Option(help="Offline: LoadGen's expected samples/s hint (default: measured).")
    ] = None
    latency_bound_ms: Annotated[float | None, typer.Option(help="Server: latency bound (default 100 ms).")] = None
    samples_per_query: Annotated[int, typer.Option(help="Multi-stream: samples per query.")] = 8
    warmup: Annotated[int, typer.Option(help="Untimed warm-up predictor calls.")] = 10
    performance_sample_count: Annotated[
        int | None,
        typer.Option(help="Dataset items kept pre-processed in RAM at once (default: min(size, 1024))."),
    ] = None
    sample_cache: Annotated[
        bool, typer.Option(help="Keep pre-processed image samples on disk for later runs (results never change).")
    ] = True
    seed: Annotated[int | None, typer.Option(help="Derive LoadGen's three seeds from this one.")] = None
    device: Annotated[str, typer.Option(help="cpu | gpu | fpga.")] = "cpu"
    threads: Annotated[int | None, typer.Option(help="Intra-op threads for the framework.")] = None
    trace_level: Annotated[
        str, typer.Option(help="no | application | model | framework | library | system | hardware | full.")
    ] = "model"
    framework_trace_calls: Annotated[
        int,
        typer.Option(help="At --trace-level framework: profile this many calls of the performance run, then stop."),
    ] = DEFAULT_FRAMEWORK_TRACE_MAX_CALLS
    reference: Annotated[
        str | None, typer.Option(help="Framework the others are compared with (default: the first of --framework).")
    ] = None
    parallel: Annotated[
        int | None,
        typer.Option(min=1, help="Agents running at once (default: one per framework; batch sizes run in turn)."),
    ] = None
    direct: Annotated[
        bool, typer.Option("--direct", help="Evaluate in this process, without NATS, collector or agents.")
    ] = False
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Result JSON path.")] = None


def _command_signature(options: type[EvaluateOptions]) -> inspect.Signature:
    """``(ctx, <every field of options>)`` with the fields' annotations (typer's ``Annotated`` options) and defaults."""
    hints = typing.get_type_hints(options, include_extras=True)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("ctx", kind, annotation=typer.Context)]
    for field in dataclasses.fields(options):
        default = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        parameters.append(inspect.Parameter(field.name, kind, annotation=hints[field.name], default=default))
    return inspect.Signature(parameters, return_annotation=None)


def evaluate(ctx: typer.Context, **given: Any) -> None:
    """Evaluate MODEL on FRAMEWORK(s): accuracy and/or performance under an MLPerf LoadGen scenario."""
    options = EvaluateOptions(**given)
    plan = _plan(ctx.find_root().obj or {}, options)
    console = literal_console()
    if options.direct:
        _run_directly(plan, console)
        return
    _run_with_agents(plan, console)


evaluate.__signature__ = _command_signature(EvaluateOptions)  # type: ignore[attr-defined]  # what typer reads


@dataclass(frozen=True)
class _Plan:
    """What an evaluation runs, checked before anything starts."""

    options: EvaluateOptions
    context: CliContext
    settings: EvaluationSettings
    batch_sizes: list[int]
    accelerator: Accelerator
    level: TraceLevel
    frameworks: list[str]
    reference: str
    output: Path
    stamp: str


def _plan(root_options: dict[str, Any], options: EvaluateOptions) -> _Plan:
    """The options checked and the resources they name too: unknown names, incompatible pairs, malformed artifact
    URIs and missing runtimes fail here; a LoadGen schedule that may not fit in memory is warned of."""
    batch_sizes = parse_batch_sizes(options.batch_size)
    settings = _settings(options, batch_sizes[0])
    accelerator: Accelerator = _choice(options.device, ("cpu", "gpu", "fpga"), "--device")  # type: ignore[assignment]
    try:
        level = TraceLevel.parse(options.trace_level)
    except ValueError as e:
        raise EvaluationError(f"--trace-level: {e}.") from e
    frameworks = list(dict.fromkeys(name.strip() for name in options.framework.split(",") if name.strip()))
    if not frameworks:
        raise EvaluationError("--framework names no framework.")
    reference = options.reference or frameworks[0]
    if reference not in frameworks:
        raise EvaluationError(
            f"--reference '{reference}' is not one of the evaluated frameworks ({', '.join(frameworks)})."
        )
    context = build_context(root_options.get("assets", []), root_options.get("cache_dir"))
    check_before_start(context, options.model, frameworks, options.dataset, accelerator, with_agents=not options.direct)
    schedule_warning = check_schedule([settings.model_copy(update={"batch_size": size}) for size in batch_sizes])
    if schedule_warning is not None:
        literal_console(stderr=True).print(f"warning: {schedule_warning}", soft_wrap=True, markup=False)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    output = options.output
    if output is None:
        output = Path("results") / f"{options.model}-{'-'.join(frameworks)}-{settings.scenario}-{stamp}" / "result.json"
    return _Plan(options, context, settings, batch_sizes, accelerator, level, frameworks, reference, output, stamp)


def _settings(options: EvaluateOptions, batch_size: int) -> EvaluationSettings:
    """The LoadGen settings of the options (at the first batch size); invalid ones named by their flags."""
    with naming_options():
        return EvaluationSettings(
            scenario=_choice(options.scenario, SCENARIOS, "--scenario"),
            mode=_choice(options.mode, MODES, "--mode"),
            batch_size=batch_size,
            warmup_queries=options.warmup,
            min_duration_s=parse_duration_s(options.min_duration, "--min-duration"),
            max_duration_s=parse_duration_s(options.max_duration, "--max-duration") if options.max_duration else None,
            min_query_count=options.min_queries,
            max_query_count=options.max_queries,
            target_qps=options.target_qps,
            expected_latency_ms=options.expected_latency_ms,
            expected_qps=options.expected_qps,
            latency_bound_ms=options.latency_bound_ms,
            samples_per_query=options.samples_per_query,
            seeds=Seeds.from_single(options.seed) if options.seed is not None else Seeds(),
            framework_trace_max_calls=options.framework_trace_calls,
            performance_sample_count=options.performance_sample_count,
            sample_cache=options.sample_cache,
        )


def _run_directly(plan: _Plan, console: Console) -> None:
    """``--direct``: one framework at one batch size, in this process."""
    if len(plan.frameworks) > 1 or len(plan.batch_sizes) > 1:
        raise EvaluationError("--direct evaluates one framework at one batch size at a time.")
    options, output = plan.options, plan.output
    result = evaluate_directly(
        plan.context,
        options.model,
        plan.frameworks[0],
        options.dataset,
        plan.settings,
        plan.accelerator,
        options.threads,
        output,
    )
    result.write(output)
    console.print(result_table(result))
    console.print(f"result: {output}   LoadGen logs: {output.parent / f'{output.stem}-loadgen'}")


def _run_with_agents(plan: _Plan, console: Console) -> None:
    """Every framework at every batch size, as agents (at most ``--parallel`` at once); the results reported."""
    evaluation_id = f"{plan.options.model}-{plan.stamp}-{uuid.uuid4().hex[:6]}"
    concurrent = min(plan.options.parallel or len(plan.frameworks), len(plan.frameworks) * len(plan.batch_sizes))
    threads = plan.options.threads
    if threads is None and concurrent > 1:
        # Agents side by side must not oversubscribe the cores: a framework's spinning thread pool (ONNX Runtime,
        # OpenMP) starves the others and every latency turns into scheduling noise.
        threads = max(1, container_cpus().cpus // concurrent)
        console.print(f"{concurrent} agents at once: {threads} intra-op thread(s) each (override with --threads)")
    specs = _specs(plan, evaluation_id, threads)
    data = data_dir(os.environ)
    try:
        with stopping_on_termination_signals():
            results, failures = evaluate_locally(plan.context, specs, data, console, concurrent)
    except TerminationSignal as e:
        literal_console(stderr=True).print(
            f"stopped by {e.name}: the agents, the collector and NATS that this evaluation started are stopped; "
            f"what was stored is in {data.root}.",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(e.exit_code) from None
    _report(plan, console, evaluation_id, len(specs), results, failures, data.root)


def _specs(plan: _Plan, evaluation_id: str, threads: int | None) -> list[RunSpec]:
    """One run spec per batch size and framework; the agents evaluate exactly these resources (the manifests as
    validated now), and read no asset folder."""
    options, frameworks = plan.options, plan.frameworks
    loadgen_dir = plan.output.parent / f"{plan.output.stem}-loadgen"

    def output_dir(_run_id: str, framework: str, batch_size: int | None) -> Path:
        return _loadgen_dir(loadgen_dir, framework if len(frameworks) > 1 else None, batch_size)

    with naming_options():
        return run_matrix(
            plan.context.registry,
            evaluation_id,
            options.model,
            frameworks,
            plan.batch_sizes,
            dataset=options.dataset,
            settings=plan.settings,
            cache_dir=plan.context.store.cache_dir.resolve(),
            output_dir=output_dir,
            device=plan.accelerator,
            intra_op_threads=threads,
            trace_level=plan.level,
        )


def _report(
    plan: _Plan,
    console: Console,
    evaluation_id: str,
    run_count: int,
    results: list[RunResult],
    failures: dict[str, str],
    data_root: Path,
) -> None:
    """Print each result (and the summary of several), write the result JSON, name where everything is; an
    EvaluationError listing the runs that failed."""
    output = plan.output
    for result in results:
        console.print(result_table(result))
    if run_count == 1 and results:
        results[0].write(output)
    elif results:
        summary = summarize(evaluation_id, plan.reference, results, failures)
        summary.write(output)
        for table in summary_tables(summary):
            console.print(table)
    if results:
        console.print(f"result: {output}   LoadGen logs: {output.parent / f'{output.stem}-loadgen'}")
        console.print(f"data (NATS, collector database, agent logs): {data_root}")
        if len(results) == 1:
            console.print(f"trace: mlmodelscope trace export {results[0].id} -o {results[0].id}.trace.json")
        else:
            console.print("traces: `mlmodelscope runs list`, then `mlmodelscope trace export RUN_ID -o RUN_ID.json`")
    if failures:
        problems = "; ".join(f"{run_id}: {message}" for run_id, message in failures.items())
        raise EvaluationError(f"{len(failures)} of {run_count} runs failed: {problems}")
