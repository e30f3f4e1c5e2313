"""SIGTERM and SIGHUP to `mlmodelscope evaluate` stop everything it started, as Ctrl-C does.

A closed terminal sends SIGHUP, `timeout` and CI runners send SIGTERM, to the CLI alone (not to its process group,
as a terminal's Ctrl-C does): the CLI must stop the agents, the collector and the embedded nats-server itself,
and exit, with no orphan left evaluating.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mlmodelscope.cli.termination import TerminationSignal, signals_deferred, stopping_on_termination_signals
from tests.support.evaluate_process import EvaluateProcess


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


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
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

    if signum == signal.SIGINT:  # Ctrl-C, sent to the CLI alone: the behaviour the other two must match
        assert code != 0, evaluation.stderr
    else:
        assert code == 128 + signum, evaluation.stderr
        assert f"stopped by {signum.name}" in evaluation.stderr
    assert "Traceback" not in evaluation.stderr + evaluation.stdout
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


def _ignores_sigterm(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGTERM (its SigIgn mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def test_a_signal_inside_a_deferred_block_is_raised_at_its_end_and_children_can_still_be_stopped() -> None:
    """A process started between the signal and the end of the block is recorded (the block runs to its end) and
    does not inherit an ignored SIGTERM, so the cleanup can stop it."""
    previous = signal.getsignal(signal.SIGTERM)
    started: list[subprocess.Popen[bytes]] = []
    try:
        with pytest.raises(TerminationSignal) as raised, stopping_on_termination_signals(), signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            started.append(subprocess.Popen(["sleep", "30"]))
        assert raised.value.signum == signal.SIGTERM
        assert raised.value.exit_code == 143
        assert len(started) == 1
        assert not _ignores_sigterm(started[0].pid)
        started[0].terminate()
        assert started[0].wait(timeout=30) == -signal.SIGTERM
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=30)
    assert signal.getsignal(signal.SIGTERM) == previous
