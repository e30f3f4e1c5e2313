"""The MXNet predictor's hot path: the graph bound by MXNet 1.x's executor once per input shape.

Why the executor: ``Symbol.bind`` once per input shape (later shapes share the first one's memory pool, all share
the weights), inputs and outputs bound once, was the lowest-latency path with MXNet 1.9.1 (~0.1-0.3 ms per batch-1
digits call against ~1.3 ms for a hybridised ``SymbolBlock``; docs/benchmarks.md, "Predictor efficiency"). The
engine stays MXNet's threaded default: ``NaiveEngine`` (~20-40 µs faster at batch 1) is a process-wide debugging
engine that runs every operator synchronously, on a GPU too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import PredictFn
from mlmodelscope.agent.predictors.mxnet_runtime import environment
from mlmodelscope.core.errors import PredictorError

MAX_BOUND_SHAPES = 8
"""Executors kept at once; the oldest shape's is dropped to bind a new one."""
Binding = tuple[list[Any], Callable[[], list[Any]]]  # (the bound input arrays, the executor's forward)


def bound_predict(
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
    """The hot path: one executor of ``symbol`` bound per input shape, made on first sight of the shape."""
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
        if len(bound) >= MAX_BOUND_SHAPES:
            del bound[next(iter(bound))]
        return arrays, executor.forward  # is_train=False by default: inference

    return _shape_keyed_predict(bound, bind, single_input=len(data_names) == 1)


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
