"""Local mode's evaluation: each run an agent process, through an embedded NATS and the local collector.

At most ``parallel`` agents run at once, in the order of the specs, each with its framework's interpreter and its
output in the run's ``agent.log``; their progress comes from the bus, their results from the collector (restarted
if it dies: the messages wait in JetStream). A stopped evaluation stops its agents (SIGTERM, so they publish their
runs as cancelled, then SIGKILL after ``_AGENT_STOP_TIMEOUT_S``).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn

from mlmodelscope.cli.context import CliContext
from mlmodelscope.cli.local import BusProgress, DataDir, local_collector, wait_for_runs
from mlmodelscope.cli.termination import signals_deferred
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.run_contract import RunSpec

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


def evaluate_locally(
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
