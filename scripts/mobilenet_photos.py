"""Write the ``imagenet-photos`` dataset: real photographs bundled in scikit-image, with their ImageNet classes.

Why this module exists: the pretrained MobileNetV2 needs real photos with correct ImageNet labels, offline. The
scikit-image wheel ships a few (public domain / CC0 / BSD-3, see each photo's ``skimage.data`` docstring); only
those that show something one of the 1000 ImageNet classes really describes are used. Each photo gets the
single best class as its label; the other classes that would also be correct are listed as comments in the labels
file and in the dataset's README. Two of them are hard on purpose (the model's top-1 misses them): the set is a
sanity check of the pipeline on real images, not an accuracy measurement.

Files (in ``--out``, default ``assets/datasets/imagenet-photos``): ``<name>.jpg`` (baseline JPEG, quality 95,
no EXIF: the same bytes on every run with the pinned Pillow), ``labels.txt`` (``<file> <class index>`` lines,
the folder dataset's ``labels: file`` layout) and README.md.

Used by scripts/build_mobilenet_imagenet.py (``photos`` step); runs on its own too::

    .venv/bin/python scripts/mobilenet_photos.py --out assets/datasets/imagenet-photos
"""

from __future__ import annotations

import argparse
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 95


@dataclass(frozen=True)
class Photo:
    file: str
    loader: str  # the skimage.data function
    label: int  # ImageNet class index
    label_name: str
    also_correct: tuple[tuple[int, str], ...]
    note: str


PHOTOS = (
    Photo(
        "chelsea.jpg", "chelsea", 285, "Egyptian cat", ((281, "tabby"), (282, "tiger cat")), "a short-haired tabby cat"
    ),
    Photo(
        "coffee.jpg", "coffee", 967, "espresso", ((968, "cup"), (504, "coffee mug")), "a cup of espresso on a saucer"
    ),
    Photo("camera.jpg", "camera", 872, "tripod", ((759, "reflex camera"),), "a photographer at a camera on a tripod"),
    Photo(
        "motorcycle.jpg",
        "stereo_motorcycle",
        665,
        "moped",
        ((670, "motor scooter"),),
        "a motorcycle (ImageNet has no motorcycle class; moped and motor scooter are its closest); left stereo view",
    ),
    Photo("rocket.jpg", "rocket", 657, "missile", ((744, "projectile"),), "a Falcon 9 rocket lifting off (hard)"),
    Photo("clock.jpg", "clock", 892, "wall clock", ((409, "analog clock"),), "a motion-blurred wall clock (hard)"),
)


def load_photo(loader: str) -> Image.Image:
    """The photo as a Pillow image: RGB, or L for the greyscale ones (the pipeline's decode converts)."""
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = getattr(skimage.data, loader)()
    if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
        array = array[0]
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"skimage.data.{loader}() is {array.dtype}, expected uint8")
    return Image.fromarray(array)  # (H, W) -> L, (H, W, 3) -> RGB


def jpeg_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return out.getvalue()


def labels_text() -> str:
    lines = ["# <file> <ImageNet class index>; the comment after each names the class and the others also correct"]
    for photo in PHOTOS:
        also = ", ".join(f"{index} {name}" for index, name in photo.also_correct)
        lines.append(f"# {photo.file}: {photo.label} = {photo.label_name}; also correct: {also}")
        lines.append(f"{photo.file} {photo.label}")
    return "\n".join(lines) + "\n"


def readme_text() -> str:
    rows = "\n".join(
        f"| `{p.file}` | `skimage.data.{p.loader}()` | {p.label} {p.label_name} | "
        f"{', '.join(f'{i} {n}' for i, n in p.also_correct)} | {p.note} |"
        for p in PHOTOS
    )
    return f"""# imagenet-photos

Real photographs bundled in the scikit-image 0.26 wheel (`skimage/data/`), written as JPEG (quality 95) by
`scripts/mobilenet_photos.py` (run by `scripts/build_mobilenet_imagenet.py photos`). Licences: each photo's
`skimage.data` docstring (public domain or CC0; scikit-image itself is BSD-3-Clause).

`labels.txt` gives each photo the single best ImageNet-1k class (index into
`assets/artifacts/mobilenet-v2-imagenet/imagenet_classes.txt`); other classes that also describe it are listed here
and as comments there. Rocket and clock are hard on purpose. Six photos are a sanity check of the real-image
pipeline, not an accuracy measurement.

| file | source | label | also correct | what it shows |
|---|---|---|---|---|
{rows}
"""


def write_photos(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for photo in PHOTOS:
        path = out / photo.file
        path.write_bytes(jpeg_bytes(load_photo(photo.loader)))
        written.append(path)
    (out / "labels.txt").write_text(labels_text(), encoding="utf-8")
    (out / "README.md").write_text(readme_text(), encoding="utf-8")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("assets/datasets/imagenet-photos"))
    args = parser.parse_args()
    for path in write_photos(args.out):
        print(path)


if __name__ == "__main__":
    main()
