"""Pre- and post-processing against independent computations on real photos (scikit-learn's sample JPEGs).

Each reference below is written from scratch with Pillow and numpy (decode, resize, slicing, arithmetic,
transpose), not with the functions under test, so a wrong offset, channel order or rounding shows up as a diff.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import sklearn.datasets
import yaml
from PIL import Image
from pydantic import ValidationError

from mlmodelscope.core.errors import ProcessingError
from mlmodelscope.core.processing.image import resize_image, resized_shape, to_dtype, to_layout
from mlmodelscope.core.processing.postprocess import Classification, Postprocessor, load_labels, softmax, top_k_indices
from mlmodelscope.core.processing.preprocess import Preprocessor
from mlmodelscope.core.processing.steps import NormalizeStep, PostprocessStep, PreprocessStep, ResizeStep

IMAGES = Path(sklearn.datasets.__file__).parent / "images"
PHOTOS = ["china.jpg", "flower.jpg"]
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def _steps(*items: dict[str, object]) -> list[PreprocessStep]:
    return [PreprocessStep.model_validate(item) for item in items]


def _imagenet(
    decode_mode: str = "RGB", method: str = "bilinear", mean: list[float] = MEAN, std: list[float] = STD
) -> list[PreprocessStep]:
    return _steps(
        {"decode": {"color_mode": decode_mode}},
        {"resize": {"size": [256, 256], "method": method, "keep_aspect_ratio": True}},
        {"crop": {"method": "center", "size": [224, 224]}},
        {"normalize": {"mean": mean, "scale": std}},
        {"layout": "CHW"},
        {"dtype": "float32"},
    )


def _reference_resized(path: Path, mode: str, resample: Image.Resampling) -> np.ndarray:
    """torchvision's Resize(256): shorter side to 256, longer side int(256 * long / short)."""
    img = Image.open(path).convert(mode)
    width, height = img.size
    if height <= width:
        new_h, new_w = 256, int(256 * width / height)
    else:
        new_h, new_w = int(256 * height / width), 256
    return np.asarray(img.resize((new_w, new_h), resample))


