"""The one supervisor of local agent processes (core.run_supervisor), with stand-in agents: shell scripts run as
the interpreter, so the test sees exactly the command, the spec file, the log and the signals each gets."""

from __future__ import annotations

import signal
import stat
import time
from pathlib import Path

import pytest

from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.run_contract import ResolvedResources, RunSpec
from mlmodelscope.core.run_supervisor import RunSupervisor
from tests.support.paths import ASSETS

SLEEPER = '#!/bin/sh\necho "agent $*"\nexec sleep 60\n'
STUBBORN = "#!/bin/sh\ntrap '' TERM\necho ready\nwhile :; do sleep 1; done\n"  # ignores SIGTERM


def _script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _specs(tmp_path: Path, count: int) -> list[RunSpec]:
    resources = ResolvedResources.from_registry(load_registry([ASSETS]), "digits-cnn", "onnxruntime")
    return [
        RunSpec(
            run_id=f"run-{index}",
            evaluation_id="supervised",
            model="digits-cnn",
            framework="onnxruntime",
            dataset=resources.dataset_name,
            resources=resources,
            cache_dir=tmp_path / "cache",
            output_dir=tmp_path / "out",
        )
        for index in range(count)
    ]


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_at_most_parallel_agents_run_in_order_each_with_its_spec_and_log(tmp_path: Path) -> None:
    sleeper = _script(tmp_path, "agent.sh", SLEEPER)
    supervisor = RunSupervisor(_specs(tmp_path, 3), tmp_path / "runs", lambda spec: sleeper, parallel=2)
    try:
        assert supervisor.start_pending() == ["run-0", "run-1"]
        assert supervisor.start_pending() == [] and supervisor.running() == 2 and not supervisor.done()
        spec_path = tmp_path / "runs" / "run-0" / "spec.json"
        assert RunSpec.model_validate_json(spec_path.read_text()).run_id == "run-0"
        _until(lambda: supervisor.log_path("run-0").read_text(), "the first agent's output in its log")
        assert supervisor.log_path("run-0").read_text() == f"agent -m mlmodelscope.agent --spec {spec_path}\n"
        supervisor.processes["run-0"].terminate()  # one finishes: the next one starts in its place
        supervisor.processes["run-0"].wait()
        assert supervisor.start_pending() == ["run-2"]
    finally:
        supervisor.stop(timeout_s=10)
    assert supervisor.done() and supervisor.start_pending() == []
    assert {process.returncode for process in supervisor.processes.values()} == {-signal.SIGTERM}


def test_stop_kills_an_agent_that_ignores_sigterm_and_starts_nothing_more(tmp_path: Path) -> None:
    stubborn = _script(tmp_path, "stubborn.sh", STUBBORN)
    supervisor = RunSupervisor(_specs(tmp_path, 2), tmp_path / "runs", lambda spec: stubborn, parallel=1)
    assert supervisor.start_pending() == ["run-0"]
    _until(lambda: supervisor.log_path("run-0").read_text() == "ready\n", "the trap to be set")
    supervisor.stop(timeout_s=0.5)
    assert supervisor.processes["run-0"].returncode == -signal.SIGKILL
    assert supervisor.done() and "run-1" not in supervisor.processes


def test_parallel_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        RunSupervisor([], tmp_path, lambda spec: "python", parallel=0)
