"""Cross-framework agreement metrics and the batch-size sweep, on arrays whose answers are known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.agreement import agreement, compare_outputs, read_outputs, write_outputs
from mlmodelscope.core.evaluation.batch_sweep import BatchPoint, batch_sweeps, optimal_batch_size
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from tests.support.paths import ASSETS


def _agree(p: list[list[float]], q: list[list[float]]):  # type: ignore[no-untyped-def]
    return agreement(np.array(p), np.array(q), reference_name="ref", framework_name="other")


def test_identical_outputs_agree_completely() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10), size=50)
    measured = agreement(p, p.copy(), reference_name="a", framework_name="b")
    assert measured.top1_agreement == 1.0
    assert measured.max_abs_probability_diff == 0.0
    assert measured.mean_kl_divergence == pytest.approx(0.0, abs=1e-12)
    assert measured.mean_js_divergence == pytest.approx(0.0, abs=1e-12)
    assert measured.samples == 50


def test_divergences_match_hand_computed_values() -> None:
    measured = _agree([[1.0, 0.0]], [[0.5, 0.5]])
    assert measured.mean_kl_divergence == pytest.approx(math.log(2))  # KL([1,0] || [.5,.5]) = ln 2
    kl_p_m = math.log(1 / 0.75)
    kl_q_m = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert measured.mean_js_divergence == pytest.approx(0.5 * kl_p_m + 0.5 * kl_q_m)
    assert measured.max_abs_probability_diff == pytest.approx(0.5)
    assert measured.top1_agreement == 1.0  # the [.5,.5] tie goes to the lower index, class 0


def test_top1_agreement_counts_disagreeing_samples() -> None:
    p = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]
    q = [[0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.4, 0.6]]
    measured = _agree(p, q)
    assert measured.top1_agreement == 0.75
    assert measured.max_abs_probability_diff == pytest.approx(0.5)
    assert 0 < measured.mean_js_divergence <= math.log(2)


def test_js_is_symmetric_and_bounded() -> None:
    p, q = [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]
    forward, backward = _agree(p, q), _agree(q, p)
    assert forward.mean_js_divergence == pytest.approx(backward.mean_js_divergence)
    assert forward.mean_js_divergence == pytest.approx(math.log(2))  # disjoint supports: the bound
    assert forward.top1_agreement == 0.0


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(EvaluationError, match=r"other produced outputs of shape \[2, 3\] but ref produced \[2, 2\]"):
        _agree([[1, 0], [0, 1]], [[1, 0, 0], [0, 1, 0]])


def test_outputs_files_compare_only_samples_both_answered(tmp_path: Path) -> None:
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    q = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    reference = write_outputs(tmp_path / "a", p, np.array([True, True, True]))
    other = write_outputs(tmp_path / "b", q, np.array([True, False, True]))  # sample 1 was never answered by b
    assert other.samples == 2 and other.classes == 2
    measured = compare_outputs(reference, other, reference_name="a", framework_name="b")
    assert measured.samples == 2
    assert measured.top1_agreement == 1.0 and measured.max_abs_probability_diff == 0.0


def test_tampered_outputs_file_is_rejected(tmp_path: Path) -> None:
    written = write_outputs(tmp_path, np.eye(3, dtype=np.float32), np.ones(3, dtype=bool))
    probabilities, answered = read_outputs(written, what="run a")
    assert probabilities.shape == (3, 3) and answered.all()
    np.savez(tmp_path / "outputs.npz", probabilities=np.zeros((3, 3), np.float32), answered=np.ones(3, bool))
    with pytest.raises(EvaluationError, match="changed since the run wrote them"):
        read_outputs(written, what="run a")
    (tmp_path / "outputs.npz").unlink()
    with pytest.raises(EvaluationError, match="cannot be read"):
        read_outputs(written, what="run a")


def _points(throughputs: dict[int, float]) -> list[BatchPoint]:
    return [
        BatchPoint(batch_size=b, samples_per_s=t, p50_ns=1.0, p99_ns=2.0, valid=True, run_id=f"r{b}")
        for b, t in sorted(throughputs.items())
    ]


@pytest.mark.parametrize(
    ("throughputs", "optimal", "saturated"),
    [
        ({1: 100, 2: 190, 4: 200, 8: 205}, 4, True),  # 4 -> 8 gains 2.5%; 2 -> 4 still gains 5.3%
        ({1: 100, 2: 104, 4: 300}, 1, True),  # the first step under 5% decides, whatever follows
        ({1: 100, 2: 150, 4: 80}, 2, True),  # throughput falls past the optimum
        ({1: 100, 2: 200, 4: 400}, 4, False),  # still growing: the largest measured, not saturated
        ({8: 500}, 8, False),
    ],
)
def test_optimal_batch_size(throughputs: dict[int, float], optimal: int, saturated: bool) -> None:
    assert optimal_batch_size(_points(throughputs)) == (optimal, saturated)


def test_optimal_batch_size_needs_points() -> None:
    with pytest.raises(EvaluationError, match="at least one"):
        optimal_batch_size([])


@pytest.mark.slow
def test_batch_sweeps_group_real_runs_per_framework(tmp_path: Path) -> None:
    registry = load_registry([ASSETS])
    store = ArtifactStore(tmp_path / "cache")

    def run(framework: str, batch_size: int) -> RunResult:
        settings = EvaluationSettings(
            mode="performance", batch_size=batch_size, min_duration_s=0.2, min_query_count=50, warmup_queries=2
        )
        request = RunRequest(
            model="digits-cnn",
            framework=framework,
            dataset=None,
            settings=settings,
            output_dir=tmp_path / f"{framework}-{batch_size}",
        )
        return execute_run(registry, store, request)

    results = [run("null", 1), run("null", 4), run("onnxruntime", 1)]
    (sweep,) = batch_sweeps(results)  # onnxruntime ran at one batch size: no sweep for it
    assert (sweep.framework, sweep.model, sweep.scenario) == ("null", "digits-cnn", "single-stream")
    assert [(p.batch_size, p.run_id) for p in sweep.points] == [(1, results[0].id), (4, results[1].id)]
    for point, result in zip(sweep.points, results, strict=False):
        assert result.performance is not None
        assert point.samples_per_s == result.performance.throughput.samples_per_s
    expected, _ = optimal_batch_size(sweep.points)
    assert sweep.optimal_batch_size == expected
