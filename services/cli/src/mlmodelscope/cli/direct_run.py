"""``mlmodelscope evaluate --direct``: one run in this process (no NATS, collector or agents), with a progress bar.

The driver's hot path takes no callbacks: a watcher thread polls its ``RunProgress`` and draws the bar.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mlmodelscope.cli.context import CliContext
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.fields import Accelerator

_POLL_INTERVAL_S = 0.2


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


def evaluate_directly(
    context: CliContext,
    model: str,
    framework: str,
    dataset: str | None,
    settings: EvaluationSettings,
    device: Accelerator,
    threads: int | None,
    output: Path,
) -> RunResult:
    request = RunRequest(
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
        return execute_run(context.registry, context.store, request, progress=progress)
    finally:
        done.set()
        watcher.join()
