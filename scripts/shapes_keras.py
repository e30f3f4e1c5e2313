"""The shapes detector and segmenter in Keras, from the trained (batch-norm folded) PyTorch weights.

Why this script exists
----------------------
The TensorFlow predictor is compared with the other frameworks on the *same* models, so ``build_shapes.py``'s
networks are rebuilt layer for layer in Keras 3 and given PyTorch's weights (no retraining):

* the input stays NCHW float32 ``(N, 3, 128, 128)``: a ``Permute((2, 3, 1))`` first makes it NHWC;
* conv kernels OIHW -> HWIO (``w.transpose(2, 3, 1, 0)``); a stride-1 3x3 conv is ``padding="same"`` (torch's
  pad 1), but a stride-2 one is ``ZeroPadding2D(1)`` + ``padding="valid"``, because TensorFlow's "same" pads
  0 before / 1 after on an even size where torch pads 1 on both sides;
* nearest 2x upsampling is ``UpSampling2D``, channel concatenation ``Concatenate(axis=-1)`` in torch's order;
* the detector's decoding uses ``keras.ops`` (add the cell-centre grid, multiply by the stride, exp), which Keras 3
  saves in the ``.keras`` file and loads with ``safe_mode=True`` (no Lambda layer); NHWC -> (N, 1024, C) is the
  same row-major (gy, gx) order as torch's ``permute(0, 2, 3, 1).reshape``;
* the segmenter's NHWC logits go back to NCHW (``Permute((3, 1, 2))``), so ``mask`` is ``(N, 4, 128, 128)``.

Outputs: ``shapes_detector.keras`` (outputs ``boxes``, ``scores``) and ``shapes_segmenter.keras`` (output
``mask``), saved byte-deterministically by the agent's ``save_keras_deterministically``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from shapes_arch import DETECTOR_CONVS, GRID, INPUT_HW, NUM_CLASSES, SEGMENTER_CONVS, STRIDE, ConvSpec, grid_cells

from mlmodelscope.agent.zoo.keras_models import save_keras_deterministically

DETECTOR_KERAS = "shapes_detector.keras"
SEGMENTER_KERAS = "shapes_segmenter.keras"
INPUT_NAME = "input"


def _keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


class _Convs:
    """Builds each table conv once, keeping the layer so the weights can be set after the graph exists."""

    def __init__(self, keras: Any, specs: tuple[ConvSpec, ...]) -> None:
        self.keras = keras
        self.specs = {spec.name: spec for spec in specs}
        self.layers: dict[str, Any] = {}

    def __call__(self, name: str, x: Any) -> Any:
        spec, layers = self.specs[name], self.keras.layers
        activation = "relu" if spec.relu else None
        if spec.stride == 2:
            x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
            conv = layers.Conv2D(spec.cout, spec.kernel, strides=2, padding="valid", activation=activation, name=name)
        else:
            padding = "same" if spec.kernel == 3 else "valid"
            conv = layers.Conv2D(spec.cout, spec.kernel, padding=padding, activation=activation, name=name)
        self.layers[name] = conv
        return conv(x)

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        for name, layer in self.layers.items():
            kernel = np.asarray(weights[f"{name}.weight"], dtype=np.float32).transpose(2, 3, 1, 0)
            layer.set_weights([kernel, np.asarray(weights[f"{name}.bias"], dtype=np.float32)])


def _up_cat(keras: Any, x: Any, skip: Any, name: str) -> Any:
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_cat")([up, skip])


def build_detector(weights: Mapping[str, Any]) -> Any:
    keras = _keras()
    ops, layers = keras.ops, keras.layers
    conv = _Convs(keras, DETECTOR_CONVS)
    inputs = keras.Input(shape=(3, *INPUT_HW), dtype="float32", name=INPUT_NAME)
    x = layers.Permute((2, 3, 1), name="nchw_to_nhwc")(inputs)
    c1 = conv("stem", x)
    c2 = conv("block2", conv("down2", c1))
    c3 = conv("block3", conv("down3", c2))
    c4 = conv("block4", conv("down4", c3))
    u3 = conv("up3", _up_cat(keras, c4, c3, "up3"))
    u2 = conv("up2", _up_cat(keras, u3, c2, "up2"))
    head = conv("head", u2)
    heat, offset, size = conv("heat", head), conv("offset", head), conv("size", head)
    grid = grid_cells().transpose(0, 2, 3, 1)  # (1, G, G, 2) NHWC
    centre = ops.multiply(ops.add(offset, grid), np.float32(STRIDE))
    extent = ops.multiply(ops.exp(size), np.float32(STRIDE))
    box_map = layers.Concatenate(axis=-1, name="box_map")([centre, extent])
    boxes = layers.Reshape((GRID * GRID, 4), name="boxes")(box_map)
    scores = layers.Reshape((GRID * GRID, NUM_CLASSES), name="scores")(layers.Activation("sigmoid")(heat))
    model = keras.Model(inputs, [boxes, scores], name="shapes_detector")
    conv.set_weights(weights)
    return model


def build_segmenter(weights: Mapping[str, Any]) -> Any:
    keras = _keras()
    layers = keras.layers
    conv = _Convs(keras, SEGMENTER_CONVS)
    inputs = keras.Input(shape=(3, *INPUT_HW), dtype="float32", name=INPUT_NAME)
    x = layers.Permute((2, 3, 1), name="nchw_to_nhwc")(inputs)
    e1 = conv("enc1", x)
    e2 = conv("enc2b", conv("enc2", e1))
    e3 = conv("enc3b", conv("enc3", e2))
    e4 = conv("enc4b", conv("enc4", e3))
    d3 = conv("dec3", _up_cat(keras, e4, e3, "dec3"))
    d2 = conv("dec2", _up_cat(keras, d3, e2, "dec2"))
    d1 = conv("dec1", _up_cat(keras, d2, e1, "dec1"))
    d0 = conv("dec0", _up_cat(keras, d1, x, "dec0"))
    mask = layers.Permute((3, 1, 2), name="mask")(conv("logits", d0))
    model = keras.Model(inputs, mask, name="shapes_segmenter")
    conv.set_weights(weights)
    return model


def export_keras(detector: Mapping[str, Any], segmenter: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write both ``.keras`` files into ``out_dir`` from the two weight dicts (``<conv>.weight``/``.bias``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model, name in ((build_detector(detector), DETECTOR_KERAS), (build_segmenter(segmenter), SEGMENTER_KERAS)):
        save_keras_deterministically(model, out_dir / name)
        written.append(out_dir / name)
    return written


def run_keras(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """Load a ``.keras`` file as the TensorFlow predictor does (safe mode) and run it on ``x``."""
    keras = _keras()
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    result = model(x, training=False)
    results = result if isinstance(result, list | tuple) else [result]
    return [np.asarray(r) for r in results]
