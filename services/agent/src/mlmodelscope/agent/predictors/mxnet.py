"""MXNet predictor: a symbol + params checkpoint run by MXNet 1.x's graph executor on the CPU or a CUDA GPU.

The artifact is a folder (the runner unpacks an ``archive: true`` artifact into one) holding exactly one
``<prefix>-symbol.json`` and one ``<prefix>-NNNN.params``, as ``HybridBlock.export`` writes them. The graph's data
inputs are its arguments that the params file does not hold; they are matched to the manifest's inputs by name
(or, for one input each, positionally: gluon exports name theirs ``data``), its outputs to the manifest's outputs
by position.

Why the executor: ``Symbol.bind`` once per input shape (executors for later shapes share the first one's memory
pool and every one shares the same weight arrays), with the input and output NDArrays bound once, is the lowest
latency path measured with MXNet 1.9.1 for the digits CNN on a shared 2-core CPU: ~0.1-0.3 ms per batch-1 call
against ~1.3 ms for ``SymbolBlock.imports`` + ``hybridize(static_alloc=True, static_shape=True)``, whose per-call
Python is heavier. On the CPU, MXNet's MKL-DNN (oneDNN) subgraph backend fuses operators (Convolution+ReLU) when
binding. A shape seen for the first time is bound inside that call (milliseconds); ``load`` binds batch 1, and the
driver's warm-up binds the run's batch size. The engine stays MXNet's default threaded engine: ``NaiveEngine`` was
~20-40 µs faster at batch 1, but it is a process-wide debugging engine that runs every operator synchronously (on a
GPU too) and records every operator twice in the profile.

Threads: MXNet has no run-time knob that reaches its operators (``MXSetNumOMPThreads`` only changes the calling
thread, not the engine's workers). At import, MXNet's ``engine::OpenMP`` takes ``MXNET_OMP_MAX_THREADS``, else
``OMP_NUM_THREADS``, else half the logical CPUs on x86 (it assumes hyper-threading), and the OpenMP runtime that
sizes oneDNN's pool reads ``OMP_NUM_THREADS`` when ``libmxnet.so`` loads. So both must be set before
``import mxnet``: ``load`` sets both from ``options.intra_op_threads`` when MXNet is not imported yet (an agent
process: ``library_version`` reads package metadata and does not import it), and logs a warning otherwise.
Measured: 3 threads give the process two more OpenMP threads than 1. ``inter_op_threads`` maps to
``MXNET_CPU_WORKER_NTHREADS`` (the engine's CPU workers, default 1), under the same before-import rule.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.profilers.mxnet import MXNetProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, FrameworkUnavailableError, ModelLoadError, PredictorError
from mlmodelscope.core.predictor import Predictor
from mlmodelscope.core.tracing.framework import FrameworkProfiler

log = logging.getLogger(__name__)

SYMBOL_SUFFIX = "-symbol.json"
_PARAMS_NAME = re.compile(r".+-\d{4}\.params$")
_WARM_CALLS = 2
_MAX_BOUND_SHAPES = 8
_INSTALL_HINT = (
    "`pip install 'mlmodelscope-agent[mxnet]'` into the MXNet environment (`make setup` builds .venv-mxnet)."
)

Predict = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]


def _import_mxnet() -> Any:
    try:
        with warnings.catch_warnings():
            # MXNet 1.9 reads numpy aliases deprecated since numpy 1.20 (np.bool, ...) while it imports: noise, not
            # ours to fix, and an error wherever warnings are (as under this repository's pytest settings).
            warnings.simplefilter("ignore", DeprecationWarning)
            import mxnet
    except ImportError as e:
        raise FrameworkUnavailableError(f"MXNet is not installed in this runtime ({e}).", hint=_INSTALL_HINT) from e
    return mxnet


def _installed_version() -> str | None:
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
def _environment(**values: str) -> Iterator[None]:
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


class MXNetPredictor(Predictor):
    name = "mxnet"

    _symbol: Any = None
    _profiler: MXNetProfiler | None = None

    @classmethod
    def library_version(cls) -> str:
        # Read from metadata so that asking does not import MXNet: thread counts only apply before the import.
        version = _installed_version()
        if version is None:
            if "mxnet" in sys.modules or find_spec("mxnet") is not None:
                return str(_import_mxnet().__version__)
            raise FrameworkUnavailableError("MXNet is not installed in this runtime.", hint=_INSTALL_HINT)
        return version

    def load(self, artifact_path: Path) -> None:
        symbol_path, params_path = find_checkpoint(artifact_path)
        set_threads_before_import(self.options.intra_op_threads, self.options.inter_op_threads)
        mx = _import_mxnet()
        context = self._context(mx)
        try:
            symbol = mx.sym.load(str(symbol_path))
            saved = mx.nd.load(str(params_path))
        except Exception as e:  # MXNetError (a dmlc check) for damaged JSON or params
            raise ModelLoadError(
                f"MXNet could not load {artifact_path}: {e}",
                hint="Check that the files were written by HybridBlock.export and the artifact's sha256.",
            ) from e
        if not isinstance(saved, dict):
            raise ModelLoadError(
                f"MXNet could not load {params_path}: it holds unnamed arrays, not a checkpoint's arg:/aux: params.",
                hint="Export the model with HybridBlock.export (or mx.model.save_checkpoint).",
            )
        args = {k[4:]: v.as_in_context(context) for k, v in saved.items() if k.startswith("arg:")}
        aux = {k[4:]: v.as_in_context(context) for k, v in saved.items() if k.startswith("aux:")}
        data_names = self._data_names(symbol, args, aux, artifact_path)
        outputs = symbol.list_outputs()
        if len(outputs) != len(self.model.outputs):
            raise ModelLoadError(
                f"the MXNet graph in {symbol_path} has outputs {outputs}, but the manifest declares "
                f"{[o.name for o in self.model.outputs]}.",
                hint="Fix spec.outputs in the Model manifest (MXNet outputs are matched by position).",
            )
        self._symbol = symbol
        self._profiler = None
        bind_env: dict[str, str] = {}
        if self.options.profile_dir is not None:
            self._profiler = MXNetProfiler(self.options.profile_dir)
            self._profiler.attach(mx.profiler)
            bind_env["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"  # one profile event per operator, not per bulk
        dtypes = [np.dtype(spec.dtype) for spec in self.model.inputs]
        predict = self._make_predict(mx, symbol, context, args, aux, data_names, dtypes, bind_env, artifact_path)
        if self._profiler is not None:
            predict = self._profiler.wrap(predict)
        self.predict = predict  # type: ignore[method-assign, assignment]
        # The first call on a shape creates MKL-DNN primitives and the executor's memory: keep it out of timing.
        warm = [np.zeros((1, *(max(d, 1) for d in spec.shape)), dtype=spec.dtype) for spec in self.model.inputs]
        for _ in range(_WARM_CALLS):
            predict(warm)

    def _context(self, mx: Any) -> Any:
        device, index = self.options.device, self.options.device_index
        if device == "cpu":
            return mx.cpu()
        if device == "gpu":
            count = int(mx.context.num_gpus())
            if index >= count:
                raise DeviceUnavailableError(
                    f"device 'gpu' (index {index}) needs a CUDA build of MXNet and a GPU, but this MXNet "
                    f"({mx.__version__}) sees {count} GPU(s).",
                    hint="Install a CUDA build (e.g. `pip install mxnet-cu112==1.9.1`) in the MXNet environment on a "
                    "GPU node, or use --device cpu.",
                )
            return mx.gpu(index)
        raise DeviceUnavailableError(f"MXNet has no backend for device '{device}'.", hint="Use --device cpu or gpu.")

    def _data_names(self, symbol: Any, args: dict[str, Any], aux: dict[str, Any], artifact_path: Path) -> list[str]:
        missing_aux = [n for n in symbol.list_auxiliary_states() if n not in aux]
        graph_inputs = [n for n in symbol.list_arguments() if n not in args]
        declared = [spec.name for spec in self.model.inputs]
        if missing_aux:
            raise ModelLoadError(
                f"MXNet could not load {artifact_path}: the params lack the auxiliary states {missing_aux}.",
                hint="Export symbol and params together (HybridBlock.export) and archive both.",
            )
        if sorted(graph_inputs) == sorted(declared):
            return declared
        if len(graph_inputs) == 1 and len(declared) == 1:
            return graph_inputs  # gluon's export names its one input 'data'
        raise ModelLoadError(
            f"the MXNet graph in {artifact_path} has data inputs {graph_inputs} (arguments without params), but the "
            f"manifest declares {declared}.",
            hint="Fix spec.inputs[].name in the Model manifest, or check that the params file holds every weight.",
        )

    def _make_predict(
        self,
        mx: Any,
        symbol: Any,
        context: Any,
        args: dict[str, Any],
        aux: dict[str, Any],
        data_names: list[str],
        dtypes: list[np.dtype[Any]],
        bind_env: dict[str, str],
        artifact_path: Path,
    ) -> Predict:
        """The hot path: one bound executor per input shape, made on first sight of the shape."""
        empty = mx.nd.empty
        bound: dict[Any, tuple[list[Any], Callable[[], list[Any]]]] = {}
        first: list[Any] = []

        def bind(shapes: Sequence[tuple[int, ...]]) -> tuple[list[Any], Callable[[], list[Any]]]:
            arrays = [empty(s, ctx=context, dtype=d) for s, d in zip(shapes, dtypes, strict=True)]
            try:
                with warnings.catch_warnings(), _environment(**bind_env):
                    warnings.simplefilter("ignore")  # MXNet warns about shapes it cannot infer before binding
                    executor = symbol.bind(
                        context,
                        args={**args, **dict(zip(data_names, arrays, strict=True))},
                        aux_states=aux,
                        grad_req="null",
                        shared_exec=first[0] if first else None,
                    )
            except Exception as e:  # MXNetError: shapes or dtypes the graph does not accept
                raise PredictorError(
                    f"MXNet could not bind the graph of {artifact_path} to inputs {list(shapes)} "
                    f"({[str(d) for d in dtypes]}): {e}",
                    hint="Check spec.inputs[].shape and dtype in the Model manifest against the exported model.",
                ) from e
            if not first:
                first.append(executor)
            if len(bound) >= _MAX_BOUND_SHAPES:
                del bound[next(iter(bound))]
            return arrays, executor.forward  # is_train=False by default: inference

        if len(data_names) == 1:

            def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
                x = inputs[0]
                entry = bound.get(x.shape)
                if entry is None:
                    entry = bound[x.shape] = bind([x.shape])
                arrays, forward = entry
                arrays[0]._sync_copyfrom(x)
                return [out.asnumpy() for out in forward()]

        else:

            def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
                key = tuple(x.shape for x in inputs)
                entry = bound.get(key)
                if entry is None:
                    entry = bound[key] = bind(key)
                arrays, forward = entry
                for array, x in zip(arrays, inputs, strict=True):
                    array._sync_copyfrom(x)
                return [out.asnumpy() for out in forward()]

        return predict

    def framework_profiler(self) -> FrameworkProfiler | None:
        return self._profiler

    def predict(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        raise RuntimeError("MXNetPredictor.predict called before load()")

    def close(self) -> None:
        self._symbol = None
        if "predict" in self.__dict__:
            del self.__dict__["predict"]
