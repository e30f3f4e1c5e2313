"""Keep the large buffers a framework frees in the process, instead of glibc handing them back to the OS each call.

PyTorch's CPU tensors come from ``malloc``. With glibc's defaults a buffer above the mmap threshold is a fresh
``mmap`` per allocation, and in a thread other than the main one (the SUT's) even a smaller one lives in an arena
heap that ``free`` trims: every predictor call then re-faults its activation buffers page by page. Measured on
ResNet-18, batch 16, one thread: ~26-57k minor page faults per call and ~16-25% of its CPU time
(docs/benchmarks.md, "PyTorch and glibc's malloc"); retained, none.

``retain_freed_memory`` sets, through ``mallopt``: one arena (every thread allocates from the main heap, which
grows with ``brk`` and is not trimmed per thread), an mmap threshold and a trim threshold of ``RETAINED_BYTES``.
The process keeps at most its peak heap (which each call reaches anyway) rather than returning it between calls.
It is process-wide, like ``torch.set_num_threads``: the agent process runs one model of one framework, so the
predictor that needs it sets it at load. Elsewhere than glibc (musl, macOS) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
RETAINED_BYTES = 1 << 30


def retain_freed_memory() -> bool:
    """Tune glibc's malloc as the module docstring says; True when every setting was accepted."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.info("malloc left as it is: not glibc (%s %s)", platform.system(), platform.libc_ver()[0] or "libc")
        return False
    # The process's own symbols: glibc is already loaded (find_library would spawn ldconfig or gcc to look).
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        log.warning("malloc left as it is: this process's C library has no mallopt")
        return False
    settings = ((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, RETAINED_BYTES), (M_TRIM_THRESHOLD, RETAINED_BYTES))
    accepted = all(mallopt(parameter, value) == 1 for parameter, value in settings)
    if not accepted:
        log.warning("glibc refused a mallopt setting: freed buffers may still go back to the OS after each call")
    return accepted
