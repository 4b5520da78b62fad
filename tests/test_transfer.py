import sys

import numpy as np
import pytest
from skimage.color import rgb2lab

import histocolor
from histocolor.errors import HistocolorError
from histocolor.lut import apply_lut
from histocolor.metrics import psnr
from histocolor.model import AnalogyConfig, HistogramAnalogy
from histocolor.engine import METHODS, ColorTransfer

from conftest import SAMPLES, benchmark_module

CLASSICAL = [m for m in METHODS if m != "analogy"]


def _mean_lab(image):
    return rgb2lab(image[..., :3]).reshape(-1, 3).mean(0)


@pytest.mark.parametrize("method", CLASSICAL)
def test_classical_methods_move_colours_toward_the_reference(sample_pair, method):
    source, reference = sample_pair
    result = histocolor.transfer(source, reference, method)
    assert result.image.shape == source.shape and result.image.dtype == np.uint8
    before = np.linalg.norm(_mean_lab(source) - _mean_lab(reference))
    after = np.linalg.norm(_mean_lab(result.image) - _mean_lab(reference))
    assert after < 0.5 * before
    # The exported LUT reproduces the result up to interpolation error.
    assert psnr(apply_lut(source, result.lut), result.image) > 30


def test_analogy_runs_at_working_size_and_returns_its_lut(sample_pair, tiny_weights):
    source, reference = sample_pair
    result = histocolor.transfer(source, reference, weights=tiny_weights, max_side=128)
    assert result.image.shape == source.shape and result.image.dtype == np.uint8
    assert result.lut.shape == (17, 17, 17, 3)
    assert np.array_equal(apply_lut(source, result.lut), result.image)
    assert {"network", "lut_fit", "apply"} <= set(result.timings)
    assert np.abs(result.image.astype(int) - source).mean() > 0.5  # the random heads change colours


def test_untrained_network_leaves_the_image_alone(sample_pair):
    source, reference = sample_pair
    result = histocolor.transfer(source, reference, model=HistogramAnalogy(AnalogyConfig(ctn_width=8)))
    assert np.abs(result.image.astype(int) - source).max() <= 2


def test_lut_brings_a_global_change_to_full_resolution(sample_pair):
    source, reference = sample_pair
    benchmark = benchmark_module()
    operator = benchmark["ReinhardOperator"](source, reference)
    truth = benchmark["_resized"](operator, source, reference, None, "output")
    lut_result = ColorTransfer(model=operator, max_side=150)(source, reference).image
    blurred = benchmark["_resized"](operator, source, reference, 150, "output")
    assert psnr(lut_result, truth) > 40
    assert psnr(lut_result, truth) > psnr(blurred, truth) + 10


@pytest.mark.parametrize("method", ["mkl", "analogy"])
def test_strength_blends_toward_the_source(sample_pair, tiny_weights, method):
    source, reference = sample_pair
    engine = ColorTransfer(method, weights=tiny_weights, max_side=128)
    assert np.abs(engine(source, reference, strength=0.0).image.astype(int) - source).max() <= 1
    full = engine(source, reference).image.astype(float)
    half = engine(source, reference, strength=0.5).image.astype(float)
    assert np.abs(half - (full + source) / 2).mean() < 1.0


@pytest.mark.parametrize("method", ["mkl", "analogy"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5000, 3), (5000, 2, 3), (3, 7, 3)])
def test_any_size_and_aspect_ratio(rng, tiny_weights, method, shape):
    source = rng.integers(0, 256, shape, dtype=np.uint8)
    reference = rng.integers(0, 256, (9, 4, 3), dtype=np.uint8)
    result = histocolor.transfer(source, reference, method, weights=tiny_weights)
    assert result.image.shape == shape and result.image.dtype == np.uint8


