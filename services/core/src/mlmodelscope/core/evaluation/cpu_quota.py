"""How many CPUs this process may use: the container's CPU limit, not the node's core count.

In a pod limited to 2 CPUs, ``os.cpu_count()`` still reports every core of the node; a framework that starts one
intra-op thread per core then oversubscribes its quota and the kernel throttles it, which makes latencies depend on
the node rather than on the model. The limit is the cgroup's CPU quota: cgroup v2 ``cpu.max`` ("max 100000" is no
limit, "200000 100000" two CPUs), cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1 is no limit), rounded
up, at least 1, and never more than the CPUs the scheduler lets this process run on (``sched_getaffinity``, else
``os.cpu_count()``). The cgroup folder is a parameter so tests give fake files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V1_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs available and which source said so (recorded in the result's environment)."""

    cpus: int
    source: str


def available_cpus() -> CpuBudget:
    """The CPUs the scheduler lets this process use: its affinity mask, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return CpuBudget(max(1, len(os.sched_getaffinity(0))), "sched_getaffinity")
    return CpuBudget(max(1, os.cpu_count() or 1), "os.cpu_count")


def container_cpus(cgroup_root: Path = CGROUP_ROOT, *, fallback: Callable[[], CpuBudget] = available_cpus) -> CpuBudget:
    """The container's CPU limit (cgroup v2, then v1), capped by ``fallback``; ``fallback`` itself when unlimited."""
    available = fallback()
    quota = _cgroup_v2(cgroup_root) or _cgroup_v1(cgroup_root)
    if quota is None:
        return available
    cpus, source = quota
    if cpus > available.cpus:
        return CpuBudget(available.cpus, f"{available.source} (below the {source} limit of {cpus})")
    return CpuBudget(cpus, source)


def _cpus(quota_us: int, period_us: int) -> int:
    return max(1, math.ceil(quota_us / period_us))


def _cgroup_v2(root: Path) -> tuple[int, str] | None:
    text = _read(root / "cpu.max")
    if text is None:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max" or not all(f.isdigit() for f in fields) or int(fields[1]) == 0:
        return None
    return _cpus(int(fields[0]), int(fields[1])), f"cgroup v2 cpu.max ({fields[0]} {fields[1]})"


def _cgroup_v1(root: Path) -> tuple[int, str] | None:
    for folder in (root / name for name in _V1_FOLDERS):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            quota_us, period_us = int(quota), int(period)
        except ValueError:
            continue
        if quota_us <= 0 or period_us <= 0:  # -1: no limit
            return None
        return _cpus(quota_us, period_us), f"cgroup v1 cpu.cfs_quota_us ({quota_us} / {period_us})"
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


__all__ = ["CGROUP_ROOT", "CpuBudget", "available_cpus", "container_cpus"]
