"""Which models fit a dataset: every rule of ``compatibility.fit`` with its reason, ``models list --dataset`` and
``datasets show`` through the installed command, and ``evaluate`` refusing a misfit before anything starts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from mlmodelscope.cli.main import main
from mlmodelscope.core.manifests.compatibility import fit, served_tasks, shape_after
from mlmodelscope.core.manifests.resources import Dataset, Model
from mlmodelscope.core.processing.steps import PreprocessStep
from tests.support.cli import run_cli
from tests.support.dataset_files import image_bytes, write
from tests.support.paths import ASSETS

DECODE = [{"decode": {"color_mode": "RGB"}}, {"resize": {"size": [32, 32]}}, {"layout": "CHW"}]


def model(
    task: str = "image_classification",
    *,
    preprocess: list[dict[str, Any]] | None = None,
    shape: list[int] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    inputs: int = 1,
) -> Model:
    one = {"name": "x", "shape": shape or [3, 32, 32], "preprocess": DECODE if preprocess is None else preprocess}
    spec = {
        "task": task,
        "framework": {"name": "onnxruntime"},
        "artifacts": [{"uri": "m.onnx", "sha256": "0" * 64, "format": "onnx"}],
        "inputs": [one] + [{**one, "name": f"x{i}"} for i in range(1, inputs)],
        "outputs": outputs or [{"name": "y", "shape": [10]}],
    }
    return Model.model_validate(
        {"apiVersion": "mlmodelscope.org/v1alpha1", "kind": "Model", "metadata": {"name": "m"}, "spec": spec}
    )


def dataset(kind: str, task: str = "image_classification", **source: Any) -> Dataset:
    fields: dict[str, Any] = {"kind": kind, **source}
    if kind in ("folder", "coco"):
        fields.setdefault("uri", "photos")
    if kind == "npz":
        fields.update(uri="d.npz", sha256="0" * 64)
    if kind == "synthetic":
        fields = {"kind": kind, "shape": [3, 32, 32], "dtype": "float32", "classes": 10, **source}
    spec = {"task": task, "size": 4, "source": fields}
    return Dataset.model_validate(
        {"apiVersion": "mlmodelscope.org/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"}, "spec": spec}
    )


DETECTOR_OUTPUTS = [{"name": "det", "type": "detections", "shape": [100, 6], "columns": {"box": 0, "score": 4}}]
MASK_OUTPUTS = [{"name": "mask", "type": "mask", "shape": [3, 32, 32]}]

# (id, model, dataset, the reasons expected, exactly)
CASES: list[tuple[str, Model, Dataset, list[str]]] = [
    ("classifier-on-images", model(), dataset("folder"), []),
    ("detector-on-coco", model("object_detection", outputs=DETECTOR_OUTPUTS), dataset("coco", "object_detection"), []),
    (
        "segmenter-on-coco",
        model("semantic_segmentation", outputs=MASK_OUTPUTS),
        dataset("coco", "object_detection"),
        [],
    ),
    (
        "task",
        model("object_detection", outputs=DETECTOR_OUTPUTS),
        dataset("folder"),
        ["model 'm' is an object_detection model, but dataset 'd' (kind folder) serves image_classification."],
    ),
    (
        "classifier-on-coco",
        model(),
        dataset("coco", "object_detection"),
        [
            "model 'm' is an image_classification model, but dataset 'd' (kind coco) serves object_detection and "
            "semantic_segmentation."
        ],
    ),
    (
        "images-need-decode",
        model(preprocess=[{"layout": "CHW"}]),
        dataset("folder"),
        [
            "dataset 'd' (kind folder) holds encoded image files, but input 'x' of model 'm' does not start with a "
            "`decode` step (add `- decode: {color_mode: RGB}` first)."
        ],
    ),
    (
        "arrays-take-no-decode",
        model(),
        dataset("npz"),
        [
            "dataset 'd' (kind npz) holds decoded arrays, but input 'x' of model 'm' has a `decode` step (step 0), "
            "which takes encoded image bytes."
        ],
    ),
    (
        "one-input",
        model(inputs=2),
        dataset("folder"),
        ["model 'm' has 2 inputs ('x', 'x1'), but dataset 'd' gives one sample per item."],
    ),
    (
        "synthetic-shape",
        model(preprocess=[{"normalize": {"scale": 2.0}}], shape=[3, 16, 16]),
        dataset("synthetic"),
        [
            "the samples of dataset 'd' have shape [3, 32, 32], which pre-processing (steps: normalize) turns into "
            "[3, 32, 32], but input 'x' of model 'm' takes shape [3, 16, 16]."
        ],
    ),
    (
        "synthetic-rank",
        model(preprocess=[], shape=[128]),
        dataset("synthetic"),
        [
            "the samples of dataset 'd' have shape [3, 32, 32], which pre-processing (steps: none) turns into "
            "[3, 32, 32], but input 'x' of model 'm' takes shape [128] (rank 3 vs 1)."
        ],
    ),
    ("synthetic-dynamic-axis", model(preprocess=[], shape=[3, -1, -1]), dataset("synthetic"), []),
    (
        "synthetic-classes",
        model(preprocess=[]),
        dataset("synthetic", classes=1000),
        ["dataset 'd' has labels in 0..999 (1000 classes), but output 'y' of model 'm' scores 10 classes."],
    ),
    ("fewer-dataset-classes-fit", model(preprocess=[]), dataset("synthetic", classes=3), []),
    ("dynamic-classes-fit", model(preprocess=[], outputs=[{"name": "y", "shape": [-1]}]), dataset("synthetic"), []),
]


@pytest.mark.parametrize(("the_model", "the_dataset", "reasons"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_gives_its_reason(the_model: Model, the_dataset: Dataset, reasons: list[str]) -> None:
    verdict = fit(the_model, the_dataset)
    assert verdict.reasons == reasons
    assert verdict.ok is (not reasons)


def test_a_coco_dataset_serves_detection_and_segmentation_whatever_it_declares() -> None:
    assert served_tasks(dataset("coco", "semantic_segmentation")) == ("semantic_segmentation", "object_detection")
    assert served_tasks(dataset("folder")) == ("image_classification",)


def _steps(*steps: dict[str, Any]) -> list[PreprocessStep]:
    return [PreprocessStep.model_validate(step) for step in steps]


def test_the_shape_after_pre_processing_is_followed_where_it_can_be_known() -> None:
    hwc = (40, 60, 3)
    assert shape_after(
        hwc, _steps({"resize": {"size": [36, 36]}}, {"crop": {"size": [32, 32]}}, {"layout": "CHW"})
    ) == (3, 32, 32)
    assert shape_after(hwc, _steps({"crop": {"ratio": 0.5}})) == (20, 20, 3)
    assert shape_after(hwc, _steps({"pad": {"size": [64, 64]}}, {"dtype": "float32"})) == (64, 64, 3)
    assert shape_after((8, 8), _steps({"layout": "CHW"})) == (1, 8, 8)
    # An aspect-keeping resize or a colour change depends on the data: unknown, so no shape rule applies.
    assert shape_after(hwc, _steps({"resize": {"size": [32, 32], "keep_aspect_ratio": True}})) is None
    assert shape_after(hwc, _steps({"color_mode": "GRAY"})) is None
    assert shape_after((128,), _steps({"layout": "CHW"})) is None


def test_the_repository_assets_fit_their_default_datasets() -> None:
    from mlmodelscope.core.manifests.registry import load_registry

    registry = load_registry([ASSETS])
    for name in registry.models:
        spec = registry.model(name).spec
        if spec.dataset is not None:
            verdict = fit(registry.model(name), registry.dataset(spec.dataset))
            assert verdict.ok, (name, verdict.reasons)


# --- the CLI ---------------------------------------------------------------------------------------------------


def test_models_list_with_a_dataset_marks_the_fitting_and_explains_the_others(tmp_path: Path) -> None:
    run = run_cli("models", "list", "--dataset", "digits", cwd=ASSETS.parent)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("models on dataset 'digits'")
    assert next(line for line in run.stdout.splitlines() if "name" in line).split("┃")[-2].strip() == "fits"
    rows = {
        line.split("│")[1].strip(): line.split("│")[-2].strip()
        for line in run.stdout.splitlines()
        if line.startswith("│") and line.split("│")[1].strip()
    }
    assert rows["digits-cnn"] == "yes" and rows["transformer-encoder"] == "no"
    assert (
        "transformer-encoder: model 'transformer-encoder' is a raw model, but dataset 'digits' (kind npz) serves "
        "image_classification." in run.stdout
    )
    unknown = run_cli("models", "list", "--dataset", "digitz", cwd=ASSETS.parent)
    assert unknown.returncode == 1 and "unknown dataset 'digitz'" in unknown.stderr


def _photo_assets(root: Path) -> Path:
    """Assets with a folder dataset of 3 photos (two sizes, RGB and L, PNG and JPEG) in two classes, and a COCO
    dataset of 2 images with 3 boxes."""
    (root / "datasets").mkdir(parents=True, exist_ok=True)
    write(root / "datasets/photos/cat/a.png", image_bytes((20, 10), "RGB", "PNG"))
    write(root / "datasets/photos/cat/b.png", image_bytes((20, 10), "RGB", "PNG", seed=1))
    write(root / "datasets/photos/dog/c.jpg", image_bytes((8, 8), "L", "JPEG"))
    folder = {"task": "image_classification", "size": 3, "source": {"kind": "folder", "uri": "photos"}}
    write(root / "datasets/photos.yaml", yaml.safe_dump(_resource("photos", folder)).encode())
    write(root / "datasets/shapes/images/1.png", image_bytes((16, 12), "RGB", "PNG"))
    write(root / "datasets/shapes/images/2.png", image_bytes((16, 12), "RGB", "PNG", seed=2))
    annotations = {
        "images": [
            {"id": 1, "file_name": "1.png", "width": 16, "height": 12},
            {"id": 2, "file_name": "2.png", "width": 16, "height": 12},
        ],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "circle"}],
        "annotations": [
            {"id": i, "image_id": 1 + i % 2, "category_id": 1 + i // 2, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}
            for i in range(3)
        ],
    }
    write(root / "datasets/shapes/annotations.json", json.dumps(annotations).encode())
    coco = {"task": "object_detection", "size": 2, "source": {"kind": "coco", "uri": "shapes"}}
    write(root / "datasets/shapes.yaml", yaml.safe_dump(_resource("shapes", coco)).encode())
    return root


def _resource(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "mlmodelscope.org/v1alpha1", "kind": "Dataset", "metadata": {"name": name}, "spec": spec}


def test_datasets_show_prints_counts_classes_sizes_modes_formats_and_the_manifest(tmp_path: Path) -> None:
    assets = _photo_assets(tmp_path / "assets")
    common = ("--assets", str(assets), "--cache-dir", str(tmp_path / "cache"), "datasets", "show")
    run = run_cli(*common, "photos", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "dataset 'photos': folder, task image_classification" in text
    assert "3 items (the manifest says 3)" in text and "2 classes" in text
    for cells in (
        ("cat", "2"),
        ("dog", "1"),
        ("20x10", "2"),
        ("8x8", "1"),
        ("RGB", "2"),
        ("L", "1"),
        ("PNG", "2"),
        ("JPEG", "1"),
    ):
        assert any(
            all(cell in line.split("│")[i + 1] for i, cell in enumerate(cells))
            for line in text.splitlines()
            if line.count("│") == 3
        ), cells
    manifest = json.loads(text[text.index("{") :])
    assert manifest["metadata"]["name"] == "photos" and manifest["spec"]["source"]["kind"] == "folder"
    coco = run_cli(*common, "shapes", cwd=tmp_path)
    assert coco.returncode == 0, coco.stderr
    assert "serves object_detection, semantic_segmentation" in coco.stdout
    assert "2 items (the manifest says 2), 3 annotations" in coco.stdout


# --- evaluate refuses a misfit before it starts anything ----------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("MLMODELSCOPE_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "data"
    monkeypatch.setenv("MLMODELSCOPE_DATA_DIR", str(folder))
    monkeypatch.setenv("COLUMNS", "250")
    return folder


@pytest.mark.parametrize(
    ("dataset_name", "fragments"),
    [
        (
            "synthetic-tokens",
            [
                "model 'digits-cnn' is an image_classification model, but dataset 'synthetic-tokens' "
                "(kind synthetic) serves raw."
            ],
        ),
        (
            "photos",
            [
                "dataset 'photos' (kind folder) holds encoded image files, but input 'input' of model "
                "'digits-cnn' does not start with a `decode` step"
            ],
        ),
    ],
    ids=["task", "input-type"],
)
def test_evaluate_refuses_a_dataset_the_model_cannot_consume_before_starting_anything(
    scratch_assets: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dataset_name: str,
    fragments: list[str],
) -> None:
    _photo_assets(scratch_assets)
    monkeypatch.chdir(scratch_assets.parent)
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    argv = ["--cache-dir", str(scratch_assets.parent / "cache"), "evaluate", "-m", "digits-cnn", "-f", "onnxruntime"]
    code = main([*argv, "--dataset", dataset_name])
    stderr = " ".join(capsys.readouterr().err.split())
    assert code == 1, stderr
    assert stderr.startswith(f"error: model 'digits-cnn' cannot be evaluated on dataset '{dataset_name}':"), stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert f"how to fix: See `mlmodelscope models list --dataset {dataset_name}`" in stderr
    assert "Traceback" not in stderr
    assert not ({p.pid for p in psutil.Process().children(recursive=True)} - children_before)
    assert not data_dir.exists() or not any(data_dir.iterdir()), sorted(data_dir.rglob("*"))
