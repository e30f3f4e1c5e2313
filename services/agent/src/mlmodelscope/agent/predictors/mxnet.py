"""MXNet predictor: a symbol + params checkpoint run by MXNet 1.x's graph executor on the CPU or a CUDA GPU.

The artifact is a folder (an unpacked ``archive: true`` artifact) holding one ``<prefix>-symbol.json`` and one
``<prefix>-NNNN.params``, as ``HybridBlock.export`` writes them. The graph's data inputs (its arguments the params
do not hold) are matched to the manifest's inputs by name (or, one each, positionally: gluon names its input
``data``), its outputs by position. The graph is bound once per input shape (predictors/mxnet_executor.py says
why); ``load`` binds batch 1, the driver's warm-up the run's batch size. Threads: MXNet reads its pool sizes only
when imported, so ``load`` sets them before the import and warns if it came too late (predictors/mxnet_runtime.py
says which).
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor
from mlmodelscope.agent.predictors.mxnet_executor import bound_predict
from mlmodelscope.agent.predictors.mxnet_runtime import find_checkpoint, installed_version, set_threads_before_import
from mlmodelscope.agent.predictors.signature import check_count, match_names
from mlmodelscope.agent.profilers.mxnet import MXNetProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError

_WARM_CALLS = 2
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
        predict = bound_predict(mx, symbol, context, args, aux, data_names, dtypes, bind_env, artifact_path)
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

    def close(self) -> None:
        super().close()
        self._symbol = None