def _reference_center_crop(array: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """torchvision's CenterCrop: offsets int(round((H - h) / 2.0)) and int(round((W - w) / 2.0))."""
    top = round((array.shape[0] - crop_h) / 2.0)
    left = round((array.shape[1] - crop_w) / 2.0)
    return array[top : top + crop_h, left : left + crop_w]


def _reference_normalize_chw(array: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    x = array.astype(np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    normalized = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return normalized.transpose(2, 0, 1)


def _photo(name: str) -> bytes:
    return (IMAGES / name).read_bytes()


# ---------------------------------------------------------------------------------------------------------------
# full pipelines on real JPEGs


@pytest.mark.parametrize("name", PHOTOS)
def test_imagenet_pipeline_matches_independent_computation(name: str) -> None:
    out = Preprocessor(_imagenet())(_photo(name))
    resized = _reference_resized(IMAGES / name, "RGB", Image.Resampling.BILINEAR)
    assert resized.shape == (256, 383, 3)  # 427x640 landscape photos
    expected = _reference_normalize_chw(_reference_center_crop(resized, 224, 224), MEAN, STD)
    assert out.shape == (3, 224, 224)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    assert np.abs(out - expected).max() <= 1e-5


@pytest.mark.parametrize("name", PHOTOS)
def test_bgr_pipeline_by_decode_and_by_color_mode_step(name: str) -> None:
    bgr_mean, bgr_std = MEAN[::-1], STD[::-1]
    resized = _reference_resized(IMAGES / name, "RGB", Image.Resampling.BILINEAR)[:, :, ::-1]
    expected = _reference_normalize_chw(_reference_center_crop(resized, 224, 224), bgr_mean, bgr_std)

    by_decode = Preprocessor(_imagenet("BGR", mean=bgr_mean, std=bgr_std))(_photo(name))
    steps = _imagenet(mean=bgr_mean, std=bgr_std)
    by_step = Preprocessor([*steps[:3], PreprocessStep(color_mode="BGR"), *steps[3:]])(_photo(name))

    assert np.abs(by_decode - expected).max() <= 1e-5
    assert np.abs(by_step - expected).max() <= 1e-5


def test_nearest_pipeline() -> None:
    out = Preprocessor(_imagenet(method="nearest"))(_photo("china.jpg"))
    resized = _reference_resized(IMAGES / "china.jpg", "RGB", Image.Resampling.NEAREST)
    expected = _reference_normalize_chw(_reference_center_crop(resized, 224, 224), MEAN, STD)
    assert np.abs(out - expected).max() <= 1e-5
    bilinear = Preprocessor(_imagenet())(_photo("china.jpg"))
    assert np.abs(out - bilinear).max() > 0.1  # the method really changed something


@pytest.mark.parametrize("name", PHOTOS)
def test_crop_ratio_pipeline(name: str) -> None:
    """ratio 0.875 after Resize(256) is the square 224 x 224 crop (timm's crop_pct), not 224 x 335."""
    steps = _imagenet()
    steps[2] = PreprocessStep.model_validate({"crop": {"ratio": 0.875}})
    out = Preprocessor(steps)(_photo(name))
    resized = _reference_resized(IMAGES / name, "RGB", Image.Resampling.BILINEAR)
    expected = _reference_normalize_chw(_reference_center_crop(resized, 224, 224), MEAN, STD)
    assert out.shape == (3, 224, 224)
    assert np.abs(out - expected).max() <= 1e-5
    by_size = Preprocessor(_imagenet())(_photo(name))
    assert np.array_equal(out, by_size)


def _torchvision_resize_center_crop(img: Image.Image, resize: int, crop: int) -> np.ndarray:
    """Resize(resize) + CenterCrop(crop) on a PIL image, written from torchvision's documented semantics.

    Resize(n): the shorter side becomes n, the longer int(n * long / short), PIL bilinear. CenterCrop(c): top and
    left are int(round((H - c) / 2.0)) and int(round((W - c) / 2.0)).
    """
    width, height = img.size
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_h, new_w = resize, int(resize * width / height)
    resized = np.asarray(img.resize((new_w, new_h), Image.Resampling.BILINEAR))
    top = round((new_h - crop) / 2.0)
    left = round((new_w - crop) / 2.0)
    return resized[top : top + crop, left : left + crop]


# (width, height): wide, tall, square, odd sizes, an upscale, and margins of every residue mod 4.
ASPECTS = [(640, 427), (427, 640), (300, 300), (301, 457), (999, 263), (181, 97), (257, 256), (259, 517)]


@pytest.mark.parametrize(("width", "height"), ASPECTS, ids=[f"{w}x{h}" for w, h in ASPECTS])
@pytest.mark.parametrize("crop", [{"size": [224, 224]}, {"ratio": 0.875}], ids=["size", "ratio"])
def test_pipeline_equals_torchvision_resize_center_crop(width: int, height: int, crop: dict[str, object]) -> None:
    source = Image.open(IMAGES / "china.jpg").convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    encoded = io.BytesIO()
    source.save(encoded, format="PNG")  # lossless, so the pipeline decodes exactly `source`
    steps = _imagenet()
    steps[2] = PreprocessStep.model_validate({"crop": {"method": "center", **crop}})
    out = Preprocessor(steps)(encoded.getvalue())
    expected = _reference_normalize_chw(_torchvision_resize_center_crop(source, 256, 224), MEAN, STD)
    assert out.shape == expected.shape == (3, 224, 224)
    assert np.abs(out - expected).max() <= 1e-5


def test_gray_pipeline() -> None:
    steps = _imagenet("GRAY", mean=[0.449 * 255], std=[0.226 * 255])
    out = Preprocessor(steps)(_photo("flower.jpg"))
    resized = _reference_resized(IMAGES / "flower.jpg", "L", Image.Resampling.BILINEAR)
    expected = _reference_normalize_chw(_reference_center_crop(resized, 224, 224), [0.449 * 255], [0.226 * 255])
    assert out.shape == (1, 224, 224)
    assert np.abs(out - expected).max() <= 1e-5


def test_gray_color_step_on_array_equals_gray_decode() -> None:
    rgb = np.asarray(Image.open(IMAGES / "china.jpg").convert("RGB"))
    by_step = Preprocessor(_steps({"color_mode": "GRAY"}))(rgb)
    by_decode = Preprocessor(_steps({"decode": {"color_mode": "GRAY"}}))(_photo("china.jpg"))
    assert by_step.shape == by_decode.shape == (427, 640, 1)
    assert np.array_equal(by_step, by_decode)


def test_batch_stacks_samples_of_both_photos() -> None:
    pre = Preprocessor(_imagenet())
    batch = pre.batch([_photo("china.jpg"), _photo("flower.jpg")])
    assert batch.shape == (2, 3, 224, 224)
    assert np.array_equal(batch[1], pre(_photo("flower.jpg")))


def test_array_samples_skip_decode() -> None:
    rgb = np.asarray(Image.open(IMAGES / "china.jpg").convert("RGB"))
    out = Preprocessor(_imagenet()[1:])(rgb)
    assert np.array_equal(out, Preprocessor(_imagenet())(_photo("china.jpg")))


def test_manifest_yaml_parses_into_steps() -> None:
    document = yaml.safe_load(
        """
preprocess:
  - decode: {color_mode: RGB}
  - resize: {size: [256, 256], method: bilinear, keep_aspect_ratio: true}
  - crop: {method: center, size: [224, 224]}
  - color_mode: BGR
  - normalize: {mean: [123.675, 116.28, 103.53], scale: [58.395, 57.12, 57.375]}
  - layout: CHW
  - dtype: float32
postprocess:
  - softmax: {}
  - top_k: {k: 3}
"""
    )
    pre = [PreprocessStep.model_validate(item) for item in document["preprocess"]]
    post = [PostprocessStep.model_validate(item) for item in document["postprocess"]]
    assert [s.kind for s in pre] == ["decode", "resize", "crop", "color_mode", "normalize", "layout", "dtype"]
    assert [s.kind for s in post] == ["softmax", "top_k"]
    assert pre[1].resize == ResizeStep(size=(256, 256), method="bilinear", keep_aspect_ratio=True)
    assert Preprocessor(pre)(_photo("china.jpg")).shape == (3, 224, 224)


def test_letterbox_yaml_on_a_photo() -> None:
    document = yaml.safe_load(
        """
preprocess:
  - decode: {}
  - resize: {size: [320, 320], keep_aspect_ratio: true, fit: contain}
  - pad: {size: [320, 320], value: 114}
  - layout: CHW
"""
    )
    pre = [PreprocessStep.model_validate(item) for item in document["preprocess"]]
    photo = _photo("china.jpg")  # 640 x 427 (W x H): contained as 320 x 213, padded 53 rows above, 54 below
    out = Preprocessor(pre)(photo)
    assert out.shape == (3, 320, 320) and out.dtype == np.uint8
    assert (out[:, :53] == 114).all() and (out[:, 266:] == 114).all()
    assert not (out[:, 53:266] == 114).all()
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    expected = np.asarray(Image.fromarray(rgb).resize((320, 213), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out[:, 53:266].transpose(1, 2, 0), expected)


def test_resize_fit_without_keep_aspect_ratio_is_exact() -> None:
    image = np.zeros((30, 60, 3), np.uint8)
    steps = [PreprocessStep.model_validate({"resize": {"size": [20, 20], "fit": "contain"}})]
    assert Preprocessor(steps)(image).shape == (20, 20, 3)


def test_step_schema_is_structural() -> None:
    schema = PreprocessStep.model_json_schema()
    assert schema["minProperties"] == 1 and schema["maxProperties"] == 1
    assert schema["additionalProperties"] is False
    assert "prefixItems" not in str(schema)
    assert all("description" in prop for prop in schema["properties"].values())


# ---------------------------------------------------------------------------------------------------------------
# single operations


def test_resized_shape_covers_target() -> None:
    assert resized_shape(427, 640, (256, 256), True) == (256, 383)
    assert resized_shape(640, 427, (256, 256), True) == (383, 256)
    assert resized_shape(100, 100, (50, 80), True) == (80, 80)
    assert resized_shape(300, 200, (224, 224), True) == (336, 224)
    assert resized_shape(427, 640, (256, 256), False) == (256, 256)
    for h, w, target in [(427, 640, (224, 300)), (1000, 7, (31, 17)), (3, 999, (5, 5))]:
        rh, rw = resized_shape(h, w, target, True)
        assert rh >= target[0] and rw >= target[1]
        assert rh == target[0] or rw == target[1]


def test_resize_float_image_close_to_uint8() -> None:
    rgb = np.asarray(Image.open(IMAGES / "flower.jpg").convert("RGB"))
    as_uint8 = resize_image(rgb, (200, 300))
    as_float = resize_image(rgb.astype(np.float64), (200, 300))
    assert as_uint8.dtype == np.uint8 and as_float.dtype == np.float32
    assert as_float.shape == (200, 300, 3)
    assert np.abs(as_float - as_uint8).max() <= 1.0  # Pillow's 8-bit path rounds after each of its two passes


def test_resize_keeps_2d_images_2d() -> None:
    gray = np.asarray(Image.open(IMAGES / "flower.jpg").convert("L"))
    out = resize_image(gray, (100, 150))
    assert out.shape == (100, 150)
    assert np.array_equal(out, np.asarray(Image.fromarray(gray).resize((150, 100), Image.Resampling.BILINEAR)))


def test_layout_of_2d_image() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_layout(image, "CHW").shape == (1, 3, 4)
    assert to_layout(image, "HWC") is image


def test_dtype_rounds_and_saturates() -> None:
    assert to_dtype(np.array([-3.0, 0.4, 0.6, 254.5, 300.0]), "uint8").tolist() == [0, 0, 1, 254, 255]
    assert to_dtype(np.array([-1000, 5, 1000], np.int64), "int8").tolist() == [-128, 5, 127]
    assert to_dtype(np.array([200, 255], np.uint8), "int8").tolist() == [127, 127]
    assert to_dtype(np.array([1e30, -1e30]), "int64").tolist()[1] == -(2**63)
    with pytest.raises(ProcessingError, match="NaN"):
        to_dtype(np.array([np.nan], np.float32), "int32")


# ---------------------------------------------------------------------------------------------------------------
# pre-processing errors


def test_bytes_without_decode_step() -> None:
    with pytest.raises(ProcessingError, match="not decode") as info:
        Preprocessor(_steps({"resize": {"size": [8, 8]}}))(_photo("china.jpg"))
    assert "decode" in info.value.hint


@pytest.mark.parametrize("data", [b"definitely not an image", _photo("china.jpg")[:5000]], ids=["garbage", "cut"])
def test_corrupt_jpeg(data: bytes) -> None:
    with pytest.raises(ProcessingError, match=r"step 0 \(decode\)") as info:
        Preprocessor(_imagenet())(data)
    assert info.value.hint
    assert info.value.__cause__ is not None


def test_corrupt_sample_in_batch_is_named() -> None:
    with pytest.raises(ProcessingError, match=r"sample 1: pre-processing step 0 \(decode\)"):
        Preprocessor(_imagenet()).batch([_photo("china.jpg"), b"broken"])


def test_array_through_decode() -> None:
    with pytest.raises(ProcessingError, match=r"step 0 \(decode\)"):
        Preprocessor(_imagenet())(np.zeros((4, 4, 3), np.uint8))


def test_mean_length_mismatch() -> None:
    steps = _steps({"decode": {}}, {"normalize": {"mean": [1.0, 2.0]}})
    with pytest.raises(ProcessingError, match=r"step 1 \(normalize\).*2 values.*3 channel") as info:
        Preprocessor(steps)(_photo("china.jpg"))
    assert info.value.hint


def test_crop_larger_than_image() -> None:
    steps = _steps({"decode": {}}, {"crop": {"size": [1000, 224]}})
    with pytest.raises(ProcessingError, match=r"step 1 \(crop\).*1000x224.*427x640"):
        Preprocessor(steps)(_photo("china.jpg"))


def test_color_mode_on_wrong_channel_count() -> None:
    with pytest.raises(ProcessingError, match=r"step 0 \(color_mode\).*3 channel"):
        Preprocessor(_steps({"color_mode": "BGR"}))(np.zeros((4, 4, 1), np.uint8))


def test_batch_of_different_shapes() -> None:
    with pytest.raises(ProcessingError, match="sample 1"):
        Preprocessor([]).batch([np.zeros((2, 2)), np.zeros((3, 3))])


def test_orderings_that_cannot_work_fail_at_construction() -> None:
    with pytest.raises(ProcessingError, match=r"step 1 \(decode\).*first"):
        Preprocessor(_steps({"resize": {"size": [8, 8]}}, {"decode": {}}))
    with pytest.raises(ProcessingError, match=r"step 2 \(resize\).*CHW"):
        Preprocessor(_steps({"decode": {}}, {"layout": "CHW"}, {"resize": {"size": [8, 8]}}))
    Preprocessor(_steps({"layout": "CHW"}, {"normalize": {"mean": 0.5, "scale": 2}}))  # scalar is layout-free


def test_step_with_two_keys() -> None:
    with pytest.raises(ValidationError, match="sets resize, layout"):
        PreprocessStep.model_validate({"resize": {"size": [8, 8]}, "layout": "CHW"})


def test_step_with_no_key() -> None:
    with pytest.raises(ValidationError, match="sets none"):
        PreprocessStep.model_validate({})
    with pytest.raises(ValidationError, match="sets none"):
        PreprocessStep.model_validate(yaml.safe_load("decode:"))


def test_step_with_unknown_key() -> None:
    with pytest.raises(ValidationError, match="decod"):
        PreprocessStep.model_validate({"decod": {}})
    with pytest.raises(ValidationError, match="interpolation"):
        PreprocessStep.model_validate({"resize": {"size": [8, 8], "interpolation": "bicubic"}})


def test_step_parameter_validation() -> None:
    with pytest.raises(ValidationError, match="exactly one of `size`"):
        PreprocessStep.model_validate({"crop": {"size": [2, 2], "ratio": 0.5}})
    with pytest.raises(ValidationError, match="exactly one of `size`"):
        PreprocessStep.model_validate({"crop": {}})
    with pytest.raises(ValidationError):
        PreprocessStep.model_validate({"crop": {"ratio": 1.5}})
    with pytest.raises(ValidationError):
        PreprocessStep.model_validate({"resize": {"size": [0, 8]}})
    with pytest.raises(ValidationError):
        PreprocessStep.model_validate({"resize": {"size": [8, 8, 8]}})
    with pytest.raises(ValidationError, match="must not contain 0"):
        NormalizeStep(scale=[1.0, 0.0, 1.0])
    with pytest.raises(ValidationError, match="3 values but scale has 2"):
        NormalizeStep(mean=[1.0, 2.0, 3.0], scale=[1.0, 2.0])
    with pytest.raises(ValidationError):
        PreprocessStep.model_validate({"dtype": "bfloat16"})


def test_step_round_trips_through_dump() -> None:
    for step in _imagenet():
        assert PreprocessStep.model_validate(step.model_dump()) == step
        assert PreprocessStep.model_validate(step.model_dump(exclude_none=True)) == step


# ---------------------------------------------------------------------------------------------------------------
# post-processing


def _post(*items: dict[str, object], labels: list[str] | None = None) -> Postprocessor:
    return Postprocessor([PostprocessStep.model_validate(item) for item in items], labels)


def test_softmax_matches_scipy() -> None:
    logits = np.random.default_rng(0).normal(scale=4.0, size=(8, 1000)).astype(np.float32)
    result = _post({"softmax": {}})(logits)
    assert result.probabilities.dtype == np.float32
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(result.probabilities - scipy.special.softmax(logits.astype(np.float64), axis=1)).max() <= 1e-6


def test_softmax_large_logits_are_stable() -> None:
    probabilities = softmax(np.array([[1000.0, 1001.0], [-1000.0, -1001.0]]))
    e = math.e
    assert np.allclose(probabilities, [[1 / (1 + e), e / (1 + e)], [e / (1 + e), 1 / (1 + e)]], atol=1e-7)
    assert np.isfinite(probabilities).all()


def test_without_softmax_outputs_are_the_probabilities() -> None:
    outputs = np.array([[0.1, 0.7, 0.2]], np.float32)
    result = _post()(outputs)
    assert np.array_equal(result.probabilities, outputs)
    assert result.top_indices.tolist() == [[1, 2, 0]]  # default k = min(5, classes)


def _python_top_k(row: np.ndarray, k: int) -> list[int]:
    return sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]


@pytest.mark.parametrize("k", [1, 5, 16, 17, 50])
def test_top_k_order_and_ties_match_python_sort(k: int) -> None:
    rng = np.random.default_rng(k)
    # Few distinct values, so most rows have ties inside the top k and across its boundary.
    scores = rng.integers(0, 6, size=(300, 50)).astype(np.float32)
    top = top_k_indices(scores, k)
    assert top.dtype == np.int64
    assert top.shape == (300, k)
    assert top.tolist() == [_python_top_k(row, k) for row in scores]


def test_top_k_with_infinities() -> None:
    scores = np.array([[-np.inf, 0.5, -np.inf, np.inf, -np.inf], [0.1, 0.2, 0.3, 0.4, 0.5]], np.float32)
    assert top_k_indices(scores, 4).tolist() == [[3, 1, 0, 2], [4, 3, 2, 1]]


def test_top_k_ties_break_by_lower_index() -> None:
    scores = np.array(
        [
            [0.1, 0.3, 0.3, 0.3, 0.0],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.0, 0.0, 0.5, 0.0, 0.5],
        ],
        np.float32,
    )
    assert top_k_indices(scores, 2).tolist() == [[1, 2], [0, 1], [2, 4]]
    assert top_k_indices(np.full((1, 1000), 0.001, np.float32), 5).tolist() == [[0, 1, 2, 3, 4]]


def test_top_k_puts_nan_last() -> None:
    scores = np.array([[np.nan, 0.2, 0.5, np.nan, 0.1], [0.3, np.nan, 0.2, 0.9, 0.1]], np.float32)
    assert top_k_indices(scores, 3).tolist() == [[2, 1, 4], [3, 0, 2]]
    assert top_k_indices(scores, 5).tolist() == [[2, 1, 4, 0, 3], [3, 0, 2, 4, 1]]


def test_classification_top_k_and_labels() -> None:
    labels = ["cat", "dog", "fish", "bird"]
    logits = np.array([[1.0, 3.0, 2.0, 0.0], [5.0, 1.0, 1.0, 4.0]], np.float32)
    result = _post({"softmax": {}}, {"top_k": {"k": 2}}, labels=labels)(logits)
    assert isinstance(result, Classification)
    assert result.top_indices.tolist() == [[1, 2], [0, 3]]
    assert result.top_indices.shape == (2, 2)
    expected = scipy.special.softmax(logits.astype(np.float64), axis=1)
    assert np.allclose(result.top_probabilities, np.take_along_axis(expected, result.top_indices, axis=1), atol=1e-6)
    assert result.labels_of(0) == ["dog", "fish"]
    assert result.labels_of(1) == ["cat", "bird"]
    assert _post({"top_k": {"k": 2}})(logits).labels_of(1) == ["0", "3"]


def test_top_k_larger_than_classes_is_capped() -> None:
    result = _post({"top_k": {"k": 10}})(np.array([[0.2, 0.5, 0.3]], np.float32))
    assert result.top_indices.tolist() == [[1, 2, 0]]


def test_spatial_classifier_output_is_flattened() -> None:
    outputs = np.array([0.1, 0.6, 0.3], np.float32).reshape(1, 3, 1, 1)
    assert _post()(outputs).top_indices.tolist() == [[1, 2, 0]]


def test_postprocess_errors() -> None:
    with pytest.raises(ProcessingError, match="3 classes but its labels file has 2"):
        _post(labels=["a", "b"])(np.zeros((1, 3), np.float32))
    with pytest.raises(ProcessingError, match=r"\(batch, classes\)"):
        _post()(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ProcessingError, match=r"step 1 \(top_k\) repeats step 0"):
        _post({"top_k": {"k": 1}}, {"top_k": {"k": 2}})
    with pytest.raises(ValidationError, match="sets softmax, top_k"):
        PostprocessStep.model_validate({"softmax": {}, "top_k": {}})
    with pytest.raises(ValidationError, match="sets none"):
        PostprocessStep.model_validate({})
    with pytest.raises(ValidationError):
        PostprocessStep.model_validate({"top_k": {"k": 0}})


def test_load_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("  n01440764 tench \nn01443537 goldfish\n\n")
    assert load_labels(path) == ["n01440764 tench", "n01443537 goldfish"]


def test_load_labels_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ProcessingError, match="empty") as info:
        load_labels(empty)
    assert info.value.hint
    with pytest.raises(ProcessingError, match="cannot read") as missing:
        load_labels(tmp_path / "missing.txt")
    assert isinstance(missing.value.__cause__, FileNotFoundError)
    holes = tmp_path / "holes.txt"
    holes.write_text("a\n\nc\n")
    with pytest.raises(ProcessingError, match=r"blank lines \(2\)"):
        load_labels(holes)
