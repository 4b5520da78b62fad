import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from skimage.color import rgb2lab
from skimage.filters import sobel

from histocolor.metrics import (
    ciede2000,
    gradient_ssim,
    psnr,
    region_sliced_wasserstein,
    sliced_wasserstein,
    structure_score,
)


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


def _structure_by_hand(result, source, sigma=1.5, radius=5):
    """The SSIM structure term, pixel by pixel with an explicit Gaussian window (reference)."""
    x, y = (sobel(rgb2lab(image)[..., 0]) for image in (result, source))
    c3 = (0.03 * y.max()) ** 2 / 2
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    values = []
    for i in range(radius, x.shape[0] - radius):
        for j in range(radius, x.shape[1] - radius):
            wx = x[i - radius : i + radius + 1, j - radius : j + radius + 1]
            wy = y[i - radius : i + radius + 1, j - radius : j + radius + 1]
            mx, my = (kernel * wx).sum(), (kernel * wy).sum()
            vx, vy = (kernel * (wx - mx) ** 2).sum(), (kernel * (wy - my) ** 2).sum()
            cov = (kernel * (wx - mx) * (wy - my)).sum()
            values.append((cov + c3) / (np.sqrt(vx * vy) + c3))
    return float(np.mean(values))


def test_structure_score_matches_a_pixel_by_pixel_reference(rng):
    source = uniform_filter(rng.random((24, 28, 3)), size=(3, 3, 1))
    result = np.clip(source * np.array([1.1, 0.9, 1.0]) + rng.normal(0, 0.03, source.shape), 0, 1)
    assert structure_score(result, source) == pytest.approx(_structure_by_hand(result, source), abs=1e-6)


def test_structure_score_ignores_asked_for_contrast_but_sees_broken_edges(rng):
    """A strong S-curve costs gradient SSIM a lot and the structure score little; blur and
    noise cost the structure score."""
    source = uniform_filter(rng.random((64, 64, 3)), size=(3, 3, 1))
    assert structure_score(source, source) == pytest.approx(1.0)
    contrast = np.clip(0.5 + 2.5 * (source - 0.5), 0, 1)
    blurred = uniform_filter(source, size=(7, 7, 1))
    noisy = np.clip(source + rng.normal(0, 0.08, source.shape), 0, 1)
    assert gradient_ssim(contrast, source) < 0.8
    assert structure_score(contrast, source) > 0.95
    assert structure_score(blurred, source) < 0.8
    assert structure_score(noisy, source) < 0.8
    with pytest.raises(ValueError, match="one size"):
        structure_score(source[:10], source)
