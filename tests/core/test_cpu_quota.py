"""Intra-op threads from the container's CPU limit: cgroup v2 cpu.max, cgroup v1 CFS quota, else the CPUs.

Every case writes fake cgroup files in a temporary folder and gives a fixed fallback, so nothing here depends on
this machine's cgroups or core count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlmodelscope.core.evaluation.cpu_quota import CpuBudget, available_cpus, container_cpus
from mlmodelscope.core.evaluation.runner import intra_op_threads


def _eight() -> CpuBudget:
    return CpuBudget(8, "sched_getaffinity")


def _v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text + "\n", encoding="ascii")
    return root


def _v1(root: Path, quota_us: str, period_us: str, folder: str = "cpu,cpuacct") -> Path:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "cpu.cfs_quota_us").write_text(quota_us + "\n", encoding="ascii")
    (root / folder / "cpu.cfs_period_us").write_text(period_us + "\n", encoding="ascii")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("1 100000", 1), ("400000 50000", 8)],
)
def test_cgroup_v2_quota_is_rounded_up_and_at_least_one(tmp_path: Path, cpu_max: str, cpus: int) -> None:
    budget = container_cpus(_v2(tmp_path, cpu_max), fallback=_eight)
    assert budget == CpuBudget(cpus, f"cgroup v2 cpu.max ({cpu_max})")


def test_no_limit_means_the_cpus_the_scheduler_allows(tmp_path: Path) -> None:
    assert container_cpus(_v2(tmp_path, "max 100000"), fallback=_eight) == _eight()
    assert container_cpus(tmp_path / "no-cgroup-files", fallback=_eight) == _eight()


def test_a_limit_above_the_affinity_mask_is_capped_by_it(tmp_path: Path) -> None:
    budget = container_cpus(_v2(tmp_path, "1600000 100000"), fallback=_eight)
    assert budget.cpus == 8
    assert budget.source == "sched_getaffinity (below the cgroup v2 cpu.max (1600000 100000) limit of 16)"


@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_cfs_quota(tmp_path: Path, folder: str) -> None:
    budget = container_cpus(_v1(tmp_path, "300000", "100000", folder), fallback=_eight)
    assert budget == CpuBudget(3, "cgroup v1 cpu.cfs_quota_us (300000 / 100000)")


def test_cgroup_v1_without_quota_is_no_limit(tmp_path: Path) -> None:
    assert container_cpus(_v1(tmp_path, "-1", "100000"), fallback=_eight) == _eight()


def test_v2_wins_over_v1_and_unreadable_files_are_ignored(tmp_path: Path) -> None:
    root = _v1(_v2(tmp_path, "100000 100000"), "400000", "100000")
    assert container_cpus(root, fallback=_eight).cpus == 1
    garbage = _v2(tmp_path / "garbage", "lots of cpus")
    assert container_cpus(garbage, fallback=_eight) == _eight()
    zero_period = _v2(tmp_path / "zero", "100000 0")
    assert container_cpus(zero_period, fallback=_eight) == _eight()


def test_requested_threads_win_and_say_so() -> None:
    assert intra_op_threads(3) == CpuBudget(3, "run spec")


def test_the_fallback_counts_this_process_cpus() -> None:
    budget = available_cpus()
    assert budget.cpus >= 1 and budget.source in {"sched_getaffinity", "os.cpu_count"}
