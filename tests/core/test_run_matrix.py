"""The runs of one evaluation (core.run_contract.run_matrix), the one construction local mode and the collector's
launcher share: one RunSpec per batch size and framework, in order, each with its own id, settings and folder."""

from __future__ import annotations

from pathlib import Path

from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Registry
from mlmodelscope.core.run_contract import ResolvedResources, RunSpec, run_matrix
from mlmodelscope.core.tracing.spans import TraceLevel


def test_a_sweep_names_each_run_by_framework_and_batch_size(registry: Registry, tmp_path: Path) -> None:
    folders: list[tuple[str, str, int | None]] = []

    def output_dir(run_id: str, framework: str, batch_size: int | None) -> Path:
        folders.append((run_id, framework, batch_size))
        return tmp_path / "out" / run_id

    specs = run_matrix(
        registry,
        "eval-1",
        "digits-cnn",
        ["onnxruntime", "pytorch"],
        [1, 4],
        dataset=None,
        settings=EvaluationSettings(scenario="offline", mode="performance"),
        cache_dir=tmp_path / "cache",
        output_dir=output_dir,
        device="cpu",
        intra_op_threads=2,
        trace_level=TraceLevel.FRAMEWORK,
        nats_url="nats://127.0.0.1:4222",
    )
    expected_ids = ["eval-1-onnxruntime-b1", "eval-1-pytorch-b1", "eval-1-onnxruntime-b4", "eval-1-pytorch-b4"]
    assert [spec.run_id for spec in specs] == expected_ids
    assert [(spec.framework, spec.settings.batch_size) for spec in specs] == [
        ("onnxruntime", 1),
        ("pytorch", 1),
        ("onnxruntime", 4),
        ("pytorch", 4),
    ]
    assert folders == [(spec.run_id, spec.framework, spec.settings.batch_size) for spec in specs]
    resolved = ResolvedResources.from_registry(registry, "digits-cnn", "pytorch")
    last = specs[-1]
    assert last.resources == resolved and last.dataset == resolved.dataset_name
    assert last.output_dir == tmp_path / "out" / last.run_id and last.cache_dir == tmp_path / "cache"
    assert {(s.evaluation_id, s.intra_op_threads, s.trace_level, s.nats_url, s.settings.scenario) for s in specs} == {
        ("eval-1", 2, TraceLevel.FRAMEWORK, "nats://127.0.0.1:4222", "offline")
    }
    assert RunSpec.model_validate_json(last.model_dump_json()) == last


def test_one_batch_size_puts_none_in_the_ids_and_folders(registry: Registry, tmp_path: Path) -> None:
    specs = run_matrix(
        registry,
        "eval-2",
        "digits-cnn",
        ["onnxruntime"],
        [8],
        dataset=None,
        settings=EvaluationSettings(),
        cache_dir=tmp_path / "cache",
        output_dir=lambda run_id, framework, batch_size: tmp_path / f"{framework}-{batch_size}",
    )
    assert [spec.run_id for spec in specs] == ["eval-2-onnxruntime"]
    assert specs[0].output_dir == tmp_path / "onnxruntime-None"
    assert specs[0].settings.batch_size == 8 and specs[0].nats_url == "" and specs[0].device == "cpu"
