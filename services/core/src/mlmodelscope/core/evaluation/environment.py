"""The machine and software an evaluation ran on, recorded in every result.

A latency means little without the CPU model, the architecture, the framework build and the exact manifest and
artifact bytes behind it; this module captures them once per evaluation (never on the hot path). GPUs are read
through NVML (``nvidia-ml-py``) when present; otherwise the record says why they are "not available".
"""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

_ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le"}
RECORDED_PACKAGES = (
    "mlmodelscope-core",
    "mlmodelscope-agent",
    "mlcommons-loadgen",
    "numpy",
    "pillow",
    "pydantic",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "torch",
    "tensorflow",
    "tensorflow-cpu",
    "mxnet",
)


class GpuDevice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    name: str
    memory_total_bytes: int


class GpuInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    available: bool
    reason: str = ""
    driver_version: str = ""
    devices: list[GpuDevice] = Field(default_factory=list)


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: str
    os: str
    kernel: str
    python: str
    arch: str
    cpu_model: str
    cpu_count_logical: int
    cpu_count_physical: int
    memory_total_bytes: int
    gpu: GpuInfo
    packages: dict[str, str]
    framework: dict[str, str] = Field(default_factory=dict, description="name and installed version")
    manifest_sha256: dict[str, str] = Field(default_factory=dict)
    artifact_sha256: dict[str, str] = Field(default_factory=dict)
    intra_op_threads: int | None = Field(default=None, description="The intra-op threads the predictor was given.")
    intra_op_threads_source: str = Field(
        default="",
        description="Where that count came from: 'run spec', or the container's CPU limit (cgroup v2 cpu.max, "
        "cgroup v1 cpu.cfs_quota_us), else the scheduler's CPUs (sched_getaffinity, os.cpu_count).",
    )


def architecture() -> str:
    machine = platform.machine().lower()
    return _ARCH_NAMES.get(machine, machine)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "cpu", "Model") and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return f"{platform.system()} {platform.release()}"


def gpu_info() -> GpuInfo:
    try:
        import pynvml
    except ImportError:
        return GpuInfo(available=False, reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return GpuInfo(available=False, reason=f"NVML: {e}")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(
                GpuDevice(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total_bytes=int(memory.total),
                )
            )
        return GpuInfo(
            available=bool(devices),
            reason="" if devices else "NVML found no GPU",
            driver_version=driver.decode() if isinstance(driver, bytes) else str(driver),
            devices=devices,
        )
    except pynvml.NVMLError as e:
        return GpuInfo(available=False, reason=f"NVML: {e}")
    finally:
        pynvml.nvmlShutdown()


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def capture_environment(
    *,
    framework: dict[str, str],
    manifest_sha256: dict[str, str],
    artifact_sha256: dict[str, str],
    intra_op_threads: int | None = None,
    intra_op_threads_source: str = "",
) -> Environment:
    import psutil  # here, not at the top: the result document (and the bus messages that carry it) need pydantic only

    uname = platform.uname()
    return Environment(
        hostname=uname.node,
        os=_os_name(),
        kernel=uname.release,
        python=sys.version.split()[0],
        arch=architecture(),
        cpu_model=cpu_model(),
        cpu_count_logical=os.cpu_count() or 0,
        cpu_count_physical=psutil.cpu_count(logical=False) or 0,
        memory_total_bytes=int(psutil.virtual_memory().total),
        gpu=gpu_info(),
        packages=package_versions(),
        framework=framework,
        manifest_sha256=manifest_sha256,
        artifact_sha256=artifact_sha256,
        intra_op_threads=intra_op_threads,
        intra_op_threads_source=intra_op_threads_source,
    )
