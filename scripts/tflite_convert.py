"""Convert a Keras model to a float32 TensorFlow Lite flatbuffer whose signature names match its manifest.

Why this script exists
----------------------
The ``tflite`` framework runs ``.tflite`` files, and the platform's models exist as Keras files (committed, like
the digits CNN, or built by the model zoo, like ResNet-18 or the pretrained MobileNetV2). One converter keeps
them alike: the model is wrapped in a ``tf.function`` with a fixed input signature (batch axis ``None``, so the
predictor resizes it per batch), named after the manifest (``serving_default`` signature: input ``<inputs[0].name>``,
output ``<outputs[0].name>``), and its variables are tracked by a ``tf.Module`` so the converter freezes them
(a Keras 3 model is not a trackable object the converter walks: its weights would stay ``READ_VARIABLE`` ops).
The bytes depend only on the Keras file; convert in a fresh process for byte-stable output. The converter itself
(:func:`converter_for`) lives in the agent's zoo (``mlmodelscope.agent.zoo.pretrained_tflite``), which builds the
pretrained MobileNetV2's float32 and int8 ``.tflite`` into the artifact cache with it; this script is for
committed models and by-hand conversions.

Usage::

    .venv/bin/python scripts/tflite_convert.py --keras model.keras --out model.tflite [--input input --output logits]
    .venv/bin/python scripts/tflite_convert.py --model resnet18 --out /tmp/resnet18.tflite   # its keras artifact,
                                                                              # zoo-built into --cache-dir if need be

From Python: :func:`converter_for` (a configured ``TFLiteConverter``, for callers that add quantisation) and
:func:`convert_keras`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from mlmodelscope.agent.zoo.pretrained_tflite import converter_for

__all__ = ["convert_keras", "converter_for", "keras_artifact_of"]

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"


def convert_keras(keras_path: Path, input_name: str, output_name: str) -> bytes:
    """The float32 flatbuffer of the Keras model at ``keras_path``."""
    return bytes(converter_for(keras_path, input_name, output_name).convert())


def keras_artifact_of(model_name: str, assets: Path, cache_dir: Path) -> tuple[Path, str, str]:
    """(the model's Keras file, built by the zoo if need be; its input name; its output name)."""
    from mlmodelscope.core.artifacts.store import ArtifactStore
    from mlmodelscope.core.artifacts.zoo import fetch_artifact
    from mlmodelscope.core.manifests import load_registry

    registry = load_registry([assets])
    resolution = registry.resolve(model_name, "tensorflow")
    if resolution.artifact.format != "keras":
        raise SystemExit(
            f"model '{model_name}' has no keras artifact (tensorflow resolves {resolution.artifact.format})"
        )
    fetched = fetch_artifact(ArtifactStore(cache_dir), resolution.artifact, base_dir=resolution.model_dir)
    spec = resolution.model.spec
    return fetched.path, spec.inputs[0].name, spec.outputs[0].name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keras", type=Path, help="a .keras file")
    source.add_argument("--model", help="a model of the registry: convert its keras artifact")
    parser.add_argument("--out", type=Path, required=True, help="the .tflite file to write")
    parser.add_argument("--input", default="input", help="signature input name (--keras; --model: the manifest's)")
    parser.add_argument("--output", default="logits", help="signature output name (--keras; --model: the manifest's)")
    parser.add_argument("--assets", type=Path, default=ASSETS, help="the resources folder (--model)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "artifacts", help="artifact cache")
    args = parser.parse_args(argv)
    keras_path, input_name, output_name = (
        (args.keras, args.input, args.output)
        if args.keras is not None
        else keras_artifact_of(args.model, args.assets, args.cache_dir)
    )
    content = convert_keras(keras_path, input_name, output_name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(content)
    print(f"sha256 {hashlib.sha256(content).hexdigest()}  {args.out} ({len(content)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
