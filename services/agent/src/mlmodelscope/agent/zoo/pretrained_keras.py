"""Builder of the pretrained zoo models' Keras artifacts: torchvision's MobileNetV2, layer for layer, in Keras.

Why this module exists: ``keras.applications.MobileNetV2`` is not torchvision's network (its padding of stride-2
convolutions and its layer names differ), so torchvision's trained weights cannot be poured into it. The network
is written here with built-in Keras layers only, one Keras layer per torchvision module, named after it
(``features.3.conv.1.0`` -> ``features_3_conv_1_0``), and each layer's weights are set from the state dict read by
``pretrained`` (numpy, no torch import):

* ``Conv2D`` kernel = torch weight (out, in, kh, kw) transposed to (kh, kw, in, out); ``DepthwiseConv2D`` kernel =
  (C, 1, kh, kw) -> (kh, kw, C, 1); ``Dense`` kernel = weight.T;
* ``BatchNormalization`` (epsilon 1e-5, torch's) = [weight, bias, running_mean, running_var]; kept, not folded,
  so the file maps one to one onto the state dict;
* torch pads every 3x3 convolution by 1 on both sides; Keras' ``same`` pads stride-2 convolutions asymmetrically,
  so those get an explicit ``ZeroPadding2D(1)`` and ``valid``;
* the NCHW input (the shared I/O contract) is turned into NHWC by a leading ``Permute((2, 3, 1))``; ``Dropout``
  (inactive at inference) is left out.

I/O contract: ``input`` float32 (N, 3, 224, 224) -> logits (N, 1000), no softmax. The ``.keras`` file is written
byte-deterministically (``keras_models.save_keras_deterministically``) and checked against the pinned digests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.zoo import keras_models, pretrained
from mlmodelscope.core.errors import ModelLoadError

BATCH_NORM_EPSILON = 1e-5
IMAGE_SIZE = 224
CLASSES = 1000
# (expansion t, output channels c, repeats n, first stride s), torchvision's inverted residual settings
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

WeightSetter = Callable[[dict[str, np.ndarray]], None]


class _Network:
    """Builds the graph and remembers, per Keras layer, how to fill it from the state dict."""

    def __init__(self, keras: Any) -> None:
        self.keras = keras
        self.setters: list[WeightSetter] = []

    def conv_bn(self, x: Any, prefix: str, filters: int, kernel: int, stride: int, *, depthwise: bool) -> Any:
        """torch Conv2d(bias=False) ``<prefix>.0`` + BatchNorm2d ``<prefix>.1`` (torchvision's numbering)."""
        return self.batch_norm(self.conv(x, f"{prefix}.0", filters, kernel, stride, depthwise=depthwise), f"{prefix}.1")

    def conv(self, x: Any, name: str, filters: int, kernel: int, stride: int, *, depthwise: bool) -> Any:
        layers, keras_name = self.keras.layers, name.replace(".", "_")
        padding = "same"
        if stride > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{keras_name}_pad")(x)
            padding = "valid"
        if depthwise:
            layer = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False, name=keras_name)
            order = (2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        else:
            layer = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False, name=keras_name)
            order = (2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
        out = layer(x)
        self.setters.append(lambda state: layer.set_weights([state[f"{name}.weight"].transpose(order)]))
        return out

    def batch_norm(self, x: Any, name: str) -> Any:
        layer = self.keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=name.replace(".", "_"))
        out = layer(x)
        keys = ("weight", "bias", "running_mean", "running_var")
        self.setters.append(lambda state: layer.set_weights([state[f"{name}.{key}"] for key in keys]))
        return out

    def relu6(self, x: Any, name: str) -> Any:
        return self.keras.layers.ReLU(max_value=6.0, name=f"{name.replace('.', '_')}_relu6")(x)

    def inverted_residual(self, x: Any, index: int, in_channels: int, out_channels: int, stride: int, t: int) -> Any:
        prefix, hidden, part = f"features.{index}.conv", in_channels * t, 0
        y = x
        if t != 1:
            y = self.relu6(self.conv_bn(y, f"{prefix}.0", hidden, 1, 1, depthwise=False), f"{prefix}.0")
            part = 1
        y = self.relu6(self.conv_bn(y, f"{prefix}.{part}", hidden, 3, stride, depthwise=True), f"{prefix}.{part}")
        y = self.conv(y, f"{prefix}.{part + 1}", out_channels, 1, 1, depthwise=False)
        y = self.batch_norm(y, f"{prefix}.{part + 2}")
        if stride == 1 and in_channels == out_channels:
            y = self.keras.layers.Add(name=f"features_{index}_add")([x, y])
        return y

    def mobilenet_v2(self) -> Any:
        keras = self.keras
        inputs = keras.Input(shape=(3, IMAGE_SIZE, IMAGE_SIZE), dtype="float32", name="input")
        x = keras.layers.Permute((2, 3, 1), name="nchw_to_nhwc")(inputs)
        x = self.relu6(self.conv_bn(x, "features.0", 32, 3, 2, depthwise=False), "features.0")
        in_channels, index = 32, 1
        for t, c, n, s in SETTINGS:
            for repeat in range(n):
                x = self.inverted_residual(x, index, in_channels, c, s if repeat == 0 else 1, t)
                in_channels, index = c, index + 1
        x = self.relu6(self.conv_bn(x, f"features.{index}", 1280, 1, 1, depthwise=False), f"features.{index}")
        x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        dense = keras.layers.Dense(CLASSES, name="classifier_1")
        logits = dense(x)
        self.setters.append(
            lambda state: dense.set_weights([state["classifier.1.weight"].T, state["classifier.1.bias"]])
        )
        return keras.Model(inputs, logits, name="mobilenet_v2_imagenet")


def trained_model(model: str) -> Any:
    """The Keras MobileNetV2 with the pretrained model's weights (not saved)."""
    spec = pretrained.pretrained_model(model, seed=0)
    keras = keras_models._import_keras()
    keras.backend.clear_session()
    network = _Network(keras)
    built = network.mobilenet_v2()
    state = pretrained.state_dict(spec)
    try:
        for setter in network.setters:
            setter(state)
    except (KeyError, ValueError) as e:
        raise ModelLoadError(
            f"the weights of zoo:{model} do not fit the Keras MobileNetV2: {e}",
            hint="The state dict is not torchvision's mobilenet_v2; this is a bug in the pinned weights or here.",
        ) from e
    return built


def build(model: str, destination: Path, *, seed: int, check: bool = True) -> Path:
    """Write pretrained ``model`` as ``<destination>/<model>.keras`` and check it against the pinned digests."""
    spec = pretrained.pretrained_model(model, seed=seed)
    if check:
        pretrained.check_format(spec, "keras")  # before building ~14 MB for nothing
    path = destination / f"{model}.keras"
    keras_models.save_keras_deterministically(trained_model(model), path)
    if check:
        pretrained.check_build(spec, "keras", destination)
    return path
