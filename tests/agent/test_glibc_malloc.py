"""The PyTorch predictor keeps freed buffers in the process: a thread that allocates, writes and frees a large
buffer again and again (as each predictor call does with its activations) faults its pages in once, not per call.

Each case runs in a fresh interpreter: ``mallopt`` is process-wide and would change every later test's allocator.
Minor page faults are counted by the kernel for the thread (``RUSAGE_THREAD``): no timing is involved.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from tests.support.paths import ASSETS, REPO

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's (Linux) only"
)

BUFFER_BYTES = 48 << 20  # one ResNet-18 batch-16 activation is ~51 MB
PAGE_BYTES = 4096

PROBE = textwrap.dedent(
    """
    import ctypes, json, resource, sys, threading
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    SETUP
    def cycle():
        pointer = libc.malloc(BUFFER_BYTES)
        ctypes.memset(pointer, 1, BUFFER_BYTES)
        libc.free(pointer)
    faults = {}
    def calls():
        cycle(); cycle()  # the first calls fault the heap in
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(5):
            cycle()
        faults["per_call"] = (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 5
    thread = threading.Thread(target=calls)
    thread.start()
    thread.join()
    print(json.dumps(faults))
    """
).replace("BUFFER_BYTES", str(BUFFER_BYTES))

LOAD_PYTORCH = f"""
from pathlib import Path
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.predictor import PredictorOptions, load_predictor_class
model = load_registry([Path({str(ASSETS)!r})]).model("digits-cnn")
predictor = load_predictor_class("pytorch")(model.spec, PredictorOptions())
predictor.load(Path({str(ASSETS / "artifacts" / "digits" / "digits_cnn.torchscript.pt")!r}))
"""


def _faults_per_call(setup: str) -> float:
    code = PROBE.replace("SETUP", setup.strip() or "pass")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    per_call: float = json.loads(done.stdout.strip().splitlines()[-1])["per_call"]
    return per_call


@pytest.fixture(scope="module")
def default_faults() -> float:
    faults = _faults_per_call("")
    if faults < BUFFER_BYTES / PAGE_BYTES / 2:
        pytest.skip(f"this kernel faults {faults:.0f} pages per call by default (huge pages?): nothing to retain")
    return faults


def test_retaining_freed_memory_stops_the_per_call_page_faults(default_faults: float) -> None:
    setup = "from mlmodelscope.agent.predictors.glibc_malloc import retain_freed_memory\nassert retain_freed_memory()"
    assert _faults_per_call(setup) < default_faults / 100


def test_loading_the_pytorch_predictor_retains_freed_memory(default_faults: float) -> None:
    pytest.importorskip("torch")
    assert _faults_per_call(LOAD_PYTORCH) < default_faults / 100
