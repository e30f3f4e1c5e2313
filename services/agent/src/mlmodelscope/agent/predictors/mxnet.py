"""MXNet predictor: a symbol + params checkpoint run by MXNet 1.x's graph executor on the CPU or a CUDA GPU.

The artifact is a folder (an unpacked ``archive: true`` artifact) holding one ``<prefix>-symbol.json`` and one
``<prefix>-NNNN.params``, as ``HybridBlock.export`` writes them. The graph's data inputs (its arguments the params
do not hold) are matched to the manifest's inputs by name (or, one each, positionally: gluon names its input
``data``), its outputs by position. Why the executor: ``Symbol.bind`` once per input shape (later shapes share the
first one's memory pool, all share the weights), inputs and outputs bound once, was the lowest-latency path with
MXNet 1.9.1 (~0.1-0.3 ms per batch-1 digits call against ~1.3 ms for a hybridised ``SymbolBlock``); ``load`` binds
batch 1, the driver's warm-up the run's batch size. Threads: MXNet reads its pool sizes only when imported, so
``load`` sets them before the import and warns if it came too late (predictors/mxnet_runtime.py says which). The
engine stays MXNet's threaded default: ``NaiveEngine`` (~20-40 µs faster at batch 1) is a process-wide debugging
engine that runs every operator synchronously, on a GPU too.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor, PredictFn, check_count, match_names
from mlmodelscope.agent.predictors.mxnet_runtime import (
    environment,
    find_checkpoint,
    installed_version,
    set_threads_before_import,
)
from mlmodelscope.agent.profilers.mxnet import MXNetProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError, PredictorError

_WARM_CALLS = 2
_MAX_BOUND_SHAPES = 8
Binding = tuple[list[Any], Callable[[], list[Any]]]  # (the bound input arrays, the executor's forward)
# MXNet 1.9 reads numpy aliases deprecated since numpy 1.20 (np.bool, ...) while it imports: quiet_import.
MXNET = FrameworkPackage(
    "MXNet", "mxnet", "mxnet", "into the MXNet environment (`make setup` builds .venv-mxnet)", quiet_import=True
)


class MXNetPredictor(FrameworkPredictor):
    name = "mxnet"
    package = MXNET

    _symbol: Any = None

    @classmethod
    def library_version(cls) -> str:
        # Read from metadata so that asking does not import MXNet: thread counts only apply before the import.
        version = installed_version()
        if version is None:
            if "mxnet" in sys.modules or find_spec("mxnet") is not None:
                return super().library_version()
            raise MXNET.unavailable()
        return version

    def load(self, artifact_path: Path) -> None:
        symbol_path, params_path = find_checkpoint(artifact_path)
        set_threads_before_import(self.options.intra_op_threads, self.options.inter_op_threads)
        mx = MXNET.load()
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
        check_count(f"the MXNet graph in {symbol_path}", "output", symbol.list_outputs(), self.model.outputs)
        self._symbol = symbol
        self._profiler = None
        bind_env: dict[str, str] = {}
        if self.options.profile_dir is not None:
            self._profiler = MXNetProfiler(self.options.profile_dir)
            self._profiler.attach(mx.profiler)
            bind_env["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"  # one profile event per operator, not per bulk
        dtypes = [np.dtype(spec.dtype) for spec in self.model.inputs]
        predict = self._make_predict(mx, symbol, context, args, aux, data_names, dtypes, bind_env, artifact_path)
        self.bind_predict(predict if self._profiler is None else self._profiler.wrap(predict))
        # The first call on a shape creates MKL-DNN primitives and the executor's memory.
        self.warm_up(_WARM_CALLS)

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
        raise self.no_backend()

    def _data_names(self, symbol: Any, args: dict[str, Any], aux: dict[str, Any], artifact_path: Path) -> list[str]:
        missing_aux = [n for n in symbol.list_auxiliary_states() if n not in aux]
        if missing_aux:
            raise ModelLoadError(
                f"MXNet could not load {artifact_path}: the params lack the auxiliary states {missing_aux}.",
                hint="Export symbol and params together (HybridBlock.export) and archive both.",
            )
        # The data inputs are the arguments without params; gluon's export names its one input 'data'.
        graph_inputs = [n for n in symbol.list_arguments() if n not in args]
        where = f"the MXNet graph in {artifact_path} (data inputs: the arguments without params)"
        hint = ", or check that the params file holds every weight"
        order = match_names(
            where, "input", graph_inputs, self.model.inputs, positional="single", complete=True, hint=hint
        )
        return [graph_inputs[i] for i in order]

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
    ) -> PredictFn:
        """The hot path: one bound executor per input shape, made on first sight of the shape."""
        empty = mx.nd.empty
        bound: dict[Any, Binding] = {}
        first: list[Any] = []

        def bind(shapes: Sequence[tuple[int, ...]]) -> Binding:
            arrays = [empty(s, ctx=context, dtype=d) for s, d in zip(shapes, dtypes, strict=True)]
            try:
                with warnings.catch_warnings(), environment(**bind_env):
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

        return _shape_keyed_predict(bound, bind, single_input=len(data_names) == 1)

    def close(self) -> None:
        super().close()
        self._symbol = None


def _shape_keyed_predict(
    bound: dict[Any, Binding], bind: Callable[[Sequence[tuple[int, ...]]], Binding], *, single_input: bool
) -> PredictFn:
    """The predict function: copy the inputs into the executor bound to their shapes (``bind`` on first sight of
    them) and run it; a one-input model skips building the key tuple."""
    if single_input:

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
