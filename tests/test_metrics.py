import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from histocolor.metrics import gradient_ssim, psnr


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
