"""SIGTERM and SIGHUP to `mlmodelscope evaluate` stop everything it started, as Ctrl-C does.

A closed terminal sends SIGHUP, `timeout` and CI runners send SIGTERM, to the CLI alone (not to its process group,
as a terminal's Ctrl-C does): the CLI must stop the agents, the collector and the embedded nats-server itself,
and exit, with no orphan left evaluating.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.evaluate_process import EvaluateProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def evaluation(tmp_path: Path) -> Iterator[EvaluateProcess]:
    # Long enough that the agent is still evaluating when the signal comes; the test never waits for its end.
    process = EvaluateProcess(
        tmp_path, ["-m", "digits-cnn", "-f", "onnxruntime", "--mode", "performance", "--min-duration", "10m"]
    )
    try:
        yield process.start()
    finally:
        process.reap()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_termination_signal_stops_every_process_evaluate_started(
    evaluation: EvaluateProcess, signum: signal.Signals
) -> None:
    evaluation.wait_for_agent()
    started = evaluation.tree()
    roles = {role for role in ("nats", "collector", "agent") if evaluation.children(role)}
    assert roles == {"nats", "collector", "agent"}, [p.cmdline() for p in started]

    assert evaluation.process is not None
    evaluation.process.send_signal(signum)
    code = evaluation.wait(timeout_s=120)  # bounded: a hang fails here instead of running 10 minutes

    assert code == 128 + signum, evaluation.stderr
    assert f"stopped by {signum.name}" in evaluation.stderr
    assert "Traceback" not in evaluation.stderr + evaluation.stdout
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
