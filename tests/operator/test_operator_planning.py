"""Planning, Job building, status and result summaries, without a cluster: the pure parts of the operator."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mlmodelscope.core.evaluation.loadgen_report import ConstraintCheck
from mlmodelscope.core.evaluation.results import RunResult, Verdict
from mlmodelscope.core.run_contract import RunSpec
from mlmodelscope.operator import jobs, planning, status
from mlmodelscope.operator.errors import UnsatisfiableError
from mlmodelscope.operator.evaluation import RunStatus
from mlmodelscope.operator.results import CollectedRun, figures_of, summarize, with_regression
from mlmodelscope.operator.settings import OperatorSettings
from tests.support.operator_catalog import digits_catalog, digits_evaluation_spec
from tests.support.run_results import VERDICT, classification_result

SETTINGS = OperatorSettings(fpga_resource="intel.com/agilex")


def test_matrix_order_names_and_ids_are_deterministic_and_valid():
    spec = digits_evaluation_spec(targets=[{"arch": "amd64"}, {"arch": "arm64", "repeats": 2}], batch_sizes=[1, 4])
    runs = planning.plan("a" * 63, "0b6d4f1e-1111-2222-3333-444455556666", spec, digits_catalog(), SETTINGS)
    assert [r.key for r in runs] == [
        "digits-cnn/onnxruntime/amd64-cpu/b1",
        "digits-cnn/onnxruntime/amd64-cpu/b4",
        "digits-cnn/onnxruntime/arm64-cpu/b1/r0",
        "digits-cnn/onnxruntime/arm64-cpu/b1/r1",
        "digits-cnn/onnxruntime/arm64-cpu/b4/r0",
        "digits-cnn/onnxruntime/arm64-cpu/b4/r1",
    ]
    assert len({r.job_name for r in runs}) == len({r.run_id for r in runs}) == 6
    for run in runs:
        assert len(run.job_name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", run.job_name)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", run.run_id)
    again = planning.plan("a" * 63, "0b6d4f1e-1111-2222-3333-444455556666", spec, digits_catalog(), SETTINGS)
    assert [r.job_name for r in again] == [r.job_name for r in runs]
    longer = planning.plan(
        "a" * 63,
        "0b6d4f1e-1111-2222-3333-444455556666",
        digits_evaluation_spec(
            targets=[{"arch": "amd64"}, {"arch": "arm64", "repeats": 2}], batch_sizes=[1, 4], min_duration_s=60
        ),
        digits_catalog(),
        SETTINGS,
    )
    assert not {r.job_name for r in longer} & {r.job_name for r in runs}  # changed settings: new Jobs


@pytest.mark.parametrize(
    ("framework_changes", "resource"),
    [({}, "intel.com/agilex"), ({"device_resources": {"fpga": "xilinx.com/fpga-u250"}}, "xilinx.com/fpga-u250")],
)
def test_fpga_runs_ask_for_the_configured_device_plugin_resource(framework_changes, resource: str):
    spec = digits_evaluation_spec(targets=[{"arch": "amd64", "accelerator": "fpga"}])
    [run] = planning.plan("fpga", "uid", spec, digits_catalog(**framework_changes), SETTINGS)
    job = jobs.build_job(
        run, evaluation="fpga", namespace="team-a", uid="uid", spec=spec, settings=SETTINGS, run_spec_json="{}"
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"][resource] == "1"
    assert container["image"] == "example.org/ort:fpga"
    assert job["spec"]["template"]["spec"]["tolerations"] == []  # the GPU taint is not the FPGA's


def test_the_job_run_spec_is_what_the_agent_accepts():
    spec = digits_evaluation_spec(
        scenario="server", mode="performance", target_qps=50, threads=2, trace_level="framework", seed=7
    )
    [run] = planning.plan("srv", "uid", spec, digits_catalog(), SETTINGS)
    parsed = RunSpec.model_validate_json(jobs.run_spec(run, "team-a/srv", spec, SETTINGS).model_dump_json())
    assert parsed.settings.target_qps == 50 and parsed.intra_op_threads == 2
    assert parsed.trace_level.name == "FRAMEWORK" and parsed.evaluation_id == "team-a/srv"
    assert parsed.settings.seeds.qsl != 2376919268182438552  # derived from seed 7


def test_every_problem_is_named_at_once():
    spec = digits_evaluation_spec(models=["digits-cnn", "nope"], frameworks=["onnxruntime", "tvm"])
    with pytest.raises(UnsatisfiableError) as raised:
        planning.plan("x", "uid", spec, digits_catalog(), SETTINGS)
    assert raised.value.message == (
        "unknown Model 'nope' in namespace 'team-a' (known: digits-cnn); "
        "unknown Framework 'tvm' in namespace 'team-a' (known: onnxruntime)."
    )


def _job(**job_status: Any) -> dict[str, Any]:
    return {"spec": {}, "status": job_status}


def test_job_states_and_the_evaluation_phase_and_conditions():
    spec = digits_evaluation_spec(batch_sizes=[1, 2])
    one, two = planning.plan("ev", "uid", spec, digits_catalog(), SETTINGS)
    complete = _job(succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    failed = _job(
        failed=3,
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ],
    )
    good = CollectedRun(
        "succeeded",
        "",
        summarize(_result(p50_ns=1_000, p90_ns=2_000, p99_ns=3_000)),
    )
    assert status.run_status(one, None, None).state == "Pending"
    waiting = status.run_status(one, complete, None)
    assert (waiting.state, waiting.message) == (
        "Running",
        "Job complete; waiting for the collector to store the result",
    )
    done = status.run_status(one, complete, good)
    assert done.state == "Succeeded" and done.result is not None and done.result.p99_ms == 0.003
    broken = status.run_status(two, failed, CollectedRun("failed", "model load failed", None))
    assert broken.state == "Failed" and broken.attempts == 3
    assert broken.message == (
        "Job failed (BackoffLimitExceeded: Job has reached the specified backoff limit); agent: model load failed"
    )

    running = status.evaluation_status([done, waiting], jobs_exist=True, generation=1, previous=None, now="t0")
    assert (running.phase, running.progress, running.valid) == ("Running", "1/2", "1/2")
    assert [(c.type, c.status, c.reason) for c in running.conditions] == [
        ("Ready", "False", "RunsInProgress"),
        ("ResultValid", "Unknown", "ResultsPending"),
        ("Regressed", "Unknown", "NotChecked"),
        ("Succeeded", "False", "RunsInProgress"),
        ("Failed", "False", "RunsInProgress"),
    ]
    finished = status.evaluation_status([done, broken], jobs_exist=True, generation=1, previous=running, now="t1")
    assert finished.phase == "Failed" and finished.last_error == broken.message
    ready, valid, *_ = finished.conditions
    assert (ready.reason, ready.last_transition_time) == ("RunsFailed", "t0")  # still False: time kept
    assert (valid.status, valid.last_transition_time) == ("False", "t1")


def test_an_invalid_verdict_names_the_failed_constraints():
    constraints = [
        ConstraintCheck(name="min_duration", satisfied=True, reason=""),
        ConstraintCheck(name="early_stopping", satisfied=False, reason="needs 662 queries, ran 100"),
    ]
    result = summarize(_result(verdict=VERDICT.model_copy(update={"valid": False, "constraints": constraints})))
    assert result.valid is False and result.reason == "early_stopping: needs 662 queries, ran 100"


def test_a_result_of_another_schema_gives_no_figures_and_says_why():
    document = classification_result().model_dump(mode="json") | {"schema_version": 7}
    del document["performance"]["latency"]
    figures = figures_of(document)
    assert (figures.valid, figures.p99_ms, figures.top1) == (None, None, None)
    assert figures.reason.startswith("the collector's result (schema_version 7) is not a RunResult of this operator")
    assert "performance.latency: Field required" in figures.reason


def test_the_regressed_condition_carries_the_collectors_regression_checks():
    document = _result(p99_ns=5_000_000)
    ok = with_regression(summarize(document), {"state": "ok", "verdict": {"reasons": []}})
    slow = with_regression(
        summarize(document), {"state": "regressed", "verdict": {"reasons": ["p99 is 1.31x the baseline's"]}}
    )
    assert with_regression(summarize(document), {"state": "bogus"}).regression is None
    assert (slow.regression, slow.regression_reason) == ("regressed", "p99 is 1.31x the baseline's")

    def finished(*results):  # type: ignore[no-untyped-def]
        runs = [
            RunStatus.model_validate(
                {
                    "name": f"m/f/amd64-cpu/b{i}",
                    "model": "m",
                    "framework": "f",
                    "arch": "amd64",
                    "accelerator": "cpu",
                    "batch_size": 1,
                    "run_id": f"r{i}",
                    "job_name": f"j{i}",
                    "state": "Succeeded",
                    "result": r.model_dump(),
                }
            )
            for i, r in enumerate(results)
        ]
        return {
            c.type: c
            for c in status.evaluation_status(runs, jobs_exist=True, generation=1, previous=None, now="t").conditions
        }["Regressed"]

    flagged = finished(ok, slow)
    assert (flagged.status, flagged.reason) == ("True", "RegressedAgainstBaseline")
    assert "m/f/amd64-cpu/b1: p99 is 1.31x the baseline's" in flagged.message
    clean = finished(ok, ok)
    assert (clean.status, clean.reason, clean.message) == (
        "False",
        "NoRegression",
        "2 of 2 runs compared with a baseline, none regressed",
    )
    assert finished(summarize(document)).status == "Unknown"  # the collector had no answer


def _result(*, verdict: Verdict = VERDICT, **latency_ns: int) -> RunResult:
    """The fixtures' classification result with this performance verdict and these latency percentiles."""
    base = classification_result()
    assert base.performance is not None
    latency = base.performance.latency.model_copy(update=latency_ns)
    performance = base.performance.model_copy(update={"verdict": verdict, "latency": latency})
    return base.model_copy(update={"performance": performance})
