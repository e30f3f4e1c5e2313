"""Local mode's evaluation: each run an agent process, through an embedded NATS and the local collector.

At most ``parallel`` agents run at once, in the order of the specs, each with its framework's interpreter and its
output in the run's ``agent.log`` (``core.run_supervisor``, as the collector's launch form runs them); their
progress comes from the bus, their results from the collector (restarted if it dies: the messages wait in
JetStream). A stopped evaluation stops its agents (SIGTERM, so they publish their runs as cancelled, then SIGKILL
after ``_AGENT_STOP_TIMEOUT_S``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn

from mlmodelscope.cli.context import CliContext
from mlmodelscope.cli.local import BusProgress, CollectorProcess, DataDir, local_collector, wait_for_runs
from mlmodelscope.cli.termination import signals_deferred
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.run_contract import RunSpec
from mlmodelscope.core.run_supervisor import RunSupervisor

_POLL_INTERVAL_S = 0.2
# An agent told to stop publishes its run as cancelled first; it gets this long before SIGKILL.
_AGENT_STOP_TIMEOUT_S = 10.0


def _agent_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1].removeprefix("error: ")


def agent_interpreter(context: CliContext, framework: str) -> str:
    """The Python that runs ``framework``'s agents (the Framework's ``spec.runtime.python``, or this one)."""
    return context.registry.agent_interpreter(framework, sys.executable)


def evaluate_locally(
    context: CliContext, specs: list[RunSpec], data: DataDir, console: Console, parallel: int
) -> tuple[list[RunResult], dict[str, str]]:
    """Run the specs as agent processes (at most ``parallel`` at once, in order) through an embedded NATS and the
    collector; results come back from the collector."""
    # The agents need only NATS: their start-up (framework imports, model load) overlaps the collector's. A
    # collector that dies while starting is restarted like one that dies later (ensure_running); reading the
    # results waits for it to be ready (CollectorProcess.get).
    with local_collector(data, with_nats=True, wait_ready=False) as (collector, server):
        assert server is not None
        supervisor = RunSupervisor(
            [spec.model_copy(update={"nats_url": server.url}) for spec in specs],
            data.runs,
            lambda spec: agent_interpreter(context, spec.framework),
            parallel=parallel,
        )
        bus = BusProgress()
        bus.follow(server.url)
        try:
            _supervise(supervisor, collector, bus, console)
        finally:
            bus.stop()
            supervisor.stop(_AGENT_STOP_TIMEOUT_S)
        return _collect(supervisor, collector)


def _supervise(supervisor: RunSupervisor, collector: CollectorProcess, bus: BusProgress, console: Console) -> None:
    """Start the agents as places free up and show each one's phase until all have exited; restart a collector
    that died meanwhile."""
    columns = (TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}
        while not supervisor.done():
            if collector.ensure_running():
                console.print(
                    f"the collector died; restarted it ({collector.restarts} of {collector.max_restarts}), "
                    "nothing is lost (the messages wait in JetStream)"
                )
            # a started agent is always in supervisor.processes, which are stopped on the way out
            for run_id in supervisor.start_pending(signals_deferred):
                tasks[run_id] = bar.add_task(run_id, total=None)
            for run_id, task in tasks.items():
                running = supervisor.processes[run_id].poll() is None
                phase = bus.phases.get(run_id, "starting") if running else "done"
                bar.update(task, description=f"{run_id}: {phase}, {bus.completed.get(run_id, 0):,} queries")
            time.sleep(_POLL_INTERVAL_S)


def _collect(supervisor: RunSupervisor, collector: CollectorProcess) -> tuple[list[RunResult], dict[str, str]]:
    """The results the collector stored, and why each other run failed (its agent's last error line, or the
    stored error)."""
    results: list[RunResult] = []
    failures: dict[str, str] = {}
    processes = supervisor.processes
    published = [run_id for run_id, process in processes.items() if process.returncode in (0, 1)]
    for run_id, process in processes.items():
        if process.returncode != 0:
            failures[run_id] = _agent_error(supervisor.log_path(run_id))
    details = wait_for_runs(collector, published, timeout_s=120.0) if published else {}
    for run_id, detail in details.items():
        if detail["status"] == "succeeded":
            document = collector.get_json(run_api_path(run_id, "result"))
            results.append(RunResult.model_validate(document))
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
