"""Agent processes of local runs, started, limited and stopped in one place: the CLI's local mode and the
collector's launch form both run their specs through ``RunSupervisor``.

Why: both started ``<python> -m mlmodelscope.agent --spec <runs>/<run id>/spec.json`` with its output in the run's
``agent.log``, kept at most N running in order, and terminated the survivors on the way out, each with its own
copy of the loop and of the SIGTERM-then-SIGKILL rule (that rule is ``core.child_service.terminate_all``, the
one local mode's services stop by too). A run's completion is its process's exit; what it stored is read from the
collector, and its progress from the bus (display only).

Non-blocking: the owner calls ``start_pending`` from its own loop (the CLI's progress loop, the launcher's
thread), so that it decides what else happens between two starts (a Ctrl-C deferred while a process starts, a
collector restart, a progress bar).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mlmodelscope.core.child_service import terminate_all
from mlmodelscope.core.run_contract import RunSpec

SPEC_FILE = "spec.json"
LOG_FILE = "agent.log"


def agent_command(python: str, spec_path: Path) -> list[str]:
    """How every local agent is started (the operator's Jobs run the same module with ``--spec-env``)."""
    return [python, "-m", "mlmodelscope.agent", "--spec", str(spec_path)]


class RunSupervisor:
    """The agent processes of ``specs``: at most ``parallel`` at once, started in order.

    ``interpreter(spec)`` names the Python that runs a spec's agent (its Framework's ``spec.runtime.python``);
    ``environment`` is the agents' environment (None: this process's, which is how local mode hands them the NATS
    token without a command line showing it)."""

    def __init__(
        self,
        specs: Sequence[RunSpec],
        runs_dir: Path,
        interpreter: Callable[[RunSpec], str],
        *,
        parallel: int,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, not {parallel}")
        self._pending = list(specs)
        self._runs_dir = runs_dir
        self._interpreter = interpreter
        self._parallel = parallel
        self._environment = dict(environment) if environment is not None else None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, run_id: str) -> Path:
        return self._runs_dir / run_id / LOG_FILE

    def running(self) -> int:
        return sum(process.poll() is None for process in self.processes.values())

    def done(self) -> bool:
        """Every spec started and every process exited."""
        return not self._pending and self.running() == 0

    def start_pending(
        self, before_start: Callable[[], contextlib.AbstractContextManager[object]] | None = None
    ) -> list[str]:
        """Start the next specs while fewer than ``parallel`` run; the run ids started. ``before_start()`` is a
        context entered around each start (the CLI defers its termination signals there, so that a started agent
        is always one it knows and stops)."""
        started: list[str] = []
        running = self.running()
        while self._pending and running < self._parallel:
            spec = self._pending.pop(0)
            with before_start() if before_start is not None else contextlib.nullcontext():
                self.processes[spec.run_id] = self._start(spec)
            started.append(spec.run_id)
            running += 1
        return started

    def _start(self, spec: RunSpec) -> subprocess.Popen[bytes]:
        run_dir = self._runs_dir / spec.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = run_dir / SPEC_FILE
        spec_path.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        with (run_dir / LOG_FILE).open("wb") as log:
            return subprocess.Popen(
                agent_command(self._interpreter(spec), spec_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment,
            )

    def stop(self, timeout_s: float) -> None:
        """Start nothing more; SIGTERM every agent still running (it publishes its run as cancelled), wait for all
        of them together at most ``timeout_s``, then SIGKILL the ones left, and reap them all."""
        self._pending.clear()
        terminate_all(list(self.processes.values()), timeout_s)
