"""Hardware sampling: CPU, memory and GPU utilisation as HARDWARE-level spans beside the model spans.

Counters are sampled, not traced: a daemon thread wakes every ``interval_s`` and records one span covering the
interval just ended, with the utilisation over (CPU) or at the end of (memory, GPU) that interval as
attributes. On a timeline the samples sit under the queries they overlapped, which is what the HARDWARE level
is for; they are not children of any span (``parent_id`` 0).

GPUs are read through NVML (``nvidia-ml-py``). Where NVML cannot start (no driver, no GPU, a container without
the library) the first sample carries ``gpu = "not available: <NVML's reason>"`` instead, so a trace says why
it has no GPU figures rather than silently lacking them.

Cost: one psutil call pair (and one NVML call triple per GPU) per interval, on its own thread; nothing on the
SUT's path. The loop waits on a ``threading.Event``, so ``stop`` returns within one NVML/psutil call.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil

from mlmodelscope.core.tracing.spans import AttributeValue, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

SAMPLE_SPAN_NAME = "hardware_sample"
_STOP_TIMEOUT_S = 5.0


class _Gpus:
    """NVML handles for every visible GPU, or the reason there are none."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.unavailable_reason = ""
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as e:  # NVMLError_* (library/driver missing) or ImportError: report, never fail a run
            self.unavailable_reason = str(e) or type(e).__name__
            return
        self._nvml = pynvml
        try:
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as e:
            self.unavailable_reason = str(e)
        if not self.handles and not self.unavailable_reason:
            self.unavailable_reason = "NVML found no GPU"

    def read(self, into: dict[str, AttributeValue]) -> None:
        nvml = self._nvml
        for index, handle in enumerate(self.handles):
            prefix = f"gpu{index}_"
            try:
                into[prefix + "utilization_percent"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                into[prefix + "memory_used_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
                into[prefix + "power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # NVML reports mW
            except nvml.NVMLError as e:  # e.g. power not supported on this board: keep what was read
                into[prefix + "error"] = str(e)

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self._nvml = None


class HardwareSampler:
    """Samples CPU, memory and GPUs every ``interval_s`` into ``tracer`` at HARDWARE level, between start and stop.

    A no-op (no thread, no NVML) unless ``tracer.enabled(TraceLevel.HARDWARE)``. Usable as a context manager.
    """

    def __init__(self, tracer: Tracer, interval_s: float = 0.1) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.tracer = tracer
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None or not self.tracer.enabled(TraceLevel.HARDWARE):
            return
        self._stop.clear()
        psutil.cpu_percent(interval=None)  # primes the counter: the next call reports usage since now
        self._thread = threading.Thread(target=self._loop, name="mlmodelscope-hardware-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends sampling after recording the last (partial) interval; returns once the thread has finished."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=_STOP_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> HardwareSampler:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        gpus = _Gpus()
        record, clock = self.tracer.record, time.perf_counter_ns
        try:
            first = True
            start_ns = clock()
            while True:
                stopping = self._stop.wait(self.interval_s)
                attributes: dict[str, AttributeValue] = {
                    "cpu_percent": psutil.cpu_percent(interval=None),
                }
                memory = psutil.virtual_memory()
                attributes["memory_used_bytes"] = int(memory.used)
                attributes["memory_percent"] = float(memory.percent)
                gpus.read(attributes)
                if first and gpus.unavailable_reason:
                    attributes["gpu"] = f"not available: {gpus.unavailable_reason}"
                first = False
                end_ns = clock()
                record(SAMPLE_SPAN_NAME, TraceLevel.HARDWARE, start_ns, end_ns, attributes=attributes)
                start_ns = end_ns
                if stopping:
                    return
        finally:
            gpus.close()