def test_formats_are_kept(rng, sample_pair):
    source, reference = sample_pair
    rgba = np.dstack([source, rng.integers(0, 256, source.shape[:2], dtype=np.uint8)])
    out = histocolor.transfer(rgba, reference, "reinhard").image
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], rgba[..., 3])
    gray = histocolor.transfer(source[..., 0], reference, "reinhard").image
    assert gray.shape == source.shape and not np.array_equal(gray[..., 0], gray[..., 2])
    # A grey image is the grey RGB image (its channel three times), and it takes the reference's colours:
    # its mean Lab lands near the reference's (measured 2.4 apart, from 41 for the grey source).
    grey_rgb = np.repeat(source[..., :1], 3, axis=-1)
    assert np.array_equal(gray, histocolor.transfer(grey_rgb, reference, "reinhard").image)
    before = np.linalg.norm(_mean_lab(grey_rgb) - _mean_lab(reference))
    assert np.linalg.norm(_mean_lab(gray) - _mean_lab(reference)) < 0.15 * before
    eight = histocolor.transfer(source, reference, "mkl").image.astype(float)
    deep = histocolor.transfer(source.astype(np.uint16) * 257, reference, "mkl").image
    assert deep.dtype == np.uint16 and np.abs(deep / 257.0 - eight).max() <= 1.0
    unit = histocolor.transfer(source / 255.0, reference, "mkl").image
    assert unit.dtype == np.float32 and np.abs(unit * 255.0 - eight).max() <= 1.0
    from_paths = histocolor.transfer(SAMPLES / "source.jpg", reference, "mkl")
    assert from_paths.image.shape == source.shape and "decode" in from_paths.timings


def test_user_errors_are_histocolor_errors(sample_pair, tmp_path, monkeypatch):
    source, reference = sample_pair
    for call in (
        lambda: histocolor.transfer(source, reference, "nope"),
        lambda: histocolor.transfer(source, reference, "mkl", strength=1.5),
        lambda: histocolor.transfer(source, reference, "mkl", max_side=4),
        lambda: histocolor.transfer(source, reference, "mkl", device="tpu"),
        lambda: histocolor.transfer(np.zeros((4, 4, 4, 3), np.uint8), reference, "mkl"),
        lambda: histocolor.transfer(source.astype(np.int32), reference, "mkl"),
        lambda: histocolor.transfer(np.full((4, 4, 3), np.nan), reference, "mkl"),
        lambda: histocolor.transfer(np.zeros((0, 5), np.uint8), reference, "mkl"),
        lambda: histocolor.transfer(source, np.zeros((3, 0, 3), np.uint8), "mkl"),
        lambda: histocolor.transfer(source, reference, weights=tmp_path),
    ):
        with pytest.raises(HistocolorError) as caught:
            call()
        assert "\n" not in str(caught.value)
    monkeypatch.setattr(sys.modules["histocolor.model.io"], "DEFAULT_WEIGHTS", tmp_path / "missing")
    with pytest.raises(HistocolorError, match="--weights"):
        histocolor.transfer(source, reference)


def test_device_auto_falls_back_to_cpu():
    import torch

    from histocolor.device import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(HistocolorError, match="no CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("method", ["mkl", "analogy"])
def test_transparent_reference_pixels_do_not_count(rng, tiny_weights, method):
    source = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    visible = rng.integers(100, 256, (64, 32, 3), dtype=np.uint8)
    # The transparent half is black: if it counted, the result would be much darker.
    padded = np.concatenate([visible, np.zeros_like(visible)], axis=1)
    alpha = np.concatenate([np.full((64, 32), 255, np.uint8), np.zeros((64, 32), np.uint8)], axis=1)
    engine = ColorTransfer(method, weights=tiny_weights)
    with_alpha = engine(source, np.dstack([padded, alpha])).image.astype(int)
    cropped = engine(source, visible).image.astype(int)
    assert np.abs(with_alpha - cropped).max() <= 1
    unmasked = engine(source, padded).image.astype(int)
    # The tiny random network reacts only a little to its reference; MKL reacts strongly.
    assert np.abs(unmasked - cropped).mean() > (1.0 if method == "mkl" else 0.0)


def test_one_model_load_serves_many_pairs(sample_pair, tiny_weights, monkeypatch):
    from histocolor.model.io import from_pretrained

    loads = []
    monkeypatch.setattr(sys.modules["histocolor.model.io"], "from_pretrained", lambda *a: loads.append(a) or from_pretrained(*a))
    engine = ColorTransfer(weights=tiny_weights, max_side=64)
    for _ in range(3):
        engine(*sample_pair)
    assert len(loads) == 1
