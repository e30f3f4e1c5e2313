"""A collector that dies during `mlmodelscope evaluate` is restarted and the evaluation completes; when it cannot
be restarted, the command ends with a one-paragraph error (no traceback) and stops what it started.

The collector is SIGKILLed while the agent evaluates: what the agent publishes meanwhile waits in JetStream, and
the restarted collector (same database, same durable consumer) stores it, so the result is complete. The run is
8 s long: the collector starts beside the agent at a lower CPU priority, so on a busy machine it may take seconds
to listen, and the kill must land while the agent still runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.evaluate_process import EvaluateProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def evaluation(tmp_path: Path) -> Iterator[EvaluateProcess]:
    process = EvaluateProcess(
        tmp_path, ["-m", "digits-cnn", "-f", "onnxruntime", "--mode", "performance", "--min-duration", "8s"]
    )
    try:
        yield process.start()
    finally:
        process.reap()


def _wait_for_the_collector_to_listen(evaluation: EvaluateProcess) -> None:
    """The collector starts beside the agent (its start-up overlaps the agent's): wait until it serves HTTP."""

    def listening() -> bool:
        for collector in evaluation.children("collector"):
            with contextlib.suppress(psutil.Error):
                if any(c.status == psutil.CONN_LISTEN for c in collector.net_connections(kind="tcp")):
                    return True
        return False

    wait_for(listening, timeout_s=120, what="the collector to listen", interval_s=0.2)


def _kill_the_collector_mid_run(evaluation: EvaluateProcess) -> list[psutil.Process]:
    agent = evaluation.wait_for_agent()
    _wait_for_the_collector_to_listen(evaluation)
    started = evaluation.tree()
    (collector,) = evaluation.children("collector")
    collector.kill()
    collector.wait(timeout=10)
    assert agent.is_running(), "the agent had finished before the collector was killed: not a mid-run death"
    return started


def test_a_collector_killed_mid_run_is_restarted_and_the_evaluation_completes(evaluation: EvaluateProcess) -> None:
    _kill_the_collector_mid_run(evaluation)

    code = evaluation.wait(timeout_s=300)

    assert code == 0, evaluation.stderr + evaluation.stdout
    assert "the collector died; restarted it (1 of 3)" in evaluation.stdout
    result = json.loads(evaluation.output.read_text())
    performance = result["performance"]
    assert performance["verdict"]["valid"] is True, performance["verdict"]
    assert performance["latency"]["p50_ns"] > 0
    assert "Traceback" not in evaluation.stderr + evaluation.stdout


def test_a_collector_that_cannot_restart_ends_the_command_with_one_paragraph(evaluation: EvaluateProcess) -> None:
    agent = evaluation.wait_for_agent()
    database = evaluation.data_dir / "collector.db"
    _wait_for_the_collector_to_listen(evaluation)
    database.rename(database.with_suffix(".moved"))
    database.mkdir()  # no collector can open its database any more
    started = _kill_the_collector_mid_run(evaluation)
    assert agent in started

    code = evaluation.wait(timeout_s=300)

    assert code == 1, evaluation.stderr + evaluation.stdout
    stderr = evaluation.stderr
    assert "Traceback" not in stderr + evaluation.stdout
    # An agent may log one transient NATS warning while the collector is down ("... (retrying quietly)", from
    # agent.bus.connection, depending on timing); the command's ending is the one error paragraph after it.
    lines = [line for line in stderr.splitlines() if line.strip() and not line.endswith("(retrying quietly)")]
    assert lines and lines[0].startswith("error: the collector"), stderr
    assert "died with exit code -9 during the evaluation, and restarting it failed" in lines[0], stderr
    assert all(line.startswith(("error:", "how to fix:")) for line in lines), stderr
    assert "collector.log" in stderr
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
