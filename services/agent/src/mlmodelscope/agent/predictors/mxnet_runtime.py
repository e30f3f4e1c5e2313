"""What the MXNet predictor needs around the model: its checkpoint files, its import-time thread settings.

MXNet has no run-time thread knob that reaches its operators (``MXSetNumOMPThreads`` only changes the calling
thread). At import, its ``engine::OpenMP`` takes ``MXNET_OMP_MAX_THREADS``, else ``OMP_NUM_THREADS``, else half the
logical CPUs on x86, and the OpenMP runtime sizing oneDNN's pool reads ``OMP_NUM_THREADS`` when ``libmxnet.so``
loads; ``MXNET_CPU_WORKER_NTHREADS`` sizes the engine's CPU workers (default 1). So they are set before
``import mxnet``, and MXNet's version is read from package metadata so that asking for it does not import MXNet.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from mlmodelscope.core.errors import ModelLoadError

log = logging.getLogger(__name__)

SYMBOL_SUFFIX = "-symbol.json"
_PARAMS_NAME = re.compile(r".+-\d{4}\.params$")


def installed_version() -> str | None:
    """MXNet's version from package metadata (``mxnet``, ``mxnet-cu112``, ...), without importing it."""
    for distribution in metadata.packages_distributions().get("mxnet", []):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def set_threads_before_import(intra_op_threads: int | None, inter_op_threads: int | None) -> bool:
    """Put the thread counts where MXNet reads them at import; False (and a warning) once it is imported."""
    wanted = {
        "OMP_NUM_THREADS": intra_op_threads,
        "MXNET_OMP_MAX_THREADS": intra_op_threads,
        "MXNET_CPU_WORKER_NTHREADS": inter_op_threads,
    }
    settings = {name: str(value) for name, value in wanted.items() if value is not None}
    if not settings:
        return True
    if "mxnet" in sys.modules:
        if any(os.environ.get(name) != value for name, value in settings.items()):
            log.warning(
                "MXNet is already imported in this process, so its thread counts stay as they were (asked for %s); "
                "set them before MXNet is imported.",
                settings,
            )
        return False
    os.environ.update(settings)
    return True


def find_checkpoint(folder: Path) -> tuple[Path, Path]:
    """The one ``*-symbol.json`` and the one ``*-NNNN.params`` under ``folder``; ModelLoadError otherwise."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"MXNet could not load {folder}: the mxnet format is a folder with a *-symbol.json and a *-NNNN.params "
            "file, and this is not a folder.",
            hint="Declare the artifact with `archive: true` (a .tar/.zip of the two files exported by "
            "HybridBlock.export), and check its sha256.",
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    symbols = [p for p in files if p.name.endswith(SYMBOL_SUFFIX)]
    params = [p for p in files if _PARAMS_NAME.fullmatch(p.name)]
    if len(symbols) != 1 or len(params) != 1:
        found = ", ".join(str(p.relative_to(folder)) for p in files) or "nothing"
        raise ModelLoadError(
            f"MXNet could not load {folder}: it needs exactly one *-symbol.json and one *-NNNN.params, "
            f"found {len(symbols)} and {len(params)} (files: {found}).",
            hint="Export the model with HybridBlock.export(prefix, epoch) and archive exactly those two files.",
        )
    return symbols[0], params[0]


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Environment variables set for the duration (MXNet reads some of them when an executor is bound)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
