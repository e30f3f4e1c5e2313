"""`mlmodelscope evaluate` as a background process, for tests that signal it or kill what it started.

The command runs from the installed entry point with its own data folder; its children (the embedded nats-server,
the collector, the agents) are found with psutil by their command lines. Every wait is bounded, and ``reap`` kills
whatever is left of the whole tree, even when a test fails.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.cli import clean_environment
from tests.support.paths import CLI, REPO
from tests.support.pipeline_processes import tail
from tests.support.waiting import wait_for

ROLES = {"nats": "nats-server", "collector": "mlmodelscope.collector.main", "agent": "mlmodelscope.agent"}


@dataclass
class EvaluateProcess:
    workdir: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def output(self) -> Path:
        return self.workdir / "r.json"

    def start(self) -> EvaluateProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [str(CLI), "--cache-dir", str(self.workdir / "cache"), "evaluate", "-o", str(self.output)]
        with (self.workdir / "stdout.txt").open("wb") as out, (self.workdir / "stderr.txt").open("wb") as err:
            self.process = subprocess.Popen(
                [*command, *self.args],
                cwd=REPO,
                env=clean_environment(MLMODELSCOPE_DATA_DIR=str(self.data_dir)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        return self

    @property
    def stdout(self) -> str:
        return tail(self.workdir / "stdout.txt", 20_000)

    @property
    def stderr(self) -> str:
        return tail(self.workdir / "stderr.txt", 20_000)

    def children(self, role: str) -> list[psutil.Process]:
        """The live descendants of the command whose command line names ``role``'s program."""
        assert self.process is not None
        found = []
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    self._seen[child.pid] = child
                    if any(ROLES[role] in part for part in child.cmdline()):
                        found.append(child)
        return found

    def wait_for_agent(self, timeout_s: float = 180.0) -> psutil.Process:
        """Block until an agent process runs and its run's spec is written; the agent."""

        def agent() -> psutil.Process | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"evaluate exited with {self.process.returncode}:\n{self.stderr}")
            agents = self.children("agent")
            specs = list((self.data_dir / "runs").glob("*/spec.json"))
            return agents[0] if agents and specs else None

        return wait_for(agent, timeout_s=timeout_s, what=f"an agent of `evaluate`\n{self.stderr}", interval_s=0.2)

    def tree(self) -> list[psutil.Process]:
        """Every descendant seen so far (recorded before a signal: after it they may be orphans)."""
        for role in ROLES:
            self.children(role)
        return list(self._seen.values())

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def reap(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        for child in self._seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(list(self._seen.values()), timeout=10)
