import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from histocolor.metrics import ciede2000, gradient_ssim, psnr, region_sliced_wasserstein, sliced_wasserstein


def test_psnr_known_values(rng):
    image = rng.integers(10, 240, (16, 16, 3), dtype=np.uint8)
    assert psnr(image, image) == float("inf")
    assert psnr(image + 1, image) == pytest.approx(20 * np.log10(255), abs=1e-9)  # 48.13 dB
    assert psnr(image / 255.0, image) == float("inf")


def test_gradient_ssim_sees_blur_but_not_a_colour_shift(rng):
    image = rng.random((64, 64, 3))
    assert gradient_ssim(image, image) == pytest.approx(1.0)
    shifted = np.clip(image * np.array([0.9, 1.0, 0.8]), 0, 1)
    blurred = uniform_filter(image, size=(5, 5, 1))
    assert gradient_ssim(shifted, image) > 0.9
    assert gradient_ssim(blurred, image) < 0.5


def test_ciede2000_known_cases(rng):
    image = rng.random((8, 8, 3))
    assert ciede2000(image, image) == pytest.approx(0.0, abs=1e-9)
    grey, lighter = np.full((4, 4, 3), 0.5), np.full((4, 4, 3), 0.6)
    # Two neutral greys (a = b = 0): CIEDE2000 reduces to dL / S_L, from the sRGB and CIELab formulas.
    def lightness(value):
        y = ((value + 0.055) / 1.055) ** 2.4  # sRGB decoding; Y of a grey (white Y = 1)
        return 116 * np.cbrt(y) - 16  # y > (6/29)**3: the cube-root branch
    dark, light = lightness(0.5), lightness(0.6)  # 53.39, 63.22
    mean = (dark + light) / 2
    expected = (light - dark) / (1 + 0.015 * (mean - 50) ** 2 / np.sqrt(20 + (mean - 50) ** 2))  # 8.862
    assert ciede2000(grey, lighter) == pytest.approx(expected, abs=1e-4)


def test_sliced_wasserstein_ignores_layout_and_sees_colour(rng):
    image = rng.random((32, 32, 3))
    shuffled = rng.permutation(image.reshape(-1, 3)).reshape(16, 64, 3)
    assert sliced_wasserstein(image, shuffled) < 0.5
    assert sliced_wasserstein(image, np.clip(image * 0.6, 0, 1)) > 5
    mask = np.zeros((32, 32), bool)
    mask[:, :16] = True
    assert sliced_wasserstein(image, image, mask, mask) == pytest.approx(0.0, abs=1e-9)


def test_region_distance_pairs_labels(rng):
    sky, grass = np.zeros((20, 20, 3)), np.zeros((20, 20, 3))
    sky[:10], sky[10:] = (0.3, 0.5, 0.9), (0.2, 0.6, 0.2)
    grass[:10], grass[10:] = (0.2, 0.6, 0.2), (0.3, 0.5, 0.9)  # same colours, swapped places
    labels = np.zeros((20, 20), int)
    labels[10:] = 1
    assert region_sliced_wasserstein(sky, grass, labels, labels) > 10  # each region has the other's colour
    assert region_sliced_wasserstein(sky, grass, labels, 1 - labels) < 1e-6
    assert region_sliced_wasserstein(sky, grass, labels, labels + 5) is None
